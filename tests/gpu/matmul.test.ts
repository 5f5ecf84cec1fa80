import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { matmul, matmulCpu, matmulKernel, type MatmulKernel } from '../../workers/kernels/matmul';
import { POISON, randn, relErr, testGpu } from './helpers';
import { isEmulated } from '../../workers/gpu/device';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from '../../workers/formats/float16';

const cases: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 33, 65],
  [70, 19, 130],
  // M, N >= 64: the 64×64 register-blocked kernel.
  [130, 70, 67],
  [64, 65, 16],
];

// Every kernel on every shape: the choice by shape and adapter must never pick a wrong one.
const KERNELS: MatmulKernel[] = ['main', 'main64', 'direct'];

describe('f32 matmul', () => {
  for (const [M, N, K] of cases) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        it(`M=${M} N=${N} K=${K} transA=${transA} transB=${transB}`, async () => {
          const gpu = await testGpu();
          const a = randn(M * K, M + 7 * K);
          const b = randn(K * N, N + 11 * K);
          const bias = randn(N, N + 3);
          const a1 = gpu.upload(a, 'scratch');
          const b1 = gpu.upload(b, 'scratch');
          const bias1 = gpu.upload(bias, 'scratch');
          const c1 = gpu.alloc(M * N * 4, 'scratch');
          for (const kernel of KERNELS) {
            gpu.fill(c1, POISON);
            matmul(gpu, SHADERS.matmul, { a: a1, b: b1, c: c1, M, N, K, transA, transB, alpha: 0.5, bias: bias1, kernel });
            const got = await gpu.readF32(c1, M * N);
            const want = new Float32Array(M * N);
            matmulCpu(a, b, want, { M, N, K, transA, transB, alpha: 0.5, bias });
            expect(relErr(got, want), kernel).toBeLessThan(1e-5);
            // Accumulate: C += A·B.
            matmul(gpu, SHADERS.matmul, { a: a1, b: b1, c: c1, M, N, K, transA, transB, beta: 1, kernel });
            matmulCpu(a, b, want, { M, N, K, transA, transB, beta: 1 });
            expect(relErr(await gpu.readF32(c1, M * N), want), `${kernel}, accumulating`).toBeLessThan(1e-5);
          }
          gpu.release(a1, b1, bias1, c1);
        });
      }
    }
  }

  // A frozen 16-bit lm_head: logits = X·Wᵀ and its input gradient dX = dlogits·W, with W packed
  // two 16-bit values per word; odd sizes put elements in both halves of a word at every edge.
  for (const formatB of ['f16', 'bf16'] as const) {
    for (const [M, N, K] of [[3, 7, 5], [70, 131, 33], [65, 9, 67]] as [number, number, number][]) {
      for (const transB of [true, false]) {
        it(`16-bit B (${formatB}) M=${M} N=${N} K=${K} transB=${transB} with an odd element offset`, async () => {
          const gpu = await testGpu();
          const offB = 3;
          const a = randn(M * K, M + 5 * K);
          const raw = randn(K * N + offB, N + 13 * K);
          const packed = formatB === 'f16' ? f32ArrayToF16(raw) : f32ArrayToBf16(raw);
          const widened = formatB === 'f16' ? f16ArrayToF32(packed) : bf16ArrayToF32(packed);
          const a1 = gpu.upload(a, 'scratch');
          const b1 = gpu.upload(packed, 'scratch');
          const c1 = gpu.alloc(M * N * 4, 'scratch');
          const want = new Float32Array(M * N);
          matmulCpu(a, widened, want, { M, N, K, transB, offB });
          for (const kernel of KERNELS) {
            gpu.fill(c1, POISON);
            matmul(gpu, SHADERS.matmul, { a: a1, b: b1, c: c1, M, N, K, transB, offB, formatB, kernel });
            expect(relErr(await gpu.readF32(c1, M * N), want), kernel).toBeLessThan(1e-5);
          }
          gpu.release(a1, b1, c1);
        });
      }
    }
  }

  it('batched with offsets and strides', async () => {
    const gpu = await testGpu();
    const [M, N, K, batch] = [5, 9, 13, 3];
    const a = randn(M * K * batch + 4, 1);
    const b = randn(K * N * batch + 2, 2);
    const a1 = gpu.upload(a, 'scratch');
    const b1 = gpu.upload(b, 'scratch');
    const c1 = gpu.alloc((M * N * batch + 1) * 4, 'scratch');
    const spec = { M, N, K, offA: 4, offB: 2, offC: 1, batch, strideA: M * K, strideB: K * N, strideC: M * N };
    const want = new Float32Array(M * N * batch + 1);
    matmulCpu(a, b, want, spec);
    for (const kernel of KERNELS) {
      gpu.fill(c1, POISON);
      matmul(gpu, SHADERS.matmul, { a: a1, b: b1, c: c1, ...spec, kernel });
      const got = await gpu.readF32(c1, M * N * batch + 1);
      expect(relErr(got.subarray(1), want.subarray(1)), kernel).toBeLessThan(1e-5);
    }
    gpu.release(a1, b1, c1);
  });

  it('the kernel follows the shape, and the adapter for skinny products', async () => {
    const gpu = await testGpu();
    const emulated = isEmulated(gpu.adapter);
    expect(matmulKernel(gpu, { M: 150, N: 2048, K: 128 })).toBe('main64');
    expect(matmulKernel(gpu, { M: 150, N: 128, K: 2048 })).toBe('main64');
    expect(matmulKernel(gpu, { M: 40, N: 70, K: 64 })).toBe('main');
    for (const [M, N, K] of [[150, 16, 128], [150, 128, 16], [16, 128, 150], [1, 2048, 128]]) {
      expect(matmulKernel(gpu, { M, N, K }), `${M}×${N}×${K}`).toBe(emulated ? 'direct' : M >= 64 && N >= 64 ? 'main64' : 'main');
    }
    expect(matmulKernel(gpu, { M: 1, N: 2048, K: 128, kernel: 'main64' })).toBe('main64');
  });
});
