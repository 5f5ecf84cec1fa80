import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { downloadNf4, nf4BitsPerParam, quantizeStreamToGpu, quantizeToGpu, releaseNf4, uploadNf4, type Nf4GpuWeight } from '../../workers/nf4/gpu';
import { nf4LinearBackwardData, nf4LinearCpu, nf4LinearForward, rowsPerThread, tiledWorkgroupBytes } from '../../workers/kernels/nf4-matmul';
import { quantizeNF4 } from '../../workers/nf4/reference';
import { POISON, randn, relErr, testGpu } from './helpers';


// [M, N, K]: K·N not a multiple of 64, so blocks straddle rows; K % 4 and K % 8 both ways
// (the kernels decode whole words when rows are aligned). M ≤ 4 takes the gemv kernel: K % 32
// both ways (it decodes 32-code groups when rows allow), N not a multiple of its 8 columns per
// workgroup, rows longer than one pass of its 32 lanes.
const shapes: [number, number, number][] = [
  [4, 13, 160],
  [1, 29, 2080],
  [5, 37, 130],
  [70, 19, 67],
  [1, 45, 33],
  [3, 8, 200],
  [66, 40, 132],
  [2, 50, 96],
  [20, 33, 64],
  [33, 17, 40],
];

describe('fused NF4 linear vs CPU reference', () => {
  for (const [M, N, K] of shapes) {
    for (const doubleQuant of [true, false]) {
      for (const split of [false, true]) {
        it(`M=${M} N=${N} K=${K} dq=${doubleQuant} split=${split}`, async () => {
          const gpu = await testGpu();
          const seed = M * 7 + N * 13 + K;
          const wData = randn(N * K, seed, 0.05);
          // Split: parts of a few blocks force several dispatches, with blocks shared between parts.
          const opts = { doubleQuant, maxPartBytes: split ? Math.ceil(K / 64 + 2) * 32 : undefined, chunkBlocks: split ? 3 : undefined };
          const w: Nf4GpuWeight = await quantizeToGpu(gpu, SHADERS, wData, [N, K], opts);
          if (split) expect(w.parts.length).toBeGreaterThan(1);
          const state = await downloadNf4(gpu, w);
          const ref = nf4LinearCpu(state);
          const x = randn(M * K, seed + 1);
          const bias = randn(N, seed + 2);
          const dy = randn(M * N, seed + 3);
          const dx0 = randn(M * K, seed + 4);
          const xg = gpu.upload(x, 'scratch');
          const bg = gpu.upload(bias, 'scratch');
          const dyg = gpu.upload(dy, 'scratch');
          const yg = gpu.alloc(M * N * 4, 'scratch');
          for (const tiledOnly of [false, true]) {
            gpu.fill(yg, POISON);
            nf4LinearForward(gpu, SHADERS, { x: xg, weight: w, bias: bg, y: yg, M, tiledOnly });
            expect(relErr(await gpu.readF32(yg, M * N), ref.forward(x, M, bias))).toBeLessThan(1e-5);
          }
          // The gemv kernel in each shape it takes on some adapter (4 to 32 threads per column).
          for (const gemvColumns of M <= 4 ? [8, 16, 32, 64] : []) {
            gpu.fill(yg, POISON);
            nf4LinearForward(gpu, SHADERS, { x: xg, weight: w, bias: bg, y: yg, M, gemvColumns });
            expect(relErr(await gpu.readF32(yg, M * N), ref.forward(x, M, bias)), `${gemvColumns} columns per workgroup`).toBeLessThan(1e-5);
          }
          gpu.fill(yg, POISON);
          nf4LinearForward(gpu, SHADERS, { x: xg, weight: w, y: yg, M });
          expect(relErr(await gpu.readF32(yg, M * N), ref.forward(x, M))).toBeLessThan(1e-5);
          // Accumulate: y += x·Wᵀ + bias, on both the gemv and the tiled path.
          const y0 = randn(M * N, seed + 5);
          for (const tiledOnly of [false, true]) {
            gpu.write(yg, y0);
            nf4LinearForward(gpu, SHADERS, { x: xg, weight: w, bias: bg, y: yg, M, tiledOnly, accumulate: true });
            expect(relErr(await gpu.readF32(yg, M * N), ref.forward(x, M, bias).map((v, i) => v + y0[i]))).toBeLessThan(1e-5);
          }

          const dxg = gpu.alloc(M * K * 4, 'scratch');
          gpu.fill(dxg, POISON);
          nf4LinearBackwardData(gpu, SHADERS, { dy: dyg, weight: w, dx: dxg, M, accumulate: false });
          const dx = ref.backward(dy, M);
          expect(relErr(await gpu.readF32(dxg, M * K), dx)).toBeLessThan(1e-5);
          gpu.write(dxg, dx0);
          nf4LinearBackwardData(gpu, SHADERS, { dy: dyg, weight: w, dx: dxg, M, accumulate: true });
          expect(relErr(await gpu.readF32(dxg, M * K), dx.map((v, i) => v + dx0[i]))).toBeLessThan(1e-5);
          gpu.release(xg, bg, dyg, yg, dxg);
          releaseNf4(gpu, w);
        });
      }
    }
  }

  // Every tile height of the tiled kernels on M beyond one 128-row tile, K aligned to whole
  // words and not, split weights included: forward with bias and accumulate, backward both ways.
  for (const [M, N, K, split] of [[131, 70, 136, false], [130, 37, 67, true]] as const) {
    it(`tiled kernels at every tile height: M=${M} N=${N} K=${K} split=${split}`, async () => {
      const gpu = await testGpu();
      const seed = M + N + K;
      const w = await quantizeToGpu(gpu, SHADERS, randn(N * K, seed, 0.05), [N, K], { doubleQuant: true, maxPartBytes: split ? Math.ceil(K / 64 + 2) * 64 : undefined });
      if (split) expect(w.parts.length).toBeGreaterThan(1);
      const ref = nf4LinearCpu(await downloadNf4(gpu, w));
      const [x, bias, dy, y0] = [randn(M * K, seed + 1), randn(N, seed + 2), randn(M * N, seed + 3), randn(M * N, seed + 4)];
      const [xg, bg, dyg] = [gpu.upload(x, 'scratch'), gpu.upload(bias, 'scratch'), gpu.upload(dy, 'scratch')];
      const yg = gpu.alloc(M * N * 4, 'scratch');
      const dxg = gpu.alloc(M * K * 4, 'scratch');
      const yRef = ref.forward(x, M, bias);
      const dxRef = ref.backward(dy, M);
      for (const tileRows of [1, 2, 4, 8] as const) {
        gpu.fill(yg, POISON);
        nf4LinearForward(gpu, SHADERS, { x: xg, weight: w, bias: bg, y: yg, M, tileRows });
        expect(relErr(await gpu.readF32(yg, M * N), yRef), `forward, ${tileRows} rows per thread`).toBeLessThan(1e-5);
        gpu.write(yg, y0);
        nf4LinearForward(gpu, SHADERS, { x: xg, weight: w, bias: bg, y: yg, M, tileRows, accumulate: true });
        expect(relErr(await gpu.readF32(yg, M * N), yRef.map((v, i) => v + y0[i])), `accumulate, ${tileRows} rows per thread`).toBeLessThan(1e-5);
        gpu.fill(dxg, POISON);
        nf4LinearBackwardData(gpu, SHADERS, { dy: dyg, weight: w, dx: dxg, M, accumulate: false, tileRows });
        expect(relErr(await gpu.readF32(dxg, M * K), dxRef), `backward, ${tileRows} rows per thread`).toBeLessThan(1e-5);
      }
      gpu.release(xg, bg, dyg, yg, dxg);
      releaseNf4(gpu, w);
    });
  }

  it('tile height follows M and fits the workgroup memory', () => {
    expect([1, 16, 17, 32, 33, 64, 65, 512].map((M) => rowsPerThread(M, 32768))).toEqual([1, 1, 2, 2, 4, 4, 8, 8]);
    // Not far past M: 150 or 160 rows in 64-row tiles (192 computed, not 256), 300 in 64-row tiles (320, not 384).
    expect([150, 160, 300, 384].map((M) => rowsPerThread(M, 32768))).toEqual([4, 4, 4, 8]);
    // WebGPU's default 16 KiB: the 64- and 128-row tiles do not fit, 32 rows do.
    expect(tiledWorkgroupBytes(4)).toBeGreaterThan(16384);
    expect(tiledWorkgroupBytes(2)).toBeLessThanOrEqual(16384);
    expect(rowsPerThread(512, 16384)).toBe(2);
    expect(rowsPerThread(512, tiledWorkgroupBytes(4))).toBe(4);
    expect(() => rowsPerThread(512, 16384, 8)).toThrow(/8 rows per thread need 24896 bytes of workgroup memory, the device has 16384/);
  });

  it('a weight uploaded from a stored state computes the same as the CPU reference', async () => {
    const gpu = await testGpu();
    const [M, N, K] = [6, 21, 75];
    const q = quantizeNF4(randn(N * K, 77, 0.1), [N, K], { doubleQuant: true });
    const w = uploadNf4(gpu, q, { maxPartBytes: 160 });
    const x = randn(M * K, 78);
    const xg = gpu.upload(x, 'scratch');
    const yg = gpu.alloc(M * N * 4, 'scratch');
    gpu.fill(yg, POISON);
    nf4LinearForward(gpu, SHADERS, { x: xg, weight: w, y: yg, M });
    expect(relErr(await gpu.readF32(yg, M * N), nf4LinearCpu(q).forward(x, M))).toBeLessThan(1e-5);
    const back = await downloadNf4(gpu, w);
    expect(back.packed).toEqual(q.packed);
    expect(back.nested!.qabsmax).toEqual(q.nested!.qabsmax);
    gpu.release(xg, yg);
    releaseNf4(gpu, w);
  });

  it('a stream that fails mid-weight leaves no GPU memory behind', async () => {
    const gpu = await testGpu();
    gpu.lifetimeBuffers();
    const live = gpu.pool.stats().liveTotal;
    const data = randn(40 * 130, 9, 0.05);
    const readChunk = (start: number, count: number) => {
      if (start > 0) throw new Error('connection lost');
      return data.subarray(start, start + count);
    };
    await expect(quantizeStreamToGpu(gpu, SHADERS, [40, 130], 'f32', readChunk, { chunkBlocks: 3, maxPartBytes: 800 })).rejects.toThrow('connection lost');
    expect(gpu.pool.stats().liveTotal).toBe(live);
  });

  it('stores 4.127 bits per parameter with double quantisation', async () => {
    const gpu = await testGpu();
    const [N, K] = [256, 1024];
    const w = await quantizeToGpu(gpu, SHADERS, randn(N * K, 5, 0.02), [N, K], { doubleQuant: true });
    expect(nf4BitsPerParam(w)).toBeCloseTo(4 + 8 / 64 + 32 / (64 * 256) + 32 / (N * K), 6);
    expect(nf4BitsPerParam(w).toFixed(3)).toBe('4.127');
    releaseNf4(gpu, w);
  });
});
