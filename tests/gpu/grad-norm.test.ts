import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { GradNormPlan, gradNormCpu } from '../../workers/kernels/grad-norm';
import { POISON, randn, testGpu } from './helpers';


describe('global gradient norm + clip coefficient', () => {
  const cases: [string, number[], number][] = [
    ['one element', [1], 1],
    ['awkward sizes', [3, 257, 2049, 5000, 17], 1],
    ['many tensors (> 256)', Array.from({ length: 300 }, (_, i) => 1 + ((i * 37) % 90)), 0.5],
    ['no clipping (maxNorm 0)', [100, 2100], 0],
  ];
  for (const [name, sizes, maxNorm] of cases) {
    it(name, async () => {
      const gpu = await testGpu();
      const data = sizes.map((n, i) => randn(n, 17 * i + n, 0.02));
      const bufs = data.map((d) => gpu.upload(d, 'lora'));
      const plan = new GradNormPlan(gpu, SHADERS, bufs.map((buf, i) => ({ buf, count: sizes[i] })));
      gpu.fill(plan.clip, POISON);
      gpu.fill(plan.partials, POISON);
      plan.run(maxNorm);
      const [total, coef] = await gpu.readF32(plan.clip, 2);
      const [wantTotal, wantCoef] = gradNormCpu(data, maxNorm);
      let f64 = 0;
      for (const d of data) for (const x of d) f64 += x * x;
      f64 = Math.sqrt(f64);
      expect(Math.abs(total - wantTotal) / wantTotal).toBeLessThan(1e-6);
      expect(Math.abs(total - f64) / f64).toBeLessThan(1e-5);
      expect(Math.abs(coef - wantCoef)).toBeLessThan(1e-6);
      if (maxNorm > 0 && f64 > maxNorm) expect(coef).toBeCloseTo(maxNorm / (f64 + 1e-6), 5);
      else expect(coef).toBe(1);
      plan.dispose();
      gpu.release(...bufs);
    });
  }

  it('clips exactly at max_norm / (norm + 1e-6) and never scales up', async () => {
    const gpu = await testGpu();
    const g = new Float32Array([3, 4]); // norm 5
    const buf = gpu.upload(g, 'lora');
    const plan = new GradNormPlan(gpu, SHADERS, [{ buf, count: 2 }]);
    plan.run(1);
    const [total, coef] = await gpu.readF32(plan.clip, 2);
    expect(total).toBe(5);
    expect(coef).toBe(Math.fround(1 / Math.fround(5 + Math.fround(1e-6))));
    plan.run(10);
    expect((await gpu.readF32(plan.clip, 2))[1]).toBe(1);
    plan.dispose();
    gpu.release(buf);
  });
});
