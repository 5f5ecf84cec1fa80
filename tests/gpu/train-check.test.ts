/** train-check on every hf-train fixture (phi, falcon, Llama, Qwen2, Phi-3), through the same function the CLI command runs. */
import { describe, expect, it } from 'vitest';
import { Gpu } from '../../workers/gpu/runtime';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { causalLmFactory } from '../../workers/train/hf-train-model';
import { runTrainCheckFolder, TRAIN_CHECK_TOLERANCE } from '../../workers/train/train-check';
import { testGpu } from './helpers';

async function check(gpu: Gpu, folder: string, read = async (name: string) => new Uint8Array(await (await fetch(`/tests/fixtures/hf-train/${folder}/${name}`)).arrayBuffer())) {
  return runTrainCheckFolder({ gpu, folder, read, createModel: causalLmFactory(SHADERS), shaders: SHADERS });
}

describe('train-check (hf-train fixtures)', () => {
  for (const folder of ['tiny-phi', 'tiny-falcon', 'tiny-llama', 'tiny-qwen2', 'tiny-phi3']) {
    it(`${folder}: every quantity within ${TRAIN_CHECK_TOLERANCE} relative`, async () => {
      const gpu = await testGpu();
      const report = await check(gpu, folder);
      console.log(folder, JSON.stringify(report.quantities.map((q) => [q.name, Number(q.rel.toExponential(2))])));
      expect(report.steps).toBe(6);
      expect(report.quantities.map((q) => q.name)).toEqual([
        'micro_token_counts', 'micro_sum_losses', 'step_losses', 'step_lrs', 'step_grad_norms', 'step_clipped', 'eval_loss', 'optimizer_step', 'lora_weights', 'exp_avg', 'exp_avg_sq',
      ]);
      expect(report.ok, JSON.stringify(report.worst)).toBe(true);
      // Far inside the tolerance: f32 noise is ~1e-6 here.
      expect(report.worst.rel).toBeLessThan(1e-5);
    });
  }

  it('fails when the expected trajectory is not the one trained (a schedule one step ahead)', async () => {
    const gpu = await testGpu();
    const base = (name: string) => fetch(`/tests/fixtures/hf-train/tiny-phi/${name}`).then(async (r) => new Uint8Array(await r.arrayBuffer()));
    // Same data, but train.json claims 1 warmup step: every lr after step 0 moves.
    const read = async (name: string) => {
      if (name !== 'train.json') return base(name);
      const json = JSON.parse(new TextDecoder().decode(await base(name)));
      json.num_warmup_steps = 1;
      return new TextEncoder().encode(JSON.stringify(json));
    };
    const report = await check(gpu, 'tiny-phi', read);
    expect(report.ok).toBe(false);
    expect(report.quantities.find((q) => q.name === 'step_lrs')!.rel).toBeGreaterThan(0.1);
  });
});
