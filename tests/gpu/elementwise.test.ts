import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { axpy, copyRows, copyRowsCpu } from '../../workers/kernels/elementwise';
import { POISON, randn, relErr, testGpu } from './helpers';

describe('elementwise', () => {
  it('copy_rows: strided slice into strided destination, overwrite and accumulate', async () => {
    const gpu = await testGpu();
    const spec = { rows: 7, cols: 9, srcStride: 23, srcOff: 5, dstStride: 11, dstOff: 13 };
    const src = randn(7 * 23 + 5, 1);
    const dstInit = randn(13 + 7 * 11, 2);
    const s = gpu.upload(src, 'scratch');
    const d = gpu.upload(dstInit, 'scratch');
    copyRows(gpu, SHADERS.elementwise, { src: s, dst: d, ...spec });
    const want = Float32Array.from(dstInit);
    copyRowsCpu(src, want, spec);
    expect(Array.from(await gpu.readF32(d, want.length))).toEqual(Array.from(want));
    copyRows(gpu, SHADERS.elementwise, { src: s, dst: d, ...spec, accumulate: true });
    copyRowsCpu(src, want, { ...spec, accumulate: true });
    expect(relErr(await gpu.readF32(d, want.length), want)).toBeLessThan(1e-7);
    gpu.release(s, d);
  });

  it('axpy', async () => {
    const gpu = await testGpu();
    const n = 517;
    const x = randn(n, 3);
    const y = randn(n, 4);
    const xb = gpu.upload(x, 'scratch');
    const yb = gpu.alloc(n * 4 + 64, 'scratch');
    gpu.fill(yb, POISON);
    gpu.write(yb, y);
    axpy(gpu, SHADERS.elementwise, xb, yb, n, -0.5);
    const got = await gpu.readU32(yb, n + 16);
    expect(relErr(new Float32Array(got.buffer).subarray(0, n), y.map((v, i) => v - 0.5 * x[i]))).toBeLessThan(1e-7);
    expect(got[n]).toBe(POISON); // nothing past n is written
    gpu.release(xb, yb);
  });
});
