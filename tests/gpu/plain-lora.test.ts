/**
 * Plain LoRA: the base loaded without quantizing (`{ type: 'none' }`) goes through the studio's
 * own load (files → stream source → cache under #none → the exact engine), so its logits, loss,
 * LoRA gradients and greedy tokens are transformers' own (hf-golden tiny-phi, within 1e-5),
 * where the NF4 base visibly differs; the memory plan of a plain load matches the pool's
 * measured peak; the page's session plans, loads and trains with `quantize: false`, records it
 * with the run and resumes on it after a reload; `cli train --no-quantize` trains the demo, and a
 * run stopped and resumed (without repeating the flag) continues on the unquantized base to the
 * same losses and adapter bytes.
 */
import { describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { GOLDEN_TOLERANCE, compareOutputs, runEngine } from '../../workers/model/golden';
import { parsePeftConfig } from '../../workers/model/lora-adapter';
import { CausalLM } from '../../workers/model/causal-lm';
import { parseModelConfig } from '../../workers/model/config';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { loadRunModel } from '../../workers/session/models';
import { DEFAULT_QUANT, NO_QUANT, getPreset, type QuantSettings } from '../../workers/load/presets';
import { HubClient } from '../../workers/load/hub';
import { urlFileSet } from '../../workers/load/sources';
import { ModelCache } from '../../workers/load/cache';
import { openLoad } from '../../workers/load/load-model';
import { planModel } from '../../workers/load/planner';
import { DEFAULT_CHUNK_BYTES } from '../../workers/load/quantize-on-load';
import { runSettings } from '../../workers/run/settings';
import { train as cliTrain } from '../../workers/cli/commands/train';
import type { CliIo } from '../../workers/cli/io';
import type { Batch } from '../../workers/model/types';
import { Session } from '../../workers/session/session';
import type { EngineEvent, LoadOptions, ModelSource } from '../../workers/protocol';
import { unzipSync } from 'fflate';
import { rng, testGpu } from './helpers';

const GOLDEN = '/tests/fixtures/hf-golden/tiny-phi/';

async function fixture(name: string): Promise<Uint8Array> {
  const res = await fetch(GOLDEN + name);
  expect(res.ok, name).toBe(true);
  return new Uint8Array(await res.arrayBuffer());
}

/** The golden inputs and adapter, run through `loadRunModel` with the base stored as `quant`. */
async function goldenRun(quant: QuantSettings, cache: ModelCache) {
  const gpu = await testGpu();
  const adapterSettings = parsePeftConfig(new TextDecoder().decode(await fixture('adapter_config.json')), 'adapter_config.json');
  const adapter = new SafetensorsFile(await fixture('adapter_model.safetensors'), 'adapter_model.safetensors');
  const golden = new SafetensorsFile(await fixture('golden.safetensors'), 'golden.safetensors');
  const [batch, seq] = golden.info('input_ids').shape;
  const inputs = {
    batch: { inputIds: golden.ints('input_ids'), attentionMask: golden.ints('attention_mask'), labels: golden.ints('labels'), batch, seq },
    prompt: Array.from(golden.ints('gen_prompt_ids')),
    newTokens: golden.info('gen_new_ids').shape.reduce((a, b) => a * b, 1),
  };
  const targets = adapterSettings.targetModules as string[];
  const loaded = await loadRunModel(gpu, {
    files: urlFileSet(new HubClient({ retryDelayMs: 1 }), new URL(GOLDEN, location.origin).href),
    quant,
    settings: runSettings({ targetModules: targets, rank: adapterSettings.r, alpha: adapterSettings.alpha, dropout: 0, seqLength: seq }),
    quantizer: 'cpu',
    adapter: { file: adapter, settings: adapterSettings },
    cacheId: { repo: 'fixtures/hf-golden-tiny-phi', revision: 'v1' },
    cache,
  });
  try {
    const out = await runEngine(gpu, loaded.model, inputs, () => {});
    const vs = compareOutputs(out, (n) => (golden.has(n) ? golden.f32(n) : null), inputs.batch.attentionMask, loaded.model.config.vocabSize, Array.from(golden.ints('gen_new_ids')));
    return { ...vs, mode: loaded.model.mode, quant: loaded.quant, fromCache: loaded.fromCache, logits: out.tensors.get('logits')! };
  } finally {
    loaded.model.dispose();
  }
}

describe('plain LoRA: the unquantized base', () => {
  it('is the checkpoint’s own values: transformers’ numbers within 1e-5, downloaded and from its #none cache copy; the NF4 base differs', async () => {
    const cache = await ModelCache.open(`plain-lora-golden-${Date.now()}`);
    const plain = await goldenRun(NO_QUANT, cache);
    expect(plain).toMatchObject({ mode: 'exact', quant: NO_QUANT, fromCache: false, tokensEqual: true });
    expect(plain.tensors.length).toBeGreaterThan(7 + 8);
    expect(plain.tensors.filter((t) => !(t.rel <= GOLDEN_TOLERANCE))).toEqual([]);

    const cached = await goldenRun(NO_QUANT, cache);
    expect(cached.fromCache).toBe(true);
    expect(Array.from(cached.logits)).toEqual(Array.from(plain.logits));

    const nf4 = await goldenRun(DEFAULT_QUANT, cache);
    // Another copy (the NF4 one), not the unquantized one.
    expect(nf4).toMatchObject({ mode: 'nf4', fromCache: false });
    const logits = nf4.tensors.find((t) => t.name === 'logits')!;
    expect(logits.rel).toBeGreaterThan(1e-3);
    console.info(`tiny-phi vs transformers: plain LoRA worst ${Math.max(...plain.tensors.map((t) => t.rel)).toExponential(2)}, NF4 base logits ${logits.rel.toExponential(2)}`);
    cache.close();
  });

  it('plans as measured: the pool’s peak of a plain load and a training step of the demo (the studio’s download path)', async () => {
    const gpu = await testGpu();
    const config = parseModelConfig(getPreset('demo').config);
    const k = { seq: 96, batch: 2, rank: 8, dropout: 0.05, targets: ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'] };
    gpu.pool.trim();
    await gpu.done();
    const lifetime = gpu.lifetimeBuffers();
    const baseline = gpu.pool.stats().liveTotal;
    // Buffers a test before left on the shared device (NF4's shared tables) are not this load's.
    const weightsBefore = gpu.pool.stats().live.weights;
    gpu.pool.resetPeak();
    const files = urlFileSet(new HubClient({ retryDelayMs: 1 }), new URL('/demo/model/', location.origin).href);
    const load = await openLoad({ files, quant: NO_QUANT, cache: await ModelCache.open(`plain-lora-plan-${Date.now()}`), cacheId: { repo: 'studio/demo', revision: 'plain' }, quantizer: 'gpu' });
    const model = await CausalLM.load(gpu, SHADERS, config, load.weights, {
      mode: 'exact',
      lora: { settings: { r: k.rank, alpha: 2 * k.rank, dropout: k.dropout, targetModules: k.targets }, init: { seed: 5 } },
      checkpointing: true,
    });
    await load.finish();
    const loadMeasured = gpu.pool.stats().peakTotal - baseline + lifetime;
    const weightsMeasured = gpu.pool.stats().live.weights - weightsBefore;
    const r = rng(17);
    const n = k.batch * k.seq;
    const inputIds = Int32Array.from({ length: n }, () => Math.floor(r() * config.vocabSize));
    const attentionMask = Int32Array.from({ length: n }, (_, i) => (Math.floor(i / k.seq) === k.batch - 1 && i % k.seq >= (3 * k.seq) / 4 ? 0 : 1));
    const b: Batch = { inputIds, attentionMask, labels: Int32Array.from(inputIds, (id, i) => (attentionMask[i] ? id : -100)), batch: k.batch, seq: k.seq };
    await model.forwardBackward(b, { gradScale: 0.01, dropoutSeed: 3, step: 1 });
    const measured = gpu.pool.stats().peakTotal - baseline + lifetime;
    model.dispose();
    gpu.pool.trim();

    const request = {
      seq: k.seq, batch: k.batch, rank: k.rank, targets: k.targets, checkpointing: true, dropout: true, padded: true, includeOptimizer: false,
      limits: { maxBufferSize: gpu.limits.maxBufferSize, maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize },
      load: { kind: 'stream', chunkBytes: DEFAULT_CHUNK_BYTES, readbackBytes: DEFAULT_CHUNK_BYTES } as const,
    };
    const plan = await planModel(config, { ...request, quant: NO_QUANT });
    const nf4Plan = await planModel(config, { ...request, quant: DEFAULT_QUANT });
    const rel = (p: number, m: number) => Math.abs(p - m) / m;
    console.info(`demo, plain LoRA (${weightsBefore} B of weights live before): step measured ${measured} B, planned ${plan.peakBytes} B; load measured ${loadMeasured} B, planned ${plan.load.peakBytes} B; weights ${weightsMeasured} B (NF4 plan: ${nf4Plan.persistent.weights} B)`);
    expect(rel(plan.peakBytes, measured)).toBeLessThan(0.01);
    expect(rel(plan.load.peakBytes, loadMeasured)).toBeLessThan(0.01);
    expect(plan.persistent.weights).toBe(weightsMeasured);
    // Every base weight in f32: 4 bytes per parameter (the rotary tables besides).
    const params = load.arch.parameters;
    expect(weightsMeasured).toBeGreaterThanOrEqual(4 * params);
    expect(weightsMeasured).toBeLessThan(4 * params * 1.1);
    expect(nf4Plan.persistent.weights).toBeLessThan(plan.persistent.weights / 2);
    expect(plan.storageBytes).toBe(plan.downloadBytes);
  });
});

describe('cli train --no-quantize', () => {
  const DATA = 'public/demo/data/ds1000-demo.jsonl';
  const FLAGS = { model: 'demo', data: DATA, steps: '2', seed: '11', validation: '0.05', batch: '1', accum: '1' };

  function cliIo() {
    const written = new Map<string, Uint8Array | string>();
    const lines: Record<string, unknown>[] = [];
    const logs: string[] = [];
    const io: CliIo = {
      log: (m) => void logs.push(m),
      line: (v) => void lines.push(v as Record<string, unknown>),
      readFile: async (path) => {
        expect(path).toBe(DATA);
        const res = await fetch(`/${DATA.replace(/^public\//, '')}`);
        return new Uint8Array(await res.arrayBuffer());
      },
      readText: async () => {
        throw new Error('not read');
      },
      listDir: async () => null,
      exists: async () => false,
      writeFile: async (path, data) => void written.set(path, data),
    };
    return { io, written, lines, logs, losses: () => lines.filter((l) => typeof l.loss === 'number').map((l) => [l.step, l.loss, l.grad_norm]) };
  }

  it('trains the demo on the unquantized base; stopped and resumed without the flag it continues unquantized, to the same losses and bytes', async () => {
    const full = cliIo();
    const a = await cliTrain({ positional: [], flags: { ...FLAGS, 'no-quantize': true, out: 'full' } }, full.io);
    expect(a.result).toMatchObject({ ok: true, status: 'done', steps: 2, quantization: 'none' });
    expect(full.logs.some((l) => /unquantized base \(plain LoRA, f32 on the GPU\)/.test(l))).toBe(true);

    const first = cliIo();
    const b = await cliTrain({ positional: [], flags: { ...FLAGS, 'no-quantize': true, 'stop-after': '1' } }, first.io);
    expect(b.result).toMatchObject({ ok: true, status: 'stopped', steps: 1, quantization: 'none' });
    const second = cliIo();
    const c = await cliTrain({ positional: [], flags: { ...FLAGS, resume: true, out: 'resumed' } }, second.io);
    expect(c.result).toMatchObject({ ok: true, status: 'done', steps: 2, quantization: 'none' });
    expect(second.logs).toContain('resuming on the unquantized base this run was trained on (it was started with --no-quantize)');
    expect(second.lines).toContainEqual({ resumed_from_step: 1 });
    expect([...first.losses(), ...second.losses()]).toEqual(full.losses());
    const bytes = (r: ReturnType<typeof cliIo>, dir: string) => Array.from(r.written.get(`${dir}/adapter_model.safetensors`) as Uint8Array);
    expect(bytes(second, 'resumed')).toEqual(bytes(full, 'full'));

    // A run on the NF4 base is not resumed on an unquantized one: its adapter fits the NF4 base.
    const nf4 = cliIo();
    const d = await cliTrain({ positional: [], flags: { ...FLAGS, seed: '12', 'stop-after': '1' } }, nf4.io);
    expect(d.result).toMatchObject({ ok: true, status: 'stopped', quantization: 'nf4' });
    await expect(cliTrain({ positional: [], flags: { ...FLAGS, seed: '12', resume: true, 'no-quantize': true } }, cliIo().io)).rejects.toThrow(/trained on the NF4 base \(QLoRA\); resume it without --no-quantize/);
  }, 900_000);
});

describe('the page’s session with quantize: false', () => {
  it('plans an f32 base, loads it, records it with the run, and resumes on it after a reload', async () => {
    const demo: ModelSource = { kind: 'preset', name: 'demo' };
    const stamp = Date.now();
    const dbs = { origin: location.origin, runsDb: `plain-runs-${stamp}`, checkpointsDb: `plain-checkpoints-${stamp}` };
    const session = new Session(dbs);
    const events: EngineEvent[] = [];
    expect((await session.init((e) => events.push(e))).status).toBe('ready');
    const preset = (await session.presets()).find((p) => p.name === 'demo')!;
    const settings = { ...preset.defaults, maxSteps: 3, validationFraction: 0.05, evalEvery: 0, sampleEvery: 0 };

    const nf4 = await session.plan(demo, settings);
    const plain = await session.plan(demo, settings, { quantize: false });
    expect(plain.peakBytes).toBeGreaterThan(nf4.peakBytes);
    expect(plain.byCategory.weights).toBeGreaterThan(3 * nf4.byCategory.weights);
    expect(plain.storageBytes).toBe(plain.downloadBytes);
    await expect(session.loadModel(demo, settings, { quantize: 'no' } as unknown as LoadOptions)).rejects.toMatchObject({ info: { code: 'invalid-setting', field: 'quantize' } });
    expect(await session.loadModel(demo, settings, { quantize: false })).toMatchObject({ quantization: 'none' });
    expect(await session.loadModel(demo, settings)).toMatchObject({ quantization: 'nf4' });

    const res = await fetch('/demo/data/ds1000-demo.jsonl');
    const file = new File([new Uint8Array(await res.arrayBuffer()) as BlobPart], 'ds1000-demo.jsonl');
    const dataset = await session.loadDataset({ source: { kind: 'file', file }, template: preset.template, mapping: null, seqLength: settings.seqLength, validationFraction: settings.validationFraction, seed: settings.seed, model: demo });
    expect(dataset.ok).toBe(true);
    // Stopped after its first step, as a closed tab would leave it.
    let stopping: Promise<void> | null = null;
    const stopAfterFirst = (e: EngineEvent) => {
      events.push(e);
      if (e.type === 'metrics' && e.step === 1 && !stopping) stopping = session.stop();
    };
    await session.init(stopAfterFirst);
    await session.train(demo, settings, { quantize: false });
    await session.finished();
    await stopping;

    const reloaded = new Session(dbs);
    const after: EngineEvent[] = [];
    expect((await reloaded.init((e) => after.push(e))).status).toBe('ready');
    const saved = await reloaded.resumable();
    expect(saved, JSON.stringify(events.filter((e) => e.type === 'train-state' || e.type === 'error'))).toMatchObject({ totalSteps: 3, quantization: 'none' });
    expect(saved!.step).toBeLessThan(3);
    await reloaded.resumeRun(saved!.runId);
    await reloaded.finished();
    const states = after.flatMap((e) => (e.type === 'train-state' ? [e.state] : []));
    expect(states[states.length - 1], JSON.stringify(after.filter((e) => e.type === 'error'))).toBe('done');
    // The resumed run's adapter names its base as unquantized: it was loaded that way again.
    const zip = unzipSync(await reloaded.exportAdapter({ finalTrainLoss: null, finalValidationLoss: null, steps: 3, dataset: file.name }));
    const card = new TextDecoder().decode(zip['README.md']);
    expect(card).toMatch(/not quantized: the checkpoint's values in float32 \(plain LoRA\)/);
    expect(card).not.toMatch(/- "qlora"/);
  }, 600_000);
});
