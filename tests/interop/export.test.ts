/**
 * Interoperability with the real Python stack (../shared/pyref: PyTorch, transformers 4.40.2,
 * PEFT 0.11.1, huggingface_hub): transformers loads the merged folder (sharded, with its index);
 * every merged tensor is within one ulp of the stored dtype of PEFT's merge_and_unload(); the
 * merged model's logits are within 2e-3·max|logit| of PEFT on the base; PEFT and the hub's card
 * reader see the base model and revision the PEFT export was given. Skipped, with a message,
 * where ../shared/pyref is absent.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { mergedFiles, type BaseWeights } from '../../workers/export/merged';
import { peftExport, type ExportFile } from '../../workers/export/bundle';

const PYREF = '../shared/pyref';
const HAVE_PYREF = existsSync(`${PYREF}/setup.sh`);
if (!HAVE_PYREF) console.warn(`export-interop: skipped, ${PYREF} (the Python reference stack) is not here`);

async function writeAll(dir: string, files: ExportFile[]): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    const parts: Uint8Array[] = [];
    for await (const c of f.chunks()) parts.push(c);
    writeFileSync(join(dir, f.name), Buffer.concat(parts));
  }
}

function weightsOf(file: SafetensorsFile): BaseWeights {
  return {
    tensors: file.names.map((n) => ({ name: n, dtype: file.info(n).dtype, shape: file.info(n).shape })),
    read: async (name, start, end) => file.bytes.slice(file.info(name).begin + start * 4, file.info(name).begin + end * 4),
  };
}

describe.skipIf(!HAVE_PYREF)('exports against transformers and PEFT (../shared/pyref)', () => {
  let env: NodeJS.ProcessEnv = {};
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'export-interop-'));
    const exports = execFileSync('bash', [`${PYREF}/setup.sh`], { encoding: 'utf8', timeout: 900_000 });
    env = { ...process.env };
    for (const m of exports.matchAll(/^export (.*)$/gm)) {
      for (const [, k, v] of m[1].matchAll(/(\w+)=(\S+)/g)) env[k] = v.replace(/\$\{PYTHONPATH:\+:\$PYTHONPATH\}/, process.env.PYTHONPATH ? `:${process.env.PYTHONPATH}` : '');
    }
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [folder, dtype, hubId] of [
    ['tiny-phi', 'F16', 'microsoft/phi-1_5'],
    ['tiny-falcon', 'BF16', 'tiiuae/falcon-7b'],
  ] as const) {
    it(`${folder}: merged ${dtype} folder and PEFT export`, async () => {
      const fixture = `tests/fixtures/hf-golden/${folder}`;
      const base = new SafetensorsFile(new Uint8Array(readFileSync(`${fixture}/model.safetensors`)));
      const adapterBytes = new Uint8Array(readFileSync(`${fixture}/adapter_model.safetensors`));
      const adapter = new SafetensorsFile(adapterBytes);
      const adapterConfig = readFileSync(`${fixture}/adapter_config.json`, 'utf8');
      const cfg = JSON.parse(adapterConfig) as { lora_alpha: number; r: number };
      const baseConfig = JSON.parse(readFileSync(`${fixture}/config.json`, 'utf8')) as Record<string, unknown>;
      const merged = mergedFiles(weightsOf(base), adapter, baseConfig, { alpha: cfg.lora_alpha, r: cfg.r, dtype, maxShardBytes: 200_000 }, [
        { name: 'generation_config.json', data: new Uint8Array(readFileSync(`${fixture}/generation_config.json`)) },
      ]);
      expect(merged.plan.shards.length).toBeGreaterThan(1);
      await writeAll(join(dir, folder, 'merged'), merged.files);
      const revision = '0123456789abcdef0123456789abcdef01234567';
      await writeAll(
        join(dir, folder, 'peft'),
        peftExport({ adapterConfig, tensors: adapter, adapterModel: adapterBytes, baseConfig, base: { name: hubId, hubId, local: false }, revision }),
      );
      // Base and adapter in folders of their own: transformers loads a folder holding
      // adapter_config.json as "the adapter's base", by name.
      for (const [sub, names] of [
        ['base', ['config.json', 'model.safetensors']],
        ['adapter', ['adapter_config.json', 'adapter_model.safetensors']],
      ] as const) {
        mkdirSync(join(dir, folder, sub), { recursive: true });
        for (const n of names) copyFileSync(`${fixture}/${n}`, join(dir, folder, sub, n));
      }
      const args = ['tests/interop/export.py', join(dir, folder, 'base'), join(dir, folder, 'adapter'), join(dir, folder, 'merged'), join(dir, folder, 'peft'), dtype];
      const run = spawnSync(env.PYTHON ?? 'python3', args, { env, encoding: 'utf8', timeout: 600_000 });
      expect(run.status, run.stderr).toBe(0);
      const out = JSON.parse(run.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
      console.log(`${folder}: ${JSON.stringify(out)}`);
      expect(out.loaded_dtype).toBe(dtype === 'F16' ? 'torch.float16' : 'torch.bfloat16');
      expect(out.compared).toBeGreaterThanOrEqual(base.names.length); // falcon's state dict adds the tied lm_head
      expect(out.max_ulp).toBeLessThanOrEqual(1);
      // f16 keeps 11 significant bits: within 2e-3·max|logit|. bf16 keeps 8, so its bound is what
      // storing PEFT's own merge in bf16 costs (6.8e-3 on tiny-falcon), which ours must not exceed by more than 10%.
      if (dtype === 'F16') expect(out.logits_rel).toBeLessThan(2e-3);
      expect(out.logits_rel as number).toBeLessThanOrEqual(1.1 * (out.logits_rel_peft_rounded as number) + 1e-6);
      expect(out.peft_base).toBe(hubId);
      expect(out.peft_revision).toBe(revision);
      expect(out.peft_warnings).toEqual([]);
      expect(out.card_base_model).toBe(hubId);
      expect(out.card_library).toBe('peft');
    }, 900_000);
  }
});
