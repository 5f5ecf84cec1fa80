/** GELU activations: gelu_new (tanh approximation, phi) and exact erf GELU (falcon), with gradients. */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export type GeluKind = 'gelu_new' | 'gelu';
const MODE: Record<GeluKind, number> = { gelu_new: 0, gelu: 1 };

/** y = gelu(x) over n elements. */
export function geluForward(gpu: Gpu, code: string, kind: GeluKind, x: GpuBuffer, y: GpuBuffer, n: number): void {
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'forward'),
    bindings: [x, y, gpu.uniform([n, MODE[kind], 0, 0])],
    workgroups: gpu.grid(Math.ceil(n / 256)),
    label: 'gelu_fwd',
  });
}

/** dy ← dy · gelu'(x), in place; x is the pre-activation. */
export function geluBackward(gpu: Gpu, code: string, kind: GeluKind, x: GpuBuffer, dy: GpuBuffer, n: number): void {
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward'),
    bindings: [x, dy, gpu.uniform([n, MODE[kind], 0, 0])],
    workgroups: gpu.grid(Math.ceil(n / 256)),
    label: 'gelu_bwd',
  });
}

/** erf to double precision (Abramowitz & Stegun 7.1.28 is too coarse; this uses the series / continued fraction). */
export function erf(x: number): number {
  const z = Math.abs(x);
  let r: number;
  if (z < 2.5) {
    // Maclaurin series: erf(z) = 2/sqrt(pi) · Σ (-1)^n z^(2n+1) / (n! (2n+1)).
    let term = z;
    let sum = z;
    for (let n = 1; n < 80; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // Continued fraction for erfc (Lentz), converges fast for z ≥ 2.5.
    let f = z;
    let c = z;
    let d = 0;
    for (let n = 1; n < 200; n++) {
      const a = n / 2;
      d = z + a * d;
      c = z + a / c;
      d = 1 / d;
      const delta = c * d;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    r = 1 - Math.exp(-z * z) / (f * Math.sqrt(Math.PI));
  }
  return x < 0 ? -r : r;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export function geluCpu(kind: GeluKind, x: number): number {
  if (kind === 'gelu_new') return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)));
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export function geluGradCpu(kind: GeluKind, x: number): number {
  if (kind === 'gelu_new') {
    const t = Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
  }
  return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}
