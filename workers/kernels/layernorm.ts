/** LayerNorm forward (keeping mean and 1/std per row) and its input gradient (weights are frozen). */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

/**
 * Threads per row of the one-workgroup-per-row kernels (RMSNorm, LayerNorm): about one per four
 * elements, a power of two from 32 to 256. Wide rows (2048) keep 256; a 128-wide row gets 32, so
 * no thread waits at the reduction's barriers with nothing to add (CPU emulation pays for each).
 */
export function rowWorkgroupSize(cols: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < cols) wg *= 2;
  return wg;
}

export interface LayerNormSpec {
  x: GpuBuffer;
  weight: GpuBuffer;
  bias: GpuBuffer;
  y: GpuBuffer;
  /** [rows, 2]: mean, 1/std. */
  stats: GpuBuffer;
  rows: number;
  cols: number;
  eps: number;
}

export function layerNormForward(gpu: Gpu, code: string, s: LayerNormSpec): void {
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'forward', { WG: rowWorkgroupSize(s.cols) }),
    bindings: [s.x, s.weight, s.bias, s.y, s.stats, gpu.uniform([s.rows, s.cols, s.eps, 0], 'uufu')],
    workgroups: gpu.grid(s.rows),
    label: 'layernorm_fwd',
  });
}

export interface LayerNormBackwardSpec {
  x: GpuBuffer;
  weight: GpuBuffer;
  stats: GpuBuffer;
  dy: GpuBuffer;
  dx: GpuBuffer;
  rows: number;
  cols: number;
  /** Add into dx instead of overwriting it. */
  accumulate?: boolean;
}

export function layerNormBackward(gpu: Gpu, code: string, s: LayerNormBackwardSpec): void {
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward', { WG: rowWorkgroupSize(s.cols) }),
    bindings: [s.x, s.weight, s.stats, s.dy, s.dx, gpu.uniform([s.rows, s.cols, 0, s.accumulate ? 1 : 0], 'uufu')],
    workgroups: gpu.grid(s.rows),
    label: 'layernorm_bwd',
  });
}

type Vec = ArrayLike<number>;

/** CPU reference in float64. */
export function layerNormCpu(x: Vec, w: Vec, b: Vec, rows: number, cols: number, eps: number): { y: Float64Array; stats: Float64Array } {
  const y = new Float64Array(rows * cols);
  const stats = new Float64Array(rows * 2);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let c = 0; c < cols; c++) mean += x[r * cols + c];
    mean /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[r * cols + c] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / cols + eps);
    for (let c = 0; c < cols; c++) y[r * cols + c] = (x[r * cols + c] - mean) * rstd * w[c] + b[c];
    stats[2 * r] = mean;
    stats[2 * r + 1] = rstd;
  }
  return { y, stats };
}

export function layerNormBackwardCpu(x: Vec, w: Vec, dy: Vec, rows: number, cols: number, eps: number): Float64Array {
  const { stats } = layerNormCpu(x, w, new Float64Array(cols), rows, cols, eps);
  const dx = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const [mean, rstd] = [stats[2 * r], stats[2 * r + 1]];
    let sg = 0;
    let sgx = 0;
    for (let c = 0; c < cols; c++) {
      const g = dy[r * cols + c] * w[c];
      sg += g;
      sgx += g * (x[r * cols + c] - mean) * rstd;
    }
    sg /= cols;
    sgx /= cols;
    for (let c = 0; c < cols; c++) {
      const g = dy[r * cols + c] * w[c];
      dx[r * cols + c] = rstd * (g - sg - (x[r * cols + c] - mean) * rstd * sgx);
    }
  }
  return dx;
}
