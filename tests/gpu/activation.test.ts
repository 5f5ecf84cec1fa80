import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { erf, geluBackward, geluCpu, geluForward, geluGradCpu, type GeluKind } from '../../workers/kernels/activation';
import { POISON, randn, relErr, testGpu } from './helpers';

describe('GELU activations', () => {
  it('erf reference matches known values', () => {
    expect(erf(0)).toBe(0);
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 14);
    expect(erf(-2)).toBeCloseTo(-0.9953222650189527, 14);
    expect(erf(3)).toBeCloseTo(0.9999779095030014, 14);
  });

  for (const kind of ['gelu_new', 'gelu'] as GeluKind[]) {
    it(`${kind}: forward and gradient on 1037 values including large magnitudes`, async () => {
      const gpu = await testGpu();
      const n = 1037;
      const x = randn(n, 11, 2.5);
      x[0] = 30;
      x[1] = -30;
      x[2] = 0;
      const dy = randn(n, 12);
      const xb = gpu.upload(x, 'scratch');
      const y = gpu.alloc(n * 4, 'scratch');
      gpu.fill(y, POISON);
      geluForward(gpu, SHADERS.activation, kind, xb, y, n);
      const want = Float64Array.from(x, (v) => geluCpu(kind, v));
      expect(relErr(await gpu.readF32(y, n), want)).toBeLessThan(2e-6);
      const d = gpu.upload(dy, 'scratch');
      geluBackward(gpu, SHADERS.activation, kind, xb, d, n);
      const dWant = Float64Array.from(x, (v, i) => dy[i] * geluGradCpu(kind, v));
      expect(relErr(await gpu.readF32(d, n), dWant)).toBeLessThan(2e-6);
      // The analytic gradient against central differences in float64.
      for (const v of [-4, -1.3, -0.2, 0, 0.7, 2.9]) {
        const h = 1e-6;
        const fd = (geluCpu(kind, v + h) - geluCpu(kind, v - h)) / (2 * h);
        expect(Math.abs(fd - geluGradCpu(kind, v))).toBeLessThan(1e-8);
      }
      gpu.release(xb, y, d);
    });
  }

  it('gelu_new and exact GELU differ (the test can tell them apart)', () => {
    expect(Math.abs(geluCpu('gelu_new', 1.5) - geluCpu('gelu', 1.5))).toBeGreaterThan(1e-4);
  });
});
