import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { rotary, rotaryCpu, rotaryTables } from '../../workers/kernels/rotary';
import { POISON, randn, relErr, testGpu } from './helpers';
import { dot } from './fd';

describe('rotary (half-split)', () => {
  it('tables follow transformers: inv_freq = 1/theta^(2i/d), cos/sin of position·inv_freq', () => {
    const t = rotaryTables(8, 10000, 5);
    expect(t.cos[0]).toBe(1);
    expect(t.sin[3 * 4 + 1]).toBeCloseTo(Math.sin(3 / Math.pow(10000, 2 / 8)), 6);
  });

  const cases = [
    { name: 'partial rotary, fused row layout with offset', rows: 10, seq: 5, heads: 3, headDim: 14, rotDim: 6, stride: 3 * 14 + 20, off: 7, posOffset: 0 },
    { name: 'full rotary, decode position offset', rows: 3, seq: 3, heads: 2, headDim: 12, rotDim: 12, stride: 24, off: 0, posOffset: 9 },
  ];
  for (const s of cases) {
    it(`${s.name}: forward and its transpose`, async () => {
      const gpu = await testGpu();
      const tables = rotaryTables(s.rotDim, 10000, 32);
      const n = s.rows * s.stride;
      const x = randn(n, s.rows + s.heads);
      const cos = gpu.upload(tables.cos, 'scratch');
      const sin = gpu.upload(tables.sin, 'scratch');
      const buf = gpu.alloc(n * 4, 'scratch');
      gpu.fill(buf, POISON);
      gpu.write(buf, x);
      rotary(gpu, SHADERS.rotary, { x: buf, cos, sin, ...s });
      const want = Float64Array.from(x);
      rotaryCpu(want, tables, s);
      const got = await gpu.readF32(buf, n);
      expect(relErr(got, want)).toBeLessThan(1e-6);
      // Features outside the rotated slice and outside the heads are untouched.
      for (let r = 0; r < s.rows; r++) for (let c = 0; c < s.off; c++) expect(got[r * s.stride + c]).toBe(x[r * s.stride + c]);
      // Backward = transpose: <R x, dy> = <x, Rᵀ dy> (the rotation is linear, so this is the exact gradient).
      const dy = randn(n, 99);
      gpu.write(buf, dy);
      rotary(gpu, SHADERS.rotary, { x: buf, cos, sin, ...s, backward: true });
      const dx = await gpu.readF32(buf, n);
      expect(Math.abs(dot(want, dy) - dot(x, dx))).toBeLessThan(1e-4 * Math.sqrt(n));
      const dxRef = Float64Array.from(dy);
      rotaryCpu(dxRef, tables, { ...s, backward: true });
      expect(relErr(dx, dxRef)).toBeLessThan(1e-6);
      gpu.release(cos, sin, buf);
    });
  }
});
