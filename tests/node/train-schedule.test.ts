import { describe, expect, it } from 'vitest';
import { lrLambda, scheduledLr, warmupStepsFor } from '../../workers/train/schedule';

// Expected values written out from transformers' optimization.py formulas by hand:
//   warmup (s < w):      s / max(1, w)
//   linear:              max(0, (T − s) / max(1, T − w))
//   cosine (cycles 0.5): max(0, 0.5·(1 + cos(π · (s − w) / max(1, T − w))))
//   constant:            1 (no warmup)
describe('lr schedules (transformers semantics)', () => {
  it('cosine with 2 warmup steps of 6 = the hf-train fixtures', () => {
    const lrs = [0, 1, 2, 3, 4, 5].map((s) => scheduledLr(0.002, { name: 'cosine', warmupSteps: 2 }, s, 6));
    const want = [0.0, 0.001, 0.002, 0.0017071067811865474, 0.001, 0.00029289321881345256];
    lrs.forEach((lr, i) => expect(lr).toBeCloseTo(want[i], 18));
  });
  it('linear with warmup 3 of 10', () => {
    const got = [0, 1, 2, 3, 4, 9, 10, 11].map((s) => lrLambda({ name: 'linear', warmupSteps: 3 }, s, 10));
    expect(got).toEqual([0, 1 / 3, 2 / 3, 7 / 7, 6 / 7, 1 / 7, 0, 0]);
  });
  it('constant and constant_with_warmup', () => {
    expect([0, 1, 5].map((s) => lrLambda({ name: 'constant', warmupSteps: 4 }, s, 10))).toEqual([1, 1, 1]);
    expect([0, 1, 3, 4, 9].map((s) => lrLambda({ name: 'constant_with_warmup', warmupSteps: 4 }, s, 10))).toEqual([0, 0.25, 0.75, 1, 1]);
  });
  it('cosine without warmup and with 1 full cycle', () => {
    expect(lrLambda({ name: 'cosine' }, 0, 8)).toBe(1);
    expect(lrLambda({ name: 'cosine' }, 4, 8)).toBeCloseTo(0.5, 15);
    expect(lrLambda({ name: 'cosine' }, 2, 8)).toBeCloseTo(0.5 * (1 + Math.cos(Math.PI / 4)), 15);
    expect(lrLambda({ name: 'cosine', numCycles: 1 }, 4, 8)).toBeCloseTo(0, 15);
  });
  it('warmup by ratio = ceil(ratio · total), steps win over ratio', () => {
    expect(warmupStepsFor({ name: 'linear', warmupRatio: 0.1 }, 25)).toBe(3);
    expect(warmupStepsFor({ name: 'linear', warmupRatio: 0.1 }, 30)).toBe(3);
    expect(warmupStepsFor({ name: 'linear', warmupRatio: 0.1, warmupSteps: 5 }, 30)).toBe(5);
    expect(lrLambda({ name: 'linear', warmupRatio: 0.1 }, 1, 25)).toBeCloseTo(1 / 3, 15);
  });
  it('rejects an unknown schedule by name', () => {
    expect(() => lrLambda({ name: 'poly' as 'linear' }, 0, 10)).toThrow(/unknown lr schedule "poly"/);
  });
});
