/**
 * Small data-movement kernels the model needs between the big ones: strided row copies (fused
 * QKV slices, KV-cache appends) and y += αx.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

const WG = 256;

export interface CopyRowsSpec {
  src: GpuBuffer;
  dst: GpuBuffer;
  rows: number;
  cols: number;
  srcStride: number;
  srcOff?: number;
  dstStride: number;
  dstOff?: number;
  /** Add into dst instead of overwriting. */
  accumulate?: boolean;
}

export function copyRows(gpu: Gpu, code: string, s: CopyRowsSpec): void {
  const n = s.rows * s.cols;
  if (n === 0) return;
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'copy_rows'),
    bindings: [s.src, s.dst, gpu.uniform([s.rows, s.cols, s.srcStride, s.srcOff ?? 0, s.dstStride, s.dstOff ?? 0, s.accumulate ? 1 : 0, 0])],
    workgroups: gpu.grid(Math.ceil(n / WG)),
    label: 'copy_rows',
  });
}

export function copyRowsCpu(src: ArrayLike<number>, dst: Float32Array | Float64Array, s: Omit<CopyRowsSpec, 'src' | 'dst'>): void {
  for (let r = 0; r < s.rows; r++) {
    for (let c = 0; c < s.cols; c++) {
      const d = (s.dstOff ?? 0) + r * s.dstStride + c;
      const v = src[(s.srcOff ?? 0) + r * s.srcStride + c];
      dst[d] = s.accumulate ? dst[d] + v : v;
    }
  }
}

/** y += alpha · x over the first n elements. */
export function axpy(gpu: Gpu, code: string, x: GpuBuffer, y: GpuBuffer, n: number, alpha = 1): void {
  if (n === 0) return;
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'axpy'),
    bindings: [x, y, gpu.uniform([n, alpha, 0, 0], 'ufuu')],
    workgroups: gpu.grid(Math.ceil(n / WG)),
    label: 'axpy',
  });
}
