/**
 * train-check on the hf-train-format cases (tests/fixtures/hf-train-cases, made by
 * scripts/make-golden-cases.py): GQA 6/3 with head_dim 10, linear rope scaling, attention biases,
 * r 3 / alpha 7, right-padded micro-batches with unequal label-token counts.
 */
import { describe, expect, it } from 'vitest';
import { Gpu } from '../../workers/gpu/runtime';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { causalLmFactory } from '../../workers/train/hf-train-model';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { batchesFromSafetensors, compareWithExpected, runTrainCheckFolder, trainLikeFixture, TRAIN_CHECK_TOLERANCE, type HfTrainJson } from '../../workers/train/train-check';
import { testGpu } from './helpers';

const fixture = (folder: string, name: string) => fetch(`/tests/fixtures/hf-train-cases/${folder}/${name}`).then(async (r) => new Uint8Array(await r.arrayBuffer()));

async function check(gpu: Gpu, folder: string, read = (name: string) => fixture(folder, name)) {
  return runTrainCheckFolder({ gpu, folder, read, createModel: causalLmFactory(SHADERS), shaders: SHADERS });
}

describe('train-check (hf-train-cases)', () => {
  it(`llama-gqa-odd: every quantity within ${TRAIN_CHECK_TOLERANCE} relative`, async () => {
    const gpu = await testGpu();
    const report = await check(gpu, 'llama-gqa-odd');
    console.log('llama-gqa-odd', JSON.stringify(report.quantities.map((q) => [q.name, Number(q.rel.toExponential(2)), q.worstTensor ?? ''])));
    expect(report.steps).toBe(6);
    expect(report.quantities.map((q) => q.name)).toEqual([
      'micro_token_counts', 'micro_sum_losses', 'step_losses', 'step_lrs', 'step_grad_norms', 'step_clipped', 'eval_loss', 'optimizer_step', 'lora_weights', 'exp_avg', 'exp_avg_sq',
    ]);
    expect(report.ok, JSON.stringify(report.worst)).toBe(true);
  });

  it('llama-gqa-odd fails when the loss is the mean of per-micro-batch means (its token counts differ)', async () => {
    const gpu = await testGpu();
    const folder = 'llama-gqa-odd';
    const text = async (name: string) => new TextDecoder().decode(await fixture(folder, name));
    const tensors = async (name: string) => new SafetensorsFile(await fixture(folder, name), name);
    const model = await causalLmFactory(SHADERS)(gpu, {
      config: await text('config.json'),
      weights: await tensors('model.safetensors'),
      adapterConfig: await text('adapter_config.json'),
      adapter: await tensors('adapter_model.safetensors'),
    });
    try {
      const run = await trainLikeFixture({
        gpu,
        model,
        shaders: SHADERS,
        trainJson: JSON.parse(await text('train.json')) as HfTrainJson,
        batches: batchesFromSafetensors(await tensors('batches.safetensors')),
        accumulation: 'mean-of-micro-means',
      });
      const report = compareWithExpected(run, await tensors('expected.safetensors'));
      expect(report.ok).toBe(false);
      expect(report.quantities.find((q) => q.name === 'step_losses')!.rel).toBeGreaterThan(10 * TRAIN_CHECK_TOLERANCE);
    } finally {
      model.dispose();
    }
  });
});
