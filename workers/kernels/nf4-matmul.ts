/**
 * Linear layers with a frozen NF4 weight W [N, K] = [out, in], dequantised inside the matmul:
 *
 *   nf4LinearForward(gpu, shaders, { x, weight, bias?, y, M, accumulate? }) y (+)= x·Wᵀ (+ bias) [M, N]
 *   nf4LinearBackwardData(gpu, shaders, { dy, weight, dx, M, accumulate }) dx (+)= dy·W      [M, K]
 *
 * `shaders`: the registry's `nf4` and `nf4Matmul` entries (workers/kernels/shader-sources.ts).
 * Forward uses a matrix-vector kernel for M ≤ 4 (decoding: several output columns per workgroup,
 * 32 codes per thread and step) and a tiled kernel otherwise: 64 output columns by 16, 32, 64 or
 * 128 rows of M per workgroup (1, 2, 4 or 8 × 4 outputs per thread), by M and by the device's
 * workgroup memory.
 * A weight split into parts (see workers/nf4/gpu.ts) runs one dispatch per part; backward
 * accumulates the parts. The frozen base needs no weight gradient.
 * Activations (x, y, dy, dx) are bound whole: at M = 512 and 18176 features they take 37 MB,
 * far below any binding limit.
 * `nf4LinearCpu` is the CPU reference (dequantise, then float64 dot products).
 */
import { isEmulated } from '../gpu/device';
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import type { Nf4GpuWeight, Nf4Shaders } from '../nf4/gpu';
import { dequantizeNF4, type Nf4Quantized } from '../nf4/reference';

export interface Nf4LinearForwardSpec {
  /** [M, K] f32 */
  x: GpuBuffer;
  weight: Nf4GpuWeight;
  /** [N] f32 */
  bias?: GpuBuffer;
  /** [M, N] f32: overwritten, or added to with `accumulate`. */
  y: GpuBuffer;
  M: number;
  /** true: y += x·Wᵀ (+ bias); false (default): y = x·Wᵀ (+ bias). */
  accumulate?: boolean;
  /** Force the tiled kernel even for M ≤ 4 (tests, benchmarks). */
  tiledOnly?: boolean;
  /** Output columns per gemv workgroup (8 to 64) instead of the adapter's choice (tests). */
  gemvColumns?: number;
  /** Rows of M per thread of the tiled kernel (1, 2, 4, 8) instead of the choice by M (tests, benchmarks). */
  tileRows?: TileRows;
}

export interface Nf4LinearBackwardSpec {
  /** [M, N] f32 */
  dy: GpuBuffer;
  weight: Nf4GpuWeight;
  /** [M, K] f32 */
  dx: GpuBuffer;
  M: number;
  /** true: dx += dy·W; false: dx = dy·W. */
  accumulate: boolean;
  /** As in Nf4LinearForwardSpec. */
  tileRows?: TileRows;
}

export type TileRows = 1 | 2 | 4 | 8;

const TILE = 64;
export const GEMV_MAX_M = 4;
/**
 * Output columns per gemv workgroup of 256 threads. A GPU gets 8 (32 threads per column: a
 * column's 16-byte code groups are read 512 bytes at a time, and N/8 workgroups keep many in
 * flight); SwiftShader pays per invocation, so 64 columns of 4 threads each run fastest there
 * (measured at M = 1: 1.5–2.5× faster than 32 columns on 128×128 to 2048×2048 weights).
 */
function gemvRows(gpu: Gpu): number {
  return isEmulated(gpu.adapter) ? 64 : 8;
}

/** Workgroup memory of a tiled kernel: the X / dY tile (32 × (16·rows + 1) floats), the W tile (32 × 65) and the NF4 table. */
export function tiledWorkgroupBytes(rows: TileRows): number {
  return 4 * (32 * (16 * rows + 1) + 32 * 65 + 16);
}

/**
 * Output rows per thread of the tiled kernels (a workgroup covers 16·this rows of M). Each thread
 * decodes its W values once for all its rows, so taller tiles decode less, but a tile past M computes
 * rows nobody reads: the choice weighs both, as cost ∝ rows computed × (1 + 1/rows per thread),
 * the taller tile on a tie. Powers of two get the tile that covers them exactly (M ≥ 128: 8 rows, each
 * decoded W tile serving 128 rows); M = 150 (a 150-token example) gets 4 (192 rows computed, not
 * 256). Only tiles that fit the device's workgroup memory count; WebGPU's 16 KiB default allows 2.
 */
export function rowsPerThread(M: number, workgroupBytes: number, forced?: TileRows): TileRows {
  if (forced) {
    if (tiledWorkgroupBytes(forced) > workgroupBytes) throw new RangeError(`nf4 tiled kernel: ${forced} rows per thread need ${tiledWorkgroupBytes(forced)} bytes of workgroup memory, the device has ${workgroupBytes}`);
    return forced;
  }
  let best: TileRows = 1;
  let bestCost = Infinity;
  for (const rows of [1, 2, 4, 8] as TileRows[]) {
    if (tiledWorkgroupBytes(rows) > workgroupBytes) break;
    const cost = Math.ceil(M / (16 * rows)) * 16 * (rows + 1);
    if (cost <= bestCost) [best, bestCost] = [rows, cost];
  }
  return best;
}

function params(w: Nf4GpuWeight, M: number, part: Nf4GpuWeight['parts'][number], beta: number): number[] {
  return [M, w.rows, w.cols, part.rowStart, part.rowEnd, part.elemBase, w.offset, beta];
}

export function nf4LinearForward(gpu: Gpu, shaders: Nf4Shaders, s: Nf4LinearForwardSpec): void {
  const w = s.weight;
  if (!Number.isInteger(s.M) || s.M <= 0) throw new RangeError(`nf4LinearForward: M = ${s.M} must be a positive integer`);
  const gemv = s.M <= GEMV_MAX_M && !s.tiledOnly;
  const constants: Record<string, number> = { DOUBLE_QUANT: w.doubleQuant ? 1 : 0, HAS_BIAS: s.bias ? 1 : 0 };
  const gemvCols = s.gemvColumns ?? gemvRows(gpu);
  if (gemv) Object.assign(constants, { GEMV_M: s.M, GEMV_ROWS: gemvCols });
  else constants.TM_ROWS = rowsPerThread(s.M, gpu.limits.maxComputeWorkgroupStorageSize, s.tileRows);
  const pipeline = gpu.pipeline(shaders.nf4Matmul, gemv ? 'gemv' : 'forward', constants);
  for (const part of w.parts) {
    const rows = part.rowEnd - part.rowStart;
    gpu.dispatch({
      pipeline,
      bindings: [s.x, part.packed, w.absmax, w.nested, w.tables, s.y, gpu.uniform(params(w, s.M, part, s.accumulate ? 1 : 0), 'uuuuuuff'), s.bias ?? gpu.dummy],
      workgroups: gemv ? gpu.grid(Math.ceil(rows / gemvCols)) : [Math.ceil(rows / TILE), Math.ceil(s.M / (16 * constants.TM_ROWS))],
      label: gemv ? 'nf4-gemv' : 'nf4-forward',
    });
  }
}

export function nf4LinearBackwardData(gpu: Gpu, shaders: Nf4Shaders, s: Nf4LinearBackwardSpec): void {
  const w = s.weight;
  if (!Number.isInteger(s.M) || s.M <= 0) throw new RangeError(`nf4LinearBackwardData: M = ${s.M} must be a positive integer`);
  const tm = rowsPerThread(s.M, gpu.limits.maxComputeWorkgroupStorageSize, s.tileRows);
  const pipeline = gpu.pipeline(shaders.nf4Matmul, 'backward', { DOUBLE_QUANT: w.doubleQuant ? 1 : 0, TM_ROWS: tm });
  w.parts.forEach((part, i) => {
    const beta = s.accumulate || i > 0 ? 1 : 0;
    gpu.dispatch({
      pipeline,
      bindings: [s.dy, part.packed, w.absmax, w.nested, w.tables, s.dx, gpu.uniform(params(w, s.M, part, beta), 'uuuuuuff')],
      workgroups: [Math.ceil(w.cols / TILE), Math.ceil(s.M / (16 * tm))],
      label: 'nf4-backward',
    });
  });
}

/**
 * The NF4 linear's one CPU reference: y = x·dequant(W)ᵀ (+ bias) and dx = dy·dequant(W),
 * float64 accumulation (also what nf4-check compares bitsandbytes' Linear4bit outputs with).
 */
export function nf4LinearCpu(q: Nf4Quantized) {
  const [N, K] = [q.shape[0], q.shape[q.shape.length - 1]];
  const w = dequantizeNF4(q);
  const checkLength = (name: string, got: Float32Array, M: number, cols: number) => {
    if (got.length !== M * cols) throw new RangeError(`nf4LinearCpu: ${name} has ${got.length} elements, expected ${M}×${cols}`);
  };
  return {
    forward(x: Float32Array, M: number, bias?: Float32Array): Float32Array {
      checkLength('x', x, M, K);
      const y = new Float32Array(M * N);
      for (let m = 0; m < M; m++) {
        for (let j = 0; j < N; j++) {
          let acc = bias ? bias[j] : 0;
          for (let k = 0; k < K; k++) acc += x[m * K + k] * w[j * K + k];
          y[m * N + j] = acc;
        }
      }
      return y;
    },
    backward(dy: Float32Array, M: number): Float32Array {
      checkLength('dy', dy, M, N);
      const dx = new Float64Array(M * K);
      for (let m = 0; m < M; m++) {
        for (let j = 0; j < N; j++) {
          const g = dy[m * N + j];
          if (g === 0) continue;
          for (let k = 0; k < K; k++) dx[m * K + k] += g * w[j * K + k];
        }
      }
      return Float32Array.from(dx);
    },
  };
}
