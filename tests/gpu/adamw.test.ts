import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { adamw, adamwCpu, adamwScalars } from '../../workers/kernels/adamw';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { AdamWOptimizer } from '../../workers/train/optimizer';
import { scheduledLr } from '../../workers/train/schedule';
import { randn, relErr, testGpu } from './helpers';


describe('AdamW kernel', () => {
  for (const n of [1, 5, 255, 257, 1000, 4099]) {
    it(`matches the f32 CPU reference over 3 steps, n=${n}`, async () => {
      const gpu = await testGpu();
      const p = randn(n, n + 1, 0.3);
      const m = new Float32Array(n);
      const v = new Float32Array(n);
      const pg = gpu.upload(p, 'lora');
      const gg = gpu.alloc(n * 4, 'lora');
      const mg = gpu.upload(m, 'optimizer');
      const vg = gpu.upload(v, 'optimizer');
      const clip = gpu.alloc(8, 'scratch');
      const hyper = { lr: 2e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
      for (let t = 1; t <= 3; t++) {
        const g = randn(n, 100 * t + n, 0.05);
        const coef = t === 2 ? 0.6837 : 1;
        gpu.write(gg, g);
        gpu.write(clip, new Float32Array([1.5, coef]));
        const k = adamwScalars({ ...hyper, lr: t === 1 ? 0 : hyper.lr }, t);
        adamw(gpu, SHADERS.adamw, { param: pg, grad: gg, expAvg: mg, expAvgSq: vg, clip, count: n, zeroGrad: true }, k);
        adamwCpu(p, g, m, v, coef, k);
        expect(relErr(await gpu.readF32(pg, n), p)).toBeLessThan(1e-6);
        expect(relErr(await gpu.readF32(mg, n), m)).toBeLessThan(1e-6);
        expect(relErr(await gpu.readF32(vg, n), v)).toBeLessThan(1e-6);
        expect(Math.max(...(await gpu.readF32(gg, n)).map(Math.abs))).toBe(0);
      }
      gpu.release(pg, gg, mg, vg, clip);
    });
  }

  it('updates only the addressed slice (offsets, poisoned neighbours untouched)', async () => {
    const gpu = await testGpu();
    const n = 300;
    const p = randn(n, 9);
    const pg = gpu.upload(p, 'lora');
    const gg = gpu.upload(randn(n, 10), 'lora');
    const mg = gpu.alloc(200 * 4, 'optimizer');
    const vg = gpu.alloc(200 * 4, 'optimizer');
    gpu.fill(mg, 0);
    gpu.fill(vg, 0);
    const clip = gpu.upload(new Float32Array([0, 1]), 'scratch');
    adamw(gpu, SHADERS.adamw, { param: pg, grad: gg, expAvg: mg, expAvgSq: vg, clip, count: 77, paramOffset: 101, stateOffset: 13 }, adamwScalars({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }, 1));
    const got = await gpu.readF32(pg, n);
    for (let i = 0; i < n; i++) {
      if (i < 101 || i >= 178) expect(got[i]).toBe(p[i]);
      else expect(got[i]).not.toBe(p[i]);
    }
    const m = await gpu.readF32(mg, 200);
    expect(m[12]).toBe(0);
    expect(m[13]).not.toBe(0);
    expect(m[90]).toBe(0);
    gpu.release(pg, gg, mg, vg, clip);
  });
});

/** Replays the fixture's recorded window gradients through the optimizer (no model involved). */
async function replay(folder: string) {
  const gpu = await testGpu();
  const load = async (name: string) => new SafetensorsFile(new Uint8Array(await (await fetch(`/tests/fixtures/hf-train/${folder}/${name}`)).arrayBuffer()), name);
  const adapter = await load('adapter_model.safetensors');
  const expected = await load('expected.safetensors');
  const train = (await (await fetch(`/tests/fixtures/hf-train/${folder}/train.json`)).json()) as Record<string, number>;
  const params = adapter.names.map((key) => {
    const w = adapter.f32(key);
    return { key, numel: w.length, weight: gpu.upload(w, 'lora'), grad: gpu.alloc(w.length * 4, 'lora') };
  });
  const opt = new AdamWOptimizer(gpu, SHADERS, params, { beta1: 0.9, beta2: 0.999, eps: train.eps, weightDecay: train.weight_decay }, { pageElems: 64, budgetBytes: 64 * 8 * 3 });
  opt.zeroGrad();
  const norms: number[] = [];
  const worst: Record<string, number> = {};
  const note = (name: string, rel: number) => (worst[name] = Math.max(worst[name] ?? 0, rel));
  for (let s = 0; s < 6; s++) {
    for (const p of params) gpu.write(p.grad, expected.f32(`${p.key}.grad_step${s}`));
    await opt.step(scheduledLr(train.lr, { name: 'cosine', warmupSteps: train.num_warmup_steps }, s, train.num_training_steps), train.max_grad_norm);
    norms.push((await opt.readClip()).norm);
    if (s === 1) for (const p of params) note('after_step1', relErr(await gpu.readF32(p.weight, p.numel), expected.f32(`${p.key}.after_step1`)));
  }
  note('step_grad_norms', relErr(norms, expected.f32('step_grad_norms')));
  const state = await opt.exportState();
  for (const p of params) note('weights', relErr(await gpu.readF32(p.weight, p.numel), expected.f32(p.key)));
  for (const t of state.tensors) {
    note('exp_avg', relErr(t.expAvg, expected.f32(`${t.key}.exp_avg`)));
    note('exp_avg_sq', relErr(t.expAvgSq, expected.f32(`${t.key}.exp_avg_sq`)));
  }
  expect(state.step).toBe(expected.ints('optimizer_step')[0]);
  opt.dispose();
  for (const p of params) gpu.release(p.weight, p.grad);
  return worst;
}

describe('optimizer replay of the hf-train fixtures (recorded gradients, paged moments)', () => {
  for (const folder of ['tiny-phi', 'tiny-falcon']) {
    it(folder, async () => {
      const worst = await replay(folder);
      console.log(folder, JSON.stringify(worst));
      for (const [name, rel] of Object.entries(worst)) expect(rel, name).toBeLessThan(1e-5);
    });
  }
});
