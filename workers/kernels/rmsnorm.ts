/**
 * RMSNorm (Llama, Qwen2, Phi-3) forward, keeping 1/rms per row, and its input gradient (the norm
 * weights are frozen). y = w · (x · rsqrt(mean(x²) + eps)): eps inside the square root, the weight
 * applied after normalising, as transformers' LlamaRMSNorm computes it in float32.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { rowWorkgroupSize } from './layernorm';
import { requirePositiveIntegers } from '../util/dims';

export interface RmsNormSpec {
  /** [rows, cols]. */
  x: GpuBuffer;
  /** [cols]. */
  weight: GpuBuffer;
  /** [rows, cols]; may not be x (a read-write binding may not alias a read one). */
  y: GpuBuffer;
  /** [rows]: 1 / sqrt(mean(x²) + eps), for the backward pass. */
  stats: GpuBuffer;
  rows: number;
  cols: number;
  eps: number;
}

export interface RmsNormBackwardSpec {
  x: GpuBuffer;
  weight: GpuBuffer;
  /** What rmsNormForward wrote for this x. */
  stats: GpuBuffer;
  dy: GpuBuffer;
  dx: GpuBuffer;
  rows: number;
  cols: number;
  /** Add into dx instead of overwriting it (the residual stream's gradient is already there). */
  accumulate?: boolean;
}

function check(kind: string, s: { rows: number; cols: number }, eps = 0): void {
  requirePositiveIntegers(kind, { rows: s.rows, cols: s.cols });
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`${kind}: eps = ${eps} is not a finite non-negative number`);
}

export function rmsNormForward(gpu: Gpu, code: string, s: RmsNormSpec): void {
  check('rmsNormForward', s, s.eps);
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'forward', { WG: rowWorkgroupSize(s.cols) }),
    bindings: [s.x, s.weight, s.y, s.stats, gpu.uniform([s.rows, s.cols, s.eps, 0], 'uufu')],
    workgroups: gpu.grid(s.rows),
    label: 'rmsnorm_fwd',
  });
}

export function rmsNormBackward(gpu: Gpu, code: string, s: RmsNormBackwardSpec): void {
  check('rmsNormBackward', s);
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward', { WG: rowWorkgroupSize(s.cols) }),
    bindings: [s.x, s.weight, s.stats, s.dy, s.dx, gpu.uniform([s.rows, s.cols, 0, s.accumulate ? 1 : 0], 'uufu')],
    workgroups: gpu.grid(s.rows),
    label: 'rmsnorm_bwd',
  });
}

type Vec = ArrayLike<number>;

/** CPU reference in float64: y [rows, cols] and stats [rows] (1/rms). */
export function rmsNormCpu(x: Vec, w: Vec, rows: number, cols: number, eps: number): { y: Float64Array; stats: Float64Array } {
  const y = new Float64Array(rows * cols);
  const stats = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[r * cols + c] ** 2;
    const rstd = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) y[r * cols + c] = w[c] * (x[r * cols + c] * rstd);
    stats[r] = rstd;
  }
  return { y, stats };
}

/** CPU reference input gradient in float64: dx = rstd · (g − x̂ · mean(g · x̂)), g = dy · w, x̂ = x · rstd. */
export function rmsNormBackwardCpu(x: Vec, w: Vec, dy: Vec, rows: number, cols: number, eps: number): Float64Array {
  const { stats } = rmsNormCpu(x, w, rows, cols, eps);
  const dx = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const rstd = stats[r];
    let sgx = 0;
    for (let c = 0; c < cols; c++) sgx += dy[r * cols + c] * w[c] * x[r * cols + c] * rstd;
    const mgx = sgx / cols;
    for (let c = 0; c < cols; c++) dx[r * cols + c] = rstd * (dy[r * cols + c] * w[c] - x[r * cols + c] * rstd * mgx);
  }
  return dx;
}
