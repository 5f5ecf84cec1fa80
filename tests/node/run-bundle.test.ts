/**
 * The run bundle's TypeScript side without a GPU: the order written equals the micro-batches
 * the trainer feeds (recorded from a run assembled as the studio assembles it, on the counting
 * device), streamed safetensors equal the in-memory writer's bytes, a falcon-7b-shaped run's
 * bundle is written holding one tensor at a time (measured), and the reader refuses damaged
 * bundles naming the file and the field.
 */
import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { countingGpu } from '../../workers/gpu/counting-device';
import { GIB } from '../../workers/load/planner';
import { PlanningWeights, QUANTIZE_F32 } from '../../workers/load/engine-memory';
import { DEFAULT_QUANT, presetNamed } from '../../workers/load/presets';
import { HeldBytes } from '../../workers/load/held';
import { CausalLM } from '../../workers/model/causal-lm';
import { parseModelConfig } from '../../workers/model/config';
import { allLinearNames } from '../../workers/model/architecture';
import type { Batch, ForwardBackwardOptions, LoraTensor, TrainableCausalLM } from '../../workers/model/types';
import type { ModelShaders, OptimizerShaders } from '../../workers/kernels/shaders';
import { makeBatch } from '../../workers/data/batch';
import type { Example } from '../../workers/data/types';
import { runSettings, trainerView, type RunSettings } from '../../workers/run/settings';
import { assembleRun } from '../../workers/session/runs';
import { CheckpointStore } from '../../workers/train/checkpoint-store';
import { Trainer, type TrainerSnapshot } from '../../workers/train/trainer';
import { ShuffledExamples } from '../../workers/train/batches';
import { SafetensorsFile, writeSafetensors } from '../../workers/formats/safetensors';
import type { ExportFile } from '../../workers/export/bundle';
import type { TextTokenizer } from '../../workers/tokenizer';
import { remainingOrder } from '../../workers/export/run-bundle/order';
import { streamedSafetensors, viewBytes } from '../../workers/export/run-bundle/stream-safetensors';
import { bundleOfRun } from '../../workers/export/run-bundle/run-record';
import { STUDIO_VERSION, type RunFacts } from '../../workers/export/run-bundle/run-facts';
import { runQuantization } from '../../workers/export/run-bundle/quantization';
import { readRunBundle } from '../../workers/export/run-bundle/reader';
import { exportRun } from '../../workers/cli/commands/export-run';
import type { CliIo } from '../../workers/cli/io';

const NO_SHADERS = new Proxy({}, { get: () => '' }) as ModelShaders & OptimizerShaders;

/** Deterministic examples of awkward lengths, with row text. */
function examples(n: number, seed: number, vocab = 50): Example[] {
  return Array.from({ length: n }, (_, i) => {
    const len = 3 + ((i * 7 + seed) % 6);
    const inputIds = Int32Array.from({ length: len }, (_, t) => (i * 31 + t * 17 + seed) % vocab);
    const labels = inputIds.map((id, t) => (t < 2 ? -100 : id));
    return { inputIds, labels, text: i % 3 === 2 ? { messages: [{ role: 'user', content: `q${i}` }, { role: 'assistant', content: `a${i} "quoted"\n` }] } : { prompt: `p${i}`, completion: `c${i}` } };
  });
}

const tokenizer = { padTokenId: 0, eosTokenId: 1, decode: () => '' } as unknown as TextTokenizer;

/** A model that records each batch the trainer feeds it and learns nothing. */
class RecordingModel implements TrainableCausalLM {
  readonly lora: LoraTensor[];
  fed: Batch[] = [];
  constructor(gpu: ReturnType<typeof countingGpu>['gpu']) {
    this.lora = [{ key: 'base_model.model.m.q.lora_A.weight', shape: [1, 2], weight: gpu.alloc(8, 'lora'), grad: gpu.alloc(8, 'lora') }];
  }
  async forwardBackward(batch: Batch, _o: ForwardBackwardOptions) {
    this.fed.push(batch);
    let tokens = 0;
    for (let b = 0; b < batch.batch; b++) for (let t = 1; t < batch.seq; t++) if (batch.labels[b * batch.seq + t] !== -100) tokens++;
    return { lossSum: tokens, tokens };
  }
  async loss() {
    return { lossSum: 1, tokens: 1 };
  }
  async generate() {
    return { tokens: [], stoppedBy: 'length' as const };
  }
  dispose() {}
}

async function collect(file: ExportFile, sink?: (c: Uint8Array) => void): Promise<Uint8Array> {
  const out = new Uint8Array(file.bytes);
  let at = 0;
  for await (const c of file.chunks()) {
    sink?.(c);
    out.set(c, at);
    at += c.byteLength;
  }
  expect(at, file.name).toBe(file.bytes);
  return out;
}

describe('run bundle order', () => {
  it('equals the micro-batches the trainer feeds from any step on (short last micro-batch and window, several epochs)', async () => {
    // 11 examples, batch 2 → 6 micro-batches per epoch (the last one short), accumulation 4 → windows of 4 and 2.
    const train = examples(11, 3);
    const settings: RunSettings = runSettings({ targetModules: ['q'], batchSize: 2, gradAccum: 4, maxSteps: 7, seed: 9, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0 });
    const { gpu } = countingGpu({ maxStorageBufferBindingSize: GIB });
    const model = new RecordingModel(gpu);
    const trainer = assembleRun({ gpu, model, tokenizer, settings, train, validation: [], samplePrompts: [] });
    expect((await trainer.run()).status).toBe('done');
    // Which micro-batches each step fed: 6 per epoch in windows of 4 + 2.
    const perStep = [4, 2, 4, 2, 4, 2, 4];
    expect(model.fed.length).toBe(perStep.reduce((a, b) => a + b, 0));
    for (const from of [0, 1, 3, 6, 7]) {
      const order = remainingOrder({ examples: train.length, settings, fromStep: from, totalSteps: 7 });
      expect(order.rows).toBe((7 - from) * 4);
      let fedAt = perStep.slice(0, from).reduce((a, b) => a + b, 0);
      for (let s = from; s < 7; s++) {
        for (let k = 0; k < 4; k++) {
          const row = Array.from(order.microBatches.subarray(((s - from) * 4 + k) * 2, ((s - from) * 4 + k + 1) * 2));
          if (k >= perStep[s]) {
            expect(row, `step ${s} micro ${k}`).toEqual([-1, -1]);
            continue;
          }
          const ids = row.filter((i) => i >= 0);
          const want = makeBatch(ids.map((i) => train[i]), tokenizer.padTokenId);
          expect(model.fed[fedAt++], `step ${s} micro ${k}`).toEqual(want);
        }
      }
    }
    // A short micro-batch (the epoch's last) leaves −1 in its second row.
    const all = remainingOrder({ examples: 11, settings, fromStep: 0, totalSteps: 7 }).microBatches;
    expect(Array.from(all.subarray(5 * 2, 5 * 2 + 2))[1]).toBe(-1);
    trainer.dispose();
  });

  it('streams safetensors byte-identical to the in-memory writer', async () => {
    const a = Float32Array.from({ length: 15 }, (_, i) => i / 7);
    const b = Int32Array.from({ length: 5 }, (_, i) => i - 2);
    const c = BigInt64Array.from([0n, 3n, 9n]);
    const want = writeSafetensors([{ name: 'z', dtype: 'F32', shape: [3, 5], data: a }, { name: 'b', dtype: 'I32', shape: [5], data: b }, { name: 'c', dtype: 'I64', shape: [3], data: c }], { k: 'v' });
    const file = streamedSafetensors('x.safetensors', [
      { name: 'z', dtype: 'F32', shape: [3, 5], bytes: async function* () { yield viewBytes(a.subarray(0, 4)); yield viewBytes(a.subarray(4)); } },
      { name: 'b', dtype: 'I32', shape: [5], bytes: async function* () { yield viewBytes(b); } },
      { name: 'c', dtype: 'I64', shape: [3], bytes: async function* () { yield viewBytes(c); } },
    ], { k: 'v' });
    expect(Array.from(await collect(file))).toEqual(Array.from(want));
    const short = streamedSafetensors('y.safetensors', [{ name: 'z', dtype: 'F32', shape: [4], bytes: async function* () { yield new Uint8Array(12); } }]);
    await expect(collect(short)).rejects.toThrow(/y\.safetensors: tensor "z" produced 12 bytes, its F32 \[4\] needs 16/);
  });
});

/** A run's facts as the CLI keeps them. */
function facts(config: Record<string, unknown>, settings: RunSettings): RunFacts {
  return {
    studioVersion: STUDIO_VERSION,
    base: { id: 'tiiuae/falcon-7b', revision: 'main', commit: null, config },
    quantization: runQuantization(DEFAULT_QUANT),
    settings,
    data: { template: 'counseling', template_sha256: null, tokenizer_sha256: null, pad_token_id: 11, dataset_sha256: null },
  };
}

/** Fills a snapshot's tensors with deterministic values (the counting device reads back zeros). */
function fill(snap: TrainerSnapshot): TrainerSnapshot {
  let k = 0;
  const values = (a: Float32Array, scale: number) => {
    k++;
    for (let i = 0; i < a.length; i++) a[i] = scale * Math.sin(i * 0.37 + k);
    return a;
  };
  for (const l of snap.lora) values(l.data, 0.02);
  for (const t of snap.optimizer.tensors) {
    values(t.expAvg, 1e-3);
    values(t.expAvgSq, 1e-6).forEach((x, i, a) => (a[i] = Math.abs(x)));
  }
  return snap;
}

describe('a falcon-7b-shaped run bundle', { timeout: 300_000 }, () => {
  it('is written holding at most one tensor (and one checkpoint chunk) of model and optimizer data, and reads back whole', async () => {
    const raw = { ...(presetNamed('falcon-7b')!.config as Record<string, unknown>), num_hidden_layers: 2 };
    const config = parseModelConfig(JSON.stringify(raw));
    expect([config.hidden, config.vocabSize]).toEqual([4544, 65024]);
    const settings = runSettings({ targetModules: allLinearNames(config), rank: 16, batchSize: 2, gradAccum: 2, maxSteps: 10, seed: 3, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0 });
    const { gpu } = countingGpu({ maxStorageBufferBindingSize: GIB });
    gpu.lifetimeBuffers();
    const model = await CausalLM.load(gpu, NO_SHADERS, config, new PlanningWeights(config, DEFAULT_QUANT, QUANTIZE_F32), {
      mode: 'nf4',
      lora: { settings: { r: 16, alpha: 32, dropout: 0, targetModules: settings.targetModules }, init: { seed: 0 } },
    });
    const train = examples(9, 1, 65024);
    const validation = examples(3, 2, 65024);
    const trainer = new Trainer({ gpu, model, shaders: NO_SHADERS, train: new ShuffledExamples({ examples: train, microBatchSize: 2, seed: 3, shuffle: true, collate: (e) => makeBatch(e, 11) }) }, trainerView(settings));
    const snap = fill(await trainer.snapshot());
    snap.step = 4;
    snap.optimizer.step = 4;
    snap.history = [0, 1, 2, 3].map((s) => ({ step: s, epoch: Math.floor(s / 3), loss: 3 - s / 10, lr: 1e-4, gradNorm: 0.5, clipped: false, micro: [] }));
    const chunkBytes = 64 * 1024;
    const store = await CheckpointStore.open({ dbName: `falcon-bundle-${Date.now()}`, chunkBytes });
    await store.save('falcon', snap, 'stop');
    const checkpoint = (await store.openLatest('falcon'))!;
    const largest = Math.max(...snap.lora.map((l) => l.data.byteLength));
    // falcon-7b's widest LoRA tensor: lora_B of dense_h_to_4h, 18176 × 16 f32.
    expect(largest).toBe(18176 * 16 * 4);

    const record = { facts: facts(raw, settings), train, validation };
    const held = new HeldBytes();
    const files = await bundleOfRun(record, checkpoint, held, new Date(0));
    const got = new Map<string, Uint8Array>();
    for (const f of files) got.set(f.name, await collect(f));
    expect(held.bytes).toBe(0);
    expect(held.peak).toBeGreaterThanOrEqual(largest);
    expect(held.peak).toBeLessThanOrEqual(largest + chunkBytes);
    const totalModelBytes = snap.lora.reduce((n, l) => n + 3 * l.data.byteLength, 0);
    console.log(`falcon-7b-shaped bundle (2 layers, r 16): ${files.length} files, ${[...got.values()].reduce((n, b) => n + b.byteLength, 0)} bytes; held at most ${held.peak} B of model/optimizer data (largest tensor ${largest} B, checkpoint chunk ${chunkBytes} B, all tensors ${totalModelBytes} B)`);
    expect(totalModelBytes).toBeGreaterThan(10 * held.peak);

    // Every file reads back: the same keys and values, the order and the run's position.
    const back = await readRunBundle({ label: 'falcon', read: async (p) => got.get(p) ?? null });
    expect(back.run).toMatchObject({ step: 4, schedule: { total_steps: 10, position: 4 }, optimizer: { step: 4 }, lora: { r: 16 }, data: { train_examples: 9, validation_examples: 3 } });
    expect(back.snapshot.lora.map((l) => l.key).sort()).toEqual(snap.lora.map((l) => l.key).sort());
    for (const l of back.snapshot.lora) expect(l.data, l.key).toEqual(snap.lora.find((x) => x.key === l.key)!.data);
    for (const t of back.snapshot.optimizer.tensors) {
      const want = snap.optimizer.tensors.find((x) => x.key === t.key)!;
      expect(t.expAvg, t.key).toEqual(want.expAvg);
      expect(t.expAvgSq, t.key).toEqual(want.expAvgSq);
    }
    expect(back.train.map((e) => [Array.from(e.inputIds), Array.from(e.labels), e.text])).toEqual(train.map((e) => [Array.from(e.inputIds), Array.from(e.labels), e.text]));
    const adapter = new SafetensorsFile(got.get('adapter/adapter_model.safetensors')!);
    expect(adapter.names.sort()).toEqual(snap.lora.map((l) => l.key).sort());
    expect(JSON.parse(new TextDecoder().decode(got.get('adapter/adapter_config.json')!))).toMatchObject({ r: 16, lora_alpha: settings.alpha, base_model_name_or_path: 'tiiuae/falcon-7b', target_modules: ['dense', 'dense_4h_to_h', 'dense_h_to_4h', 'query_key_value'] });
    trainer.dispose();
    model.dispose();
    store.close();
  });
});

describe('cli export-run', () => {
  const io = (entries: string[] = []): CliIo => ({
    log: () => {}, line: () => {}, readFile: async () => new Uint8Array(0), readText: async () => '', writeFile: async () => {},
    listDir: async () => (entries.length ? entries.map((name) => ({ name, isDirectory: false })) : null), exists: async () => entries.length > 0,
  });
  it('refuses unknown flags, a missing --out, a folder that is not empty and a profile with no run, saying which', async () => {
    await expect(exportRun({ positional: [], flags: { profile: 'p', out: 'o', format: 'peft' } }, io())).rejects.toThrow(/unknown flag --format/);
    await expect(exportRun({ positional: [], flags: { profile: 'p' } }, io())).rejects.toThrow(/usage: export-run --profile/);
    await expect(exportRun({ positional: [], flags: { profile: 'p', out: 'o' } }, io(['a', 'b']))).rejects.toThrow(/--out o is not empty \(2 entries: a, b\)/);
    await expect(exportRun({ positional: [], flags: { profile: 'p', out: 'o' } }, io())).rejects.toThrow(/the profile p holds no training run with a checkpoint/);
  });
});

describe('reading a run bundle back', () => {
  async function smallBundle(): Promise<Map<string, Uint8Array>> {
    const settings = runSettings({ targetModules: ['q'], rank: 2, batchSize: 2, gradAccum: 1, maxSteps: 6, seed: 4, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0 });
    const keys = ['base_model.model.m.q.lora_A.weight', 'base_model.model.m.q.lora_B.weight'];
    const shapes: [number, number][] = [[2, 3], [5, 2]];
    const snap: TrainerSnapshot = fill({
      settings: trainerView(settings), step: 2, totalSteps: 6, cursor: { epoch: 0, microBatch: 2 }, rng: { seed: 4, dropoutSeed: 4 }, history: [], evals: [],
      lora: keys.map((key, i) => ({ key, shape: shapes[i], data: new Float32Array(shapes[i][0] * shapes[i][1]) })),
      optimizer: { step: 2, tensors: keys.map((key, i) => ({ key, expAvg: new Float32Array(shapes[i][0] * shapes[i][1]), expAvgSq: new Float32Array(shapes[i][0] * shapes[i][1]) })) },
    });
    const store = await CheckpointStore.open({ dbName: `small-bundle-${Date.now()}-${Math.random()}` });
    await store.save('r', snap);
    const files = await bundleOfRun({ facts: { ...facts({ model_type: 'toy', vocab_size: 50 }, settings) }, train: examples(7, 1), validation: examples(2, 5) }, (await store.openLatest('r'))!);
    const got = new Map<string, Uint8Array>();
    for (const f of files) got.set(f.name, await collect(f));
    store.close();
    return got;
  }
  const read = (files: Map<string, Uint8Array>) => readRunBundle({ label: 'b', read: async (p) => files.get(p) ?? null });
  const edit = (files: Map<string, Uint8Array>, path: string, change: (json: Record<string, unknown>) => void) => {
    const json = JSON.parse(new TextDecoder().decode(files.get(path)!));
    change(json);
    files.set(path, new TextEncoder().encode(JSON.stringify(json)));
  };

  it('refuses what does not fit, naming the file and the field', async () => {
    const good = await smallBundle();
    const back = await read(good);
    expect(back.snapshot.step).toBe(2);
    expect(back.snapshot.cursor).toEqual({ epoch: 0, microBatch: 2 });
    const cases: [string, (f: Map<string, Uint8Array>) => void, RegExp][] = [
      ['format', (f) => edit(f, 'run.json', (j) => (j.format = 'other')), /b\/run\.json \(format\): expected "qlora-studio-run"/],
      ['version', (f) => edit(f, 'run.json', (j) => (j.version = 2)), /b\/run\.json \(version\): this studio reads version 1/],
      ['setting', (f) => edit(f, 'run.json', (j) => ((j.settings as Record<string, unknown>).batchSize = 0)), /b\/run\.json \(settings\.batchSize\)/],
      ['position', (f) => edit(f, 'run.json', (j) => ((j.schedule as Record<string, unknown>).position = 3)), /\(schedule\.position\): must equal step \(2\)/],
      ['missing file', (f) => f.delete('optimizer/optimizer.safetensors'), /b\/optimizer\/optimizer\.safetensors: missing from the bundle/],
      ['NaN moment', (f) => {
        const bytes = f.get('optimizer/optimizer.safetensors')!.slice();
        const file = new SafetensorsFile(bytes);
        const t = file.info('base_model.model.m.q.lora_B.weight.exp_avg');
        new DataView(bytes.buffer).setFloat32(t.begin + 8, NaN, true);
        f.set('optimizer/optimizer.safetensors', bytes);
      }, /b\/optimizer\/optimizer\.safetensors \(base_model\.model\.m\.q\.lora_B\.weight\.exp_avg\): holds NaN at index 2/],
      ['step metadata', (f) => edit(f, 'run.json', (j) => { (j.optimizer as Record<string, unknown>).step = 1; j.step = 1; (j.schedule as Record<string, unknown>).position = 1; }), /optimizer\.safetensors \(__metadata__\.step\)/],
      ['token outside the vocabulary', (f) => edit(f, 'run.json', (j) => ((j.base as { config: Record<string, unknown> }).config.vocab_size = 10)), /b\/data\/train\.safetensors \(input_ids\): token \d+ at position \d+ is outside the vocabulary \(10\)/],
      ['order', (f) => {
        const bytes = f.get('data/order.safetensors')!.slice();
        const t = new SafetensorsFile(bytes).info('micro_batches');
        const view = new DataView(bytes.buffer);
        view.setInt32(t.begin, (view.getInt32(t.begin, true) + 1) % 7, true);
        f.set('data/order.safetensors', bytes);
      }, /b\/data\/order\.safetensors \(micro_batches\): row 0 \(step 3\) differs from the order/],
      ['jsonl', (f) => f.set('data/train.jsonl', new TextEncoder().encode('{"prompt":1}\n')), /b\/data\/train\.jsonl: 1 lines for 7 examples/],
    ];
    for (const [what, damage, message] of cases) {
      const files = new Map(good);
      damage(files);
      await expect(read(files), what).rejects.toThrow(message);
    }
  });
});
