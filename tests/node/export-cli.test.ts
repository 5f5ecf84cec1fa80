/**
 * `npm run cli -- export` on a real `train` run of the demo model: the GGUF adapter written from
 * the profile's checkpoint holds train's adapter tensors under llama.cpp's names, the PEFT export
 * from the checkpoint is byte-identical to the adapter train wrote, the merged folder holds the
 * base plus the trained delta, and misspelt flags exit 2.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf, GGMLQuantizationType, GGUFValueType, type GGUFParseOutput, type GGUFTypedMetadata } from '@huggingface/gguf';
import { SafetensorsFile } from '../../workers/formats/safetensors';

// A profile's IndexedDB belongs to the page's origin, port included: every call here uses one port
// of its own, so train and export see the same checkpoints and other CLI runs do not hold it.
const PORT = process.env.EXPORT_CLI_TEST_PORT ?? '47317';

function cli(command: string, args: string[]) {
  const run = spawnSync(process.execPath, ['scripts/cli.mjs', command, ...args], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, QLORA_CLI_PORT: PORT } });
  const lines = run.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { run, last: lines[lines.length - 1] ?? {} };
}

/** The demo's attention heads (workers/load/configs/demo.json). */
const HEADS = 4;

/** The demo is a llama: HF module → GGUF tensor (gguf-py tensor_mapping.py). */
const LLAMA: Record<string, string> = {
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
};

describe('npm run cli -- export', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'export-cli-'));
    const train = cli('train', ['--model', 'demo', '--data', 'public/demo/data/ds1000-demo.jsonl', '--steps', '2', '--batch', '1', '--accum', '1', '--seed', '3', '--profile', join(dir, 'p'), '--out', join(dir, 'trained')]);
    expect(train.last.ok, train.run.stderr).toBe(true);
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gguf from the profile: every trained tensor, llama.cpp names, alpha as FLOAT32, and a Modelfile', async () => {
    const r = cli('export', ['--profile', join(dir, 'p'), '--model', 'demo', '--format', 'gguf', '--out', join(dir, 'g')]);
    expect(r.last.ok, r.run.stderr).toBe(true);
    expect(r.run.status).toBe(0);
    const parsed = (await gguf(join(dir, 'g', 'adapter.gguf'), { allowLocalFile: true, typedMetadata: true })) as unknown as GGUFParseOutput<{ strict: false }> & { typedMetadata: GGUFTypedMetadata };
    const m = parsed.typedMetadata as unknown as Record<string, { value: unknown; type: number }>;
    expect(m['general.architecture'].value).toBe('llama');
    expect(m['general.type'].value).toBe('adapter');
    expect(m['adapter.type'].value).toBe('lora');
    const config = JSON.parse(readFileSync(join(dir, 'trained', 'adapter_config.json'), 'utf8')) as { lora_alpha: number };
    expect(m['adapter.lora.alpha']).toEqual({ value: config.lora_alpha, type: GGUFValueType.FLOAT32 });
    const bytes = new Uint8Array(readFileSync(join(dir, 'g', 'adapter.gguf')));
    const trained = new SafetensorsFile(new Uint8Array(readFileSync(join(dir, 'trained', 'adapter_model.safetensors'))));
    expect(parsed.tensorInfos.length).toBe(trained.names.length);
    for (const key of trained.names) {
      const [, block, module, ab] = /^base_model\.model\.model\.layers\.(\d+)\.(.+)\.lora_([AB])\.weight$/.exec(key)!;
      const info = parsed.tensorInfos.find((t) => t.name === `blk.${block}.${LLAMA[module]}.weight.lora_${ab.toLowerCase()}`)!;
      expect(info, key).toBeDefined();
      expect(info.dtype).toBe(GGMLQuantizationType.F32);
      const shape = trained.info(key).shape;
      expect(info.shape.map(Number)).toEqual([...shape].reverse());
      const start = Number(parsed.tensorDataOffset + info.offset);
      const got = new Float32Array(bytes.slice(start, start + 4 * shape[0] * shape[1]).buffer);
      // llama.cpp's converter orders q/k rows for its rotary layout: lora_B's rows follow
      // (numpy reshape(heads, 2, d/2, r).swapaxes(1, 2)); A and the other modules stay as trained.
      const want = trained.f32(key);
      const rope = ab === 'B' && (module === 'self_attn.q_proj' || module === 'self_attn.k_proj');
      const [rows, r] = shape;
      const d = rows / HEADS;
      const expected = rope ? Float32Array.from(want, (_, i) => {
        const [row, col] = [Math.floor(i / r), i % r];
        const [h, within] = [Math.floor(row / d), row % d];
        return want[(h * d + (within % 2) * (d / 2) + Math.floor(within / 2)) * r + col];
      }) : want;
      expect(Array.from(got), key).toEqual(Array.from(expected));
    }
    const modelfile = readFileSync(join(dir, 'g', 'Modelfile'), 'utf8');
    expect(modelfile).toContain('ADAPTER ./adapter.gguf');
    expect(modelfile).toContain('PARAMETER stop "<|endoftext|>"');
  }, 600_000);

  it('peft from the profile equals what train wrote, and names the base and its revision', () => {
    const r = cli('export', ['--profile', join(dir, 'p'), '--model', 'demo', '--format', 'peft', '--out', join(dir, 'peft'), '--data', 'public/demo/data/ds1000-demo.jsonl']);
    expect(r.last.ok, r.run.stderr).toBe(true);
    expect(readFileSync(join(dir, 'peft', 'adapter_model.safetensors')).equals(readFileSync(join(dir, 'trained', 'adapter_model.safetensors')))).toBe(true);
    const ours = JSON.parse(readFileSync(join(dir, 'peft', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    const theirs = JSON.parse(readFileSync(join(dir, 'trained', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(ours.revision).toMatch(/^sha256-[0-9a-f]{12}$/);
    expect({ ...ours, revision: null }).toEqual(theirs);
    const card = readFileSync(join(dir, 'peft', 'README.md'), 'utf8');
    expect(card).toContain('library_name: peft');
    expect(card).toMatch(/fingerprint: `crc32:[0-9a-f]{8}`/);
    expect(card).toMatch(/final training loss: \d/);
  }, 600_000);

  it('merged from the profile: the demo F16 weights with W + (alpha/r)·B·A, within 1 ulp', () => {
    const r = cli('export', ['--profile', join(dir, 'p'), '--model', 'demo', '--format', 'merged', '--out', join(dir, 'm')]);
    expect(r.last.ok, r.run.stderr).toBe(true);
    expect(r.run.stderr).toMatch(/merge held at most \d+ bytes/);
    const base = new SafetensorsFile(new Uint8Array(readFileSync('public/demo/model/model.safetensors')));
    const merged = new SafetensorsFile(new Uint8Array(readFileSync(join(dir, 'm', 'model.safetensors'))));
    const trained = new SafetensorsFile(new Uint8Array(readFileSync(join(dir, 'trained', 'adapter_model.safetensors'))));
    const config = JSON.parse(readFileSync(join(dir, 'trained', 'adapter_config.json'), 'utf8')) as { lora_alpha: number; r: number };
    expect(merged.names.sort()).toEqual(base.names.sort());
    expect(JSON.parse(readFileSync(join(dir, 'm', 'config.json'), 'utf8')).torch_dtype).toBe('float16');
    const name = 'model.layers.1.mlp.down_proj.weight';
    const [rows, cols] = base.info(name).shape;
    const w = base.f32(name);
    const a = trained.f32('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight');
    const b = trained.f32('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight');
    const got = merged.f32(name);
    let worst = 0;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let d = 0;
        for (let k = 0; k < config.r; k++) d += b[i * config.r + k] * a[k * cols + j];
        const want = w[i * cols + j] + (config.lora_alpha / config.r) * d;
        // One f16 ulp at this magnitude.
        worst = Math.max(worst, Math.abs(got[i * cols + j] - want) / 2 ** (Math.floor(Math.log2(Math.max(Math.abs(want), 2 ** -14))) - 10));
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(readFileSync(join(dir, 'm', 'tokenizer.json')).length).toBeGreaterThan(0);
  }, 600_000);

  it('misspelt flags and a missing source exit 2', () => {
    const typo = cli('export', ['--adapter', join(dir, 'trained'), '--model', 'demo', '--format', 'peft', '--out', join(dir, 'x'), '--outdir', 'y']);
    expect(typo.run.status).toBe(2);
    expect(String(typo.last.error)).toMatch(/unknown flag --outdir/);
    const none = cli('export', ['--model', 'demo', '--format', 'gguf', '--out', join(dir, 'x')]);
    expect(none.run.status).toBe(2);
    expect(String(none.last.error)).toMatch(/exactly one of --profile/);
  }, 600_000);
});
