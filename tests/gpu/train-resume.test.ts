/**
 * Resume is bit-exact: 2N steps uninterrupted vs N steps, stop (checkpoint to IndexedDB),
 * everything on the GPU thrown away, a new model and trainer restored from the store, N more
 * steps → identical losses, adapter bytes and optimizer state. Also pause/resume in one run.
 */
import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import type { Batch } from '../../workers/model/types';
import { ShuffledExamples } from '../../workers/train/batches';
import { CheckpointStore } from '../../workers/train/checkpoint-store';
import { Trainer, type TrainEvent, type TrainSettings } from '../../workers/train/trainer';
import { ToyModel, toyWeights, type ToyShape } from './train-toy-model';
import { randn, testGpu } from './helpers';

const shape: ToyShape = { vocab: 9, hidden: 5, r: 2, scale: 2, seed: 11 };

type Example = { ids: number[] };
const examples: Example[] = Array.from({ length: 10 }, (_, i) => ({ ids: Array.from(randn(3 + (i % 4), 50 + i), (x) => Math.floor(Math.abs(x) * 1000) % shape.vocab) }));
function collate(list: Example[]): Batch {
  const seq = Math.max(...list.map((e) => e.ids.length));
  const inputIds = new Int32Array(list.length * seq);
  const labels = new Int32Array(list.length * seq).fill(-100);
  const attentionMask = new Int32Array(list.length * seq);
  list.forEach((e, b) => e.ids.forEach((id, t) => {
    inputIds[b * seq + t] = id;
    labels[b * seq + t] = id;
    attentionMask[b * seq + t] = 1;
  }));
  return { inputIds, labels, attentionMask, batch: list.length, seq };
}

const N = 3;
const settings: Partial<TrainSettings> = {
  lr: 0.05, weightDecay: 0.01, schedule: { name: 'linear', warmupSteps: 1 }, maxGradNorm: 0.3, gradAccum: 2, maxSteps: 2 * N, seed: 7, evalEvery: 2,
};
const source = () => new ShuffledExamples({ examples, microBatchSize: 2, seed: 7, shuffle: true, collate });
const validation = [collate(examples.slice(0, 3))];

async function finalState(trainer: Trainer) {
  const snap = await trainer.snapshot();
  return { lora: snap.lora.map((l) => new Uint8Array(l.data.buffer.slice(0))), moments: snap.optimizer };
}

describe('resume from an IndexedDB checkpoint', () => {
  it('2N uninterrupted == N + stop + restore in a fresh model + N', async () => {
    const gpu = await testGpu();
    const fullModel = new ToyModel(gpu, shape);
    const full = new Trainer({ gpu, model: fullModel, shaders: SHADERS, train: source(), validation }, settings);
    const a = await full.run();
    expect(a.status).toBe('done');
    expect(a.evals.map((e) => e.step)).toEqual([0, 2, 4, 6]);
    const want = await finalState(full);
    full.dispose();
    fullModel.dispose();

    const store = await CheckpointStore.open({ dbName: `resume-${Date.now()}` });
    const firstModel = new ToyModel(gpu, shape);
    let first: Trainer | null = null;
    const onEvent = (e: TrainEvent) => {
      if (e.type === 'step' && e.step === N - 1) first!.stop();
    };
    first = new Trainer({ gpu, model: firstModel, shaders: SHADERS, train: source(), validation, checkpoints: store.sink('run'), onEvent }, settings);
    const b1 = await first.run();
    expect(b1.status).toBe('stopped');
    expect(b1.step).toBe(N);
    first.dispose();
    firstModel.dispose();

    // Same base model, different LoRA initialisation: the adapter must come from the checkpoint.
    const base = toyWeights(shape);
    const secondModel = new ToyModel(gpu, shape, { ...base, A: randn(base.A.length, 999), B: randn(base.B.length, 998) });
    const second = new Trainer({ gpu, model: secondModel, shaders: SHADERS, train: source(), validation, checkpoints: store.sink('run') }, settings);
    const loaded = await store.loadLatest('run');
    expect(loaded!.info.reason).toBe('stop');
    expect(loaded!.snapshot.cursor).toEqual({ epoch: 1, microBatch: 0 });
    second.restore(loaded!.snapshot);
    const b2 = await second.run();
    expect(b2.status).toBe('done');
    expect(b2.history.map((h) => h.loss)).toEqual(a.history.map((h) => h.loss));
    expect(b2.history.map((h) => h.gradNorm)).toEqual(a.history.map((h) => h.gradNorm));
    expect(b2.evals).toEqual(a.evals);
    const got = await finalState(second);
    expect(got.lora).toEqual(want.lora);
    expect(got.moments).toEqual(want.moments);
    second.dispose();
    secondModel.dispose();
    store.close();
  });

  it('pause saves a checkpoint and resume() continues the same run', async () => {
    const gpu = await testGpu();
    const model = new ToyModel(gpu, shape);
    const store = await CheckpointStore.open({ dbName: `pause-${Date.now()}` });
    const statuses: string[] = [];
    let trainer: Trainer | null = null;
    trainer = new Trainer({
      gpu, model, shaders: SHADERS, train: source(), validation, checkpoints: store.sink('p'),
      onEvent: (e) => {
        if (e.type === 'status') statuses.push(e.status);
        if (e.type === 'step' && e.step === 1) trainer!.pause();
        if (e.type === 'status' && e.status === 'paused') setTimeout(() => trainer!.resume(), 10);
      },
    }, settings);
    const r = await trainer.run();
    expect(r.status).toBe('done');
    expect(statuses).toEqual(['running', 'paused', 'running', 'done']);
    const list = await store.list('p');
    expect(list.map((c) => [c.step, c.reason])).toEqual([[2 * N, 'end'], [2, 'pause']]);
    trainer.dispose();
    model.dispose();
    store.close();
  });
});
