/**
 * The check has teeth: micro-batches with UNEQUAL label-token counts, a reference trajectory
 * of the token-weighted math in f64, written in the hf-train format. The trainer passes the
 * same comparison `train-check` uses; the per-micro-batch-mean mistake fails it.
 */
import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../workers/formats/safetensors';
import { compareWithExpected, settingsFromTrainJson, trainLikeFixture, type HfTrainJson } from '../../workers/train/train-check';
import { labelTokens } from '../../workers/train/batches';
import { referenceTrajectory, ToyModel, toyBatches, toyWeights, type ToyShape } from './train-toy-model';
import { testGpu } from './helpers';

const shape: ToyShape = { vocab: 11, hidden: 6, r: 2, scale: 2, seed: 5 };
const trainJson: HfTrainJson = {
  lr: 0.02,
  betas: [0.9, 0.999],
  eps: 1e-8,
  weight_decay: 0.01,
  schedule: 'cosine_with_warmup',
  num_warmup_steps: 1,
  num_training_steps: 4,
  gradient_accumulation_steps: 2,
  max_grad_norm: 0.5,
};
// Label-ignored prefix per micro-batch: counts 2·(7−k) after the shift → 12, 4, 10, 6 tokens.
const batches = toyBatches(shape.vocab, 8, 2, 7, [1, 5, 2, 4], 77);

function expectedFile(): SafetensorsFile {
  const w = toyWeights(shape);
  const ref = referenceTrajectory(shape, w, batches, settingsFromTrainJson(trainJson), batches[0]);
  const f32 = (name: string, data: ArrayLike<number>, dims = [data.length]): TensorToWrite => ({ name, dtype: 'F32', shape: dims, data: Float32Array.from(data) });
  const i64 = (name: string, data: number[]): TensorToWrite => ({ name, dtype: 'I64', shape: [data.length], data: BigInt64Array.from(data.map(BigInt)) });
  const key = (m: string) => `base_model.model.toy.proj.lora_${m}.weight`;
  const tensors: TensorToWrite[] = [
    i64('micro_token_counts', ref.microTokenCounts),
    f32('micro_sum_losses', ref.microSumLosses),
    f32('step_losses', ref.stepLosses),
    f32('step_lrs', ref.stepLrs),
    f32('step_grad_norms', ref.stepGradNorms),
    i64('step_clipped', ref.stepClipped),
    f32('eval_loss', [ref.evalLoss]),
    i64('optimizer_step', [trainJson.num_training_steps]),
  ];
  ['A', 'B'].forEach((m, i) => {
    const dims = m === 'A' ? [shape.r, shape.hidden] : [shape.hidden, shape.r];
    tensors.push(f32(key(m), i === 0 ? ref.A : ref.B, dims), f32(`${key(m)}.exp_avg`, ref.m[i], dims), f32(`${key(m)}.exp_avg_sq`, ref.v[i], dims));
  });
  return new SafetensorsFile(writeSafetensors(tensors), 'toy expected.safetensors');
}

describe('token-weighted accumulation over unequal micro-batches', () => {
  it('the micro-batches really hold unequal label-token counts', () => {
    expect(batches.map(labelTokens)).toEqual([12, 4, 10, 6, 12, 4, 10, 6]);
  });

  it('the trainer matches the f64 token-weighted reference; the per-micro-batch mean fails the same check', async () => {
    const gpu = await testGpu();
    const expected = expectedFile();
    const clipped = [...expected.ints('step_clipped')];
    expect(clipped).toContain(1);
    expect(clipped).toContain(0);

    const good = new ToyModel(gpu, shape);
    const report = compareWithExpected(await trainLikeFixture({ gpu, model: good, shaders: SHADERS, trainJson, batches }), expected);
    good.dispose();
    console.log('token-weighted', JSON.stringify(report.quantities.map((q) => [q.name, q.rel])));
    expect(report.ok, JSON.stringify(report.worst)).toBe(true);
    expect(report.worst.rel).toBeLessThan(1e-5);

    const wrong = new ToyModel(gpu, shape);
    const bad = compareWithExpected(await trainLikeFixture({ gpu, model: wrong, shaders: SHADERS, trainJson, batches, accumulation: 'mean-of-micro-means' }), expected);
    wrong.dispose();
    console.log('mean-of-micro-means', JSON.stringify(bad.quantities.map((q) => [q.name, q.rel])));
    expect(bad.ok).toBe(false);
    const rel = (name: string) => bad.quantities.find((q) => q.name === name)!.rel;
    expect(rel('step_losses')).toBeGreaterThan(1e-3);
    expect(rel('lora_weights')).toBeGreaterThan(1e-4);
    expect(rel('exp_avg')).toBeGreaterThan(1e-4);
  });
});
