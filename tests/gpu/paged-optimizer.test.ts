/**
 * Paged optimizer state: AdamW moments in fixed-size pages under a GPU byte budget give
 * bit-identical training to the unpaged optimizer, with a lower peak of `optimizer` bytes in
 * the pool's accounting (never above the budget).
 */
import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { FixedBatches } from '../../workers/train/batches';
import { Trainer, type TrainSettings } from '../../workers/train/trainer';
import type { PagingOptions } from '../../workers/train/paged-moments';
import { ToyModel, toyBatches, type ToyShape } from './train-toy-model';
import { testGpu } from './helpers';

const shape: ToyShape = { vocab: 7, hidden: 23, r: 3, scale: 2, seed: 3 };
const batches = toyBatches(shape.vocab, 6, 2, 5, [1, 3], 21);
const settings: Partial<TrainSettings> = { lr: 0.01, weightDecay: 0.01, schedule: { name: 'cosine', warmupSteps: 1 }, maxGradNorm: 1, gradAccum: 2, maxSteps: 3 };

async function train(paging?: PagingOptions) {
  const gpu = await testGpu();
  const model = new ToyModel(gpu, shape);
  gpu.pool.resetPeak();
  const trainer = new Trainer({ gpu, model, shaders: SHADERS, train: new FixedBatches(batches) }, { ...settings, paging });
  const result = await trainer.run();
  const peak = gpu.pool.stats().peak.optimizer;
  const snap = await trainer.snapshot();
  const stats = trainer.optimizer.moments.stats();
  trainer.dispose();
  model.dispose();
  return { result, snap, peak, stats };
}

describe('paged AdamW moments', () => {
  it('identical results to unpaged, lower peak optimizer bytes, budget held', async () => {
    const unpaged = await train();
    const pageElems = 16; // A: 3×23 = 69 → 5 pages; B: 23×3 = 69 → 5 pages
    const budgetBytes = 3 * pageElems * 8;
    const paged = await train({ pageElems, budgetBytes });
    expect(paged.stats.pages).toBe(10);
    expect(paged.stats.evictions).toBeGreaterThan(0);
    expect(paged.result.history.map((h) => h.loss)).toEqual(unpaged.result.history.map((h) => h.loss));
    expect(paged.result.history.map((h) => h.gradNorm)).toEqual(unpaged.result.history.map((h) => h.gradNorm));
    expect(paged.snap.lora).toEqual(unpaged.snap.lora);
    expect(paged.snap.optimizer).toEqual(unpaged.snap.optimizer);
    console.log(`peak optimizer bytes: unpaged ${unpaged.peak}, paged ${paged.peak} (budget ${budgetBytes})`);
    expect(paged.peak).toBeLessThanOrEqual(budgetBytes);
    expect(paged.peak).toBeLessThan(unpaged.peak);
  });

  it('refuses a budget smaller than one page', async () => {
    const gpu = await testGpu();
    const model = new ToyModel(gpu, shape);
    expect(() => new Trainer({ gpu, model, shaders: SHADERS, train: new FixedBatches(batches) }, { ...settings, paging: { pageElems: 64, budgetBytes: 100 } })).toThrow(/below one page/);
    model.dispose();
  });
});
