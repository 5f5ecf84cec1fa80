/**
 * General f32 matrix product on the GPU: C = alpha·op(A)·op(B) (+ bias) + beta·C.
 * Linear layers use it as Y = X·Wᵀ (transB), their input gradient as dX = dY·W, and weight-like
 * gradients as dW = dYᵀ·X (transA).
 */
import { isEmulated } from '../gpu/device';
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import type { TableFormat } from './embedding';

const B_FORMAT: Record<TableFormat, number> = { f32: 0, f16: 1, bf16: 2 };

export interface MatmulSpec {
  a: GpuBuffer;
  b: GpuBuffer;
  c: GpuBuffer;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** 0 overwrites C (C is not read); 1 accumulates into C. */
  beta?: number;
  bias?: GpuBuffer;
  /** How B is stored: f32 (default) or 16-bit packed two per u32 (a frozen 16-bit lm_head). */
  formatB?: TableFormat;
  /** Element offsets into A, B, C. */
  offA?: number;
  offB?: number;
  offC?: number;
  /** Batched products: count and per-batch element strides. */
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  /** Force a kernel instead of the choice by shape and adapter (tests, benchmarks). */
  kernel?: MatmulKernel;
}

export type MatmulKernel = 'main' | 'main64' | 'direct';

/** Outputs one workgroup of each kernel covers: [columns, rows]. */
const WORKGROUP_OUTPUTS: Record<MatmulKernel, [number, number]> = { main: [16, 16], main64: [64, 64], direct: [64, 1] };

/** Products at least this large in M and N use the 64×64 register-blocked kernel; smaller ones 16×16 tiles. */
export const BIG_TILE_MIN = 64;
/** On an emulated adapter, products with a side or K this short take the direct kernel. */
const DIRECT_MAX_SIDE = 32;

/**
 * The kernel for a product. A GPU gets the tiled kernels. SwiftShader runs the direct one faster
 * where one side or K is short: measured at M=150 (one example), 150×16×128 in 3.4 ms vs 4.6,
 * 150×128×16 in 5.1 vs 11.2, 16×128×150 in 4.5 vs 7.2; a 150×2048×128 lm_head is faster tiled.
 */
export function matmulKernel(gpu: Gpu, s: Pick<MatmulSpec, 'M' | 'N' | 'K' | 'kernel'>): MatmulKernel {
  if (s.kernel) return s.kernel;
  const skinny = Math.min(s.M, s.N, s.K) <= DIRECT_MAX_SIDE;
  if (skinny && isEmulated(gpu.adapter) && s.M <= gpu.limits.maxComputeWorkgroupsPerDimension) return 'direct';
  return s.M >= BIG_TILE_MIN && s.N >= BIG_TILE_MIN ? 'main64' : 'main';
}

export function matmul(gpu: Gpu, code: string, s: MatmulSpec): void {
  const batch = s.batch ?? 1;
  const kernel = matmulKernel(gpu, s);
  const pipeline = gpu.pipeline(code, kernel, {
    TRANS_A: s.transA ? 1 : 0,
    TRANS_B: s.transB ? 1 : 0,
    HAS_BIAS: s.bias ? 1 : 0,
    B_FORMAT: B_FORMAT[s.formatB ?? 'f32'],
  });
  const params = gpu.uniform(
    [s.M, s.N, s.K, s.offA ?? 0, s.offB ?? 0, s.offC ?? 0, s.strideA ?? 0, s.strideB ?? 0, s.strideC ?? 0, s.alpha ?? 1, s.beta ?? 0, 0],
    'uuuuuuuuuffu',
  );
  gpu.dispatch({
    pipeline,
    bindings: [s.a, s.b, s.c, s.bias ?? gpu.dummy, params],
    workgroups: [Math.ceil(s.N / WORKGROUP_OUTPUTS[kernel][0]), Math.ceil(s.M / WORKGROUP_OUTPUTS[kernel][1]), batch],
    label: 'matmul',
  });
}

/** CPU reference with the same semantics (f64 accumulation, rounded once at the end). */
export function matmulCpu(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  s: Omit<MatmulSpec, 'a' | 'b' | 'c' | 'bias'> & { bias?: Float32Array },
): void {
  const batch = s.batch ?? 1;
  const alpha = s.alpha ?? 1;
  const beta = s.beta ?? 0;
  for (let z = 0; z < batch; z++) {
    const oa = (s.offA ?? 0) + z * (s.strideA ?? 0);
    const ob = (s.offB ?? 0) + z * (s.strideB ?? 0);
    const oc = (s.offC ?? 0) + z * (s.strideC ?? 0);
    for (let i = 0; i < s.M; i++) {
      for (let j = 0; j < s.N; j++) {
        let acc = 0;
        for (let k = 0; k < s.K; k++) {
          const av = s.transA ? a[oa + k * s.M + i] : a[oa + i * s.K + k];
          const bv = s.transB ? b[ob + j * s.K + k] : b[ob + k * s.N + j];
          acc += av * bv;
        }
        let v = alpha * acc + (s.bias ? s.bias[j] : 0);
        if (beta !== 0) v += beta * c[oc + i * s.N + j];
        c[oc + i * s.N + j] = v;
      }
    }
  }
}
