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

  it("Llama's layout: full width (rotDim = headDim) with a llama3-scaled table, as rotate_half applies it", async () => {
    // transformers' apply_rotary_pos_emb: emb = cat(freqs, freqs), x' = x·cos(emb) + rotate_half(x)·sin(emb),
    // rotate_half(x) = cat(−x[D/2:], x[:D/2]); written out here in float64, independently of rotaryCpu.
    const gpu = await testGpu();
    const [rows, seq, heads, D] = [11, 11, 3, 64];
    const posOffset = 8180; // across the original 8192-token context, where the llama3 scaling matters
    const scaling = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as const;
    const tables = rotaryTables(D, 500000, posOffset + seq, scaling);
    const n = rows * heads * D;
    const x = randn(n, 7);
    const want = new Float64Array(n);
    const half = D / 2;
    for (let r = 0; r < rows; r++)
      for (let h = 0; h < heads; h++) {
        const base = (r * heads + h) * D;
        const pos = posOffset + (r % seq);
        for (let d = 0; d < D; d++) {
          const cos = tables.cos[pos * half + (d % half)];
          const sin = tables.sin[pos * half + (d % half)];
          const rotated = d < half ? -x[base + d + half] : x[base + d - half];
          want[base + d] = x[base + d] * cos + rotated * sin;
        }
      }
    const cos = gpu.upload(tables.cos, 'scratch');
    const sin = gpu.upload(tables.sin, 'scratch');
    const buf = gpu.alloc(n * 4, 'scratch');
    gpu.fill(buf, POISON);
    gpu.write(buf, x);
    const spec = { rows, seq, heads, headDim: D, rotDim: D, stride: heads * D, posOffset };
    rotary(gpu, SHADERS.rotary, { x: buf, cos, sin, ...spec });
    expect(relErr(await gpu.readF32(buf, n), want)).toBeLessThan(1e-6);
    const cpu = Float64Array.from(x);
    rotaryCpu(cpu, tables, spec);
    expect(relErr(cpu, want)).toBeLessThan(1e-12);
    gpu.release(cos, sin, buf);
  });
});
