import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { rmsNormBackward, rmsNormBackwardCpu, rmsNormCpu, rmsNormForward } from '../../workers/kernels/rmsnorm';
import { POISON, randn, relErr, testGpu } from './helpers';
import { dot, finiteDiff, pick, someCoords } from './fd';
import hf from '../fixtures/llama-ops/transformers-4.44.json';

describe('rmsnorm', () => {
  for (const [rows, cols] of [
    [1, 3],
    [7, 300],
    [3, 577],
    [5, 64],
    // 32, 64, 128 and 256 threads a row (rowWorkgroupSize), rows longer than a pass of 256.
    [2, 160],
    [2, 2100],
  ]) {
    it(`forward, 1/rms per row and input gradient, ${rows}x${cols}`, async () => {
      const gpu = await testGpu();
      const eps = 1e-5;
      const x = randn(rows * cols, rows + cols, 2);
      for (let i = 0; i < x.length; i++) x[i] += 0.5; // a non-zero mean: RMSNorm must not subtract it
      // The last row is small, so that eps (inside the square root) moves its result visibly.
      for (let c = 0; c < cols; c++) x[(rows - 1) * cols + c] *= 2e-3;
      const w = randn(cols, 3, 0.3).map((v) => 1 + v);
      const dy = randn(rows * cols, 5);
      const [xb, wb, dyb] = [x, w, dy].map((a) => gpu.upload(a, 'scratch'));
      const y = gpu.alloc(rows * cols * 4, 'scratch');
      const stats = gpu.alloc(rows * 4, 'scratch');
      const dx = gpu.alloc(rows * cols * 4, 'scratch');
      gpu.fill(y, POISON);
      gpu.fill(stats, POISON);
      gpu.fill(dx, POISON);
      rmsNormForward(gpu, SHADERS.rmsnorm, { x: xb, weight: wb, y, stats, rows, cols, eps });
      rmsNormBackward(gpu, SHADERS.rmsnorm, { x: xb, weight: wb, stats, dy: dyb, dx, rows, cols });
      const ref = rmsNormCpu(x, w, rows, cols, eps);
      expect(relErr(await gpu.readF32(y, rows * cols), ref.y), 'y').toBeLessThan(2e-6);
      expect(relErr(await gpu.readF32(stats, rows), ref.stats), '1/rms').toBeLessThan(2e-6);
      // eps outside the square root (x / (rms + eps)) would be told apart on the small row.
      const small = (rows - 1) * cols;
      const got = await gpu.readF32(y, cols, small);
      let ms = 0;
      for (let c = 0; c < cols; c++) ms += x[small + c] ** 2;
      const outside = Float64Array.from({ length: cols }, (_, c) => (w[c] * x[small + c]) / (Math.sqrt(ms / cols) + eps));
      expect(relErr(got, outside)).toBeGreaterThan(1e-3);
      const dxRef = rmsNormBackwardCpu(x, w, dy, rows, cols, eps);
      expect(relErr(await gpu.readF32(dx, rows * cols), dxRef), 'dx').toBeLessThan(1e-5);
      // The CPU gradient against finite differences of the float64 forward.
      const coords = someCoords(rows * cols);
      const fd = finiteDiff((xx) => dot(rmsNormCpu(xx, w, rows, cols, eps).y, dy), x, coords);
      expect(relErr(pick(dxRef, coords), fd), 'dx vs finite differences').toBeLessThan(1e-6);
      // Accumulating mode adds onto what is there.
      rmsNormBackward(gpu, SHADERS.rmsnorm, { x: xb, weight: wb, stats, dy: dyb, dx, rows, cols, accumulate: true });
      expect(relErr(await gpu.readF32(dx, rows * cols), dxRef.map((v) => 2 * v)), 'accumulated dx').toBeLessThan(1e-5);
      gpu.release(xb, wb, dyb, y, stats, dx);
    });
  }

  it('names the bad field', async () => {
    const gpu = await testGpu();
    const b = gpu.alloc(64, 'scratch');
    const base = { x: b, weight: b, y: b, stats: b, rows: 2, cols: 4, eps: 1e-6 };
    expect(() => rmsNormForward(gpu, SHADERS.rmsnorm, { ...base, cols: 0 })).toThrow(/cols = 0/);
    expect(() => rmsNormForward(gpu, SHADERS.rmsnorm, { ...base, eps: Number.NaN })).toThrow(/eps = NaN/);
    expect(() => rmsNormBackward(gpu, SHADERS.rmsnorm, { x: b, weight: b, stats: b, dy: b, dx: b, rows: 1.5, cols: 4 })).toThrow(/rows = 1.5/);
    gpu.release(b);
  });

  it("matches transformers' LlamaRMSNorm: forward and its autograd input gradient (tests/fixtures/llama-ops)", async () => {
    const gpu = await testGpu();
    const { rows, cols, eps } = hf.rmsnorm;
    const [xb, wb, dyb] = [hf.rmsnorm.x, hf.rmsnorm.weight, hf.rmsnorm.dy].map((a) => gpu.upload(Float32Array.from(a), 'scratch'));
    const y = gpu.alloc(rows * cols * 4, 'scratch');
    const stats = gpu.alloc(rows * 4, 'scratch');
    const dx = gpu.alloc(rows * cols * 4, 'scratch');
    for (const b of [y, stats, dx]) gpu.fill(b, POISON);
    rmsNormForward(gpu, SHADERS.rmsnorm, { x: xb, weight: wb, y, stats, rows, cols, eps });
    rmsNormBackward(gpu, SHADERS.rmsnorm, { x: xb, weight: wb, stats, dy: dyb, dx, rows, cols });
    expect(relErr(await gpu.readF32(y, rows * cols), hf.rmsnorm.y), 'y').toBeLessThan(2e-6);
    expect(relErr(await gpu.readF32(dx, rows * cols), hf.rmsnorm.dx), 'dx').toBeLessThan(1e-5);
    gpu.release(xb, wb, dyb, y, stats, dx);
  });
});
