/**
 * Plain LoRA (the base not quantized): the setting's shapes, `cli train`'s flags (a misspelt flag
 * is refused by name, in the command and through the real runner), the load that keeps every
 * linear weight as the checkpoint stores it and caches it under a key of its own, the sizes the
 * user is shown, and a model card that does not claim 4-bit.
 */
import 'fake-indexeddb/auto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient } from '../../workers/load/hub';
import { hubFileSet } from '../../workers/load/sources';
import { loadModel } from '../../workers/load/load-model';
import { ModelCache, cacheKey } from '../../workers/load/cache';
import { DEFAULT_QUANT, NO_QUANT, checkQuant, getPreset, weightModeOf } from '../../workers/load/presets';
import { archFromConfig } from '../../workers/load/arch';
import { modelBytes } from '../../workers/load/planner';
import { storedTensorBytes } from '../../workers/load/sizes';
import { parseModelConfig } from '../../workers/model/config';
import { checkTrainArgs, quantFromFlags } from '../../workers/cli/commands/train';
import { CliInputError, type CliArgs } from '../../workers/cli/io';
import { modelCard } from '../../workers/export/model-card';
import { quantFromRunJson, runQuantization } from '../../workers/export/run-bundle/quantization';
import type { RunQuantization } from '../../workers/export/run-bundle/run-json';

const args = (flags: CliArgs['flags'], positional: string[] = []): CliArgs => ({ positional, flags });
const BASE = { model: 'demo', data: 'd.jsonl' };

describe('quantization settings', () => {
  it('NF4 is the default; none is plain LoRA in the exact engine', () => {
    expect(weightModeOf(DEFAULT_QUANT)).toBe('nf4');
    expect(weightModeOf(NO_QUANT)).toBe('exact');
    expect(checkQuant({ type: 'none' }, 'run')).toEqual(NO_QUANT);
    expect(checkQuant({ ...DEFAULT_QUANT }, 'run')).toEqual(DEFAULT_QUANT);
    expect(() => checkQuant({ type: 'none', blocksize: 64 }, 'stored run r1')).toThrow(/stored run r1: quantization .*neither/);
    expect(() => checkQuant({ type: 'int8' }, 'run')).toThrow(/neither/);
    expect(() => checkQuant(null, 'run')).toThrow(/must be an object/);
  });

  it('an unquantized copy is cached under its own key', () => {
    expect(cacheKey('o/m', 'abc', NO_QUANT)).toBe('o/m@abc#none');
    expect(cacheKey('o/m', 'abc', DEFAULT_QUANT)).toBe('o/m@abc#nf4-b64-dq256');
  });
});

describe('cli train flags', () => {
  it('--no-quantize chooses the unquantized base; without it the preset’s NF4', () => {
    expect(() => checkTrainArgs(args({ ...BASE, 'no-quantize': true, resume: true }))).not.toThrow();
    expect(quantFromFlags(args({ ...BASE, 'no-quantize': true }), getPreset('demo'))).toEqual(NO_QUANT);
    expect(quantFromFlags(args(BASE), getPreset('demo'))).toEqual(DEFAULT_QUANT);
    expect(quantFromFlags(args(BASE), null)).toEqual(DEFAULT_QUANT);
  });

  it('a misspelt flag is refused, naming it', () => {
    const err = (() => {
      try {
        checkTrainArgs(args({ ...BASE, 'no-quantise': true }));
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(CliInputError);
    expect((err as Error).message).toMatch(/^unknown flag --no-quantise\n/);
    expect(() => checkTrainArgs(args({ ...BASE, 'no-quantise': true, stpes: '3' }))).toThrow(/unknown flags --no-quantise, --stpes/);
  });

  it('a value after a switch, or a stray argument, is refused', () => {
    expect(() => checkTrainArgs(args({ ...BASE, 'no-quantize': 'yes' }))).toThrow(/--no-quantize takes no value, got "yes"/);
    expect(() => checkTrainArgs(args(BASE, ['extra']))).toThrow(/unexpected argument "extra"/);
  });

  it('through the real runner: exit 2, the flag named, nothing trained', () => {
    const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'train', '--model', 'demo', '--data', 'public/demo/data/ds1000-demo.jsonl', '--steps', '1', '--no-quantise'], { encoding: 'utf8', timeout: 300_000 });
    const lines = run.stdout.trim().split('\n').filter(Boolean);
    const last = JSON.parse(lines[lines.length - 1]) as { ok: boolean; error: string };
    expect(run.status, run.stderr).toBe(2);
    expect(last.ok).toBe(false);
    expect(last.error).toMatch(/unknown flag --no-quantise/);
    expect(lines.some((l) => l.includes('"loss"'))).toBe(false);
  }, 300_000);
});

describe('an unquantized load', () => {
  const REPO = 'test-org/plain-phi';
  const hub = new MockHub();
  const config = tinyPhiConfig();
  const tensors = tinyModelTensors(config, 'BF16', 5);
  beforeAll(async () => {
    await hub.start();
    for (const [path, data] of tinyModelFiles(config, tensors, 2)) hub.addFile(REPO, path, data);
  });
  afterAll(() => hub.stop());
  const files = () => hubFileSet(new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1 }), REPO);
  const cacheId = { repo: REPO, revision: 'main' };

  it('keeps every tensor as stored, caches it under #none, and reads it back byte-identical; NF4 is another copy', async () => {
    const cache = await ModelCache.open('plain-lora-cache');
    const first = await loadModel({ files: files(), quant: NO_QUANT, cache, cacheId });
    expect(first.fromCache).toBe(false);
    expect(first.stats).toMatchObject({ quantized: 0, prequantized: 0, dense: tensors.length });
    for (const t of tensors) {
      const got = first.tensors.get(t.name)!;
      expect(got.kind, t.name).toBe('dense');
      const stored = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      expect(got.kind === 'dense' && Buffer.compare(got.data, stored), t.name).toBe(0);
    }
    const commit = hub.commit(REPO)!;
    const listed = await cache.list();
    expect(listed).toMatchObject([{ key: cacheKey(REPO, commit, NO_QUANT), quant: NO_QUANT }]);
    // What the user is told the copy takes is what it takes.
    const arch = archFromConfig(config);
    const planned = tensors.reduce((n, t) => n + storedTensorBytes(arch, t.name, t.dtype, t.shape, NO_QUANT), 0);
    expect(first.storedBytes).toBe(planned);
    expect(listed[0].bytes).toBe(planned);

    const again = await loadModel({ files: files(), quant: NO_QUANT, cache, cacheId });
    expect(again.fromCache).toBe(true);
    for (const [name, t] of first.tensors) {
      const got = again.tensors.get(name)!;
      expect(got.kind === 'dense' && t.kind === 'dense' && Buffer.compare(got.data, t.data), name).toBe(0);
    }

    const nf4 = await loadModel({ files: files(), quant: DEFAULT_QUANT, cache, cacheId });
    expect(nf4.fromCache).toBe(false);
    expect(nf4.stats!.quantized).toBeGreaterThan(0);
    expect((await cache.list()).map((m) => m.key).sort()).toEqual([cacheKey(REPO, commit, DEFAULT_QUANT), cacheKey(REPO, commit, NO_QUANT)].sort());
    cache.close();
  });
});

describe('sizes shown to the user', () => {
  it('an unquantized 16-bit base is stored as downloaded; NF4 stores about a quarter', () => {
    const cfg = parseModelConfig(getPreset('phi-1_5').config);
    const plain = modelBytes(cfg, NO_QUANT);
    const nf4 = modelBytes(cfg, DEFAULT_QUANT);
    expect(plain.storage).toBe(plain.download);
    expect(plain.parameters).toBe(nf4.parameters);
    expect(nf4.storage).toBeLessThan(0.4 * plain.storage);
  });
});

describe('model card', () => {
  const input = { base: { name: 'microsoft/phi-1_5', hubId: 'microsoft/phi-1_5', local: false }, revision: null, lora: { r: 8, alpha: 16, dropout: 0, targetModules: ['q_proj'] } };
  it('an adapter trained on the unquantized base claims neither QLoRA nor 4-bit', () => {
    const card = modelCard({ ...input, training: { baseQuantization: 'none' } });
    expect(card).not.toMatch(/qlora"|NF4|4-bit|\(QLoRA/);
    expect(card).toMatch(/\| base weights during training \| not quantized: the checkpoint's values in float32 \(plain LoRA\) \|/);
    expect(card).toMatch(/plain LoRA on the unquantized base/);
  });
  it('one trained on the NF4 base says so', () => {
    const card = modelCard({ ...input, training: { baseQuantization: 'nf4' } });
    expect(card).toMatch(/- "qlora"/);
    expect(card).toMatch(/NF4 with double quantization \(QLoRA\)/);
  });
});

describe('run.json quantization', () => {
  it('says { type: "none" } for plain LoRA, NF4 with its parameters otherwise, and reads back', () => {
    expect(runQuantization(NO_QUANT)).toEqual({ type: 'none' });
    expect(runQuantization(DEFAULT_QUANT)).toEqual({ type: 'nf4', blocksize: 64, double_quant: true, nested_blocksize: 256, compute_dtype: 'float32' });
    for (const q of [NO_QUANT, DEFAULT_QUANT, { ...DEFAULT_QUANT, doubleQuant: false }]) expect(quantFromRunJson(runQuantization(q))).toEqual(q);
    expect(() => quantFromRunJson({ type: 'int8' } as unknown as RunQuantization)).toThrow(/run.json quantization: quantization .*neither/);
    expect(() => quantFromRunJson({ ...runQuantization(DEFAULT_QUANT), compute_dtype: 'bfloat16' } as unknown as RunQuantization)).toThrow(/compute_dtype/);
  });
});
