import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { layerNormBackward, layerNormBackwardCpu, layerNormCpu, layerNormForward } from '../../workers/kernels/layernorm';
import { POISON, randn, relErr, testGpu } from './helpers';
import { dot, finiteDiff, pick, someCoords } from './fd';

describe('layernorm', () => {
  for (const [rows, cols] of [
    [1, 3],
    [7, 300],
    [5, 64],
    // 32, 64, 128 and 256 threads a row (rowWorkgroupSize), rows longer than a pass of 256.
    [2, 160],
    [2, 2100],
  ]) {
    it(`forward and input gradient, ${rows}x${cols}`, async () => {
      const gpu = await testGpu();
      const eps = 1e-5;
      const x = randn(rows * cols, rows + cols, 2);
      for (let i = 0; i < x.length; i++) x[i] += 0.5; // a non-zero mean
      const w = randn(cols, 3, 0.3).map((v) => 1 + v);
      const b = randn(cols, 4, 0.1);
      const dy = randn(rows * cols, 5);
      const [xb, wb, bb, dyb] = [x, w, b, dy].map((a) => gpu.upload(a, 'scratch'));
      const y = gpu.alloc(rows * cols * 4, 'scratch');
      const stats = gpu.alloc(rows * 8, 'scratch');
      const dx = gpu.alloc(rows * cols * 4, 'scratch');
      gpu.fill(y, POISON);
      gpu.fill(stats, POISON);
      gpu.fill(dx, POISON);
      layerNormForward(gpu, SHADERS.layernorm, { x: xb, weight: wb, bias: bb, y, stats, rows, cols, eps });
      layerNormBackward(gpu, SHADERS.layernorm, { x: xb, weight: wb, stats, dy: dyb, dx, rows, cols });
      const ref = layerNormCpu(x, w, b, rows, cols, eps);
      expect(relErr(await gpu.readF32(y, rows * cols), ref.y)).toBeLessThan(2e-6);
      const dxRef = layerNormBackwardCpu(x, w, dy, rows, cols, eps);
      const got = await gpu.readF32(dx, rows * cols);
      expect(relErr(got, dxRef)).toBeLessThan(1e-5);
      // The CPU gradient against finite differences of the float64 forward.
      const coords = someCoords(rows * cols);
      const fd = finiteDiff((xx) => dot(layerNormCpu(xx, w, b, rows, cols, eps).y, dy), x, coords);
      expect(relErr(pick(dxRef, coords), fd)).toBeLessThan(1e-6);
      // Accumulating mode adds onto what is there.
      layerNormBackward(gpu, SHADERS.layernorm, { x: xb, weight: wb, stats, dy: dyb, dx, rows, cols, accumulate: true });
      expect(relErr(await gpu.readF32(dx, rows * cols), dxRef.map((v) => 2 * v))).toBeLessThan(1e-5);
      gpu.release(xb, wb, bb, dyb, y, stats, dx);
    });
  }
});
