/**
 * Rotary position embedding (half-split / GPT-NeoX layout, partial or full), in place.
 * The cos/sin tables are built on the CPU the way transformers builds them in float32
 * (inv_freq = 1 / theta^(2i/d), angle = position · inv_freq, each step rounded to f32), so
 * large positions do not depend on the GPU's sin/cos accuracy.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export interface RotaryTables {
  /** [positions, rotDim / 2] each. */
  cos: Float32Array;
  sin: Float32Array;
  rotDim: number;
  positions: number;
}

export function rotaryTables(rotDim: number, theta: number, positions: number): RotaryTables {
  const half = rotDim / 2;
  const f = Math.fround;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = f(1 / f(Math.pow(theta, f((2 * i) / rotDim))));
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(p * invFreq[i]);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin, rotDim, positions };
}

export interface RotarySpec {
  x: GpuBuffer;
  cos: GpuBuffer;
  sin: GpuBuffer;
  /** Token rows (batch · seq); row r has position posOffset + r % seq. */
  rows: number;
  seq: number;
  heads: number;
  headDim: number;
  rotDim: number;
  /** Floats per row and the first head's offset inside a row. */
  stride: number;
  off?: number;
  posOffset?: number;
  /** true applies the transpose rotation (the gradient). */
  backward?: boolean;
}

export function rotary(gpu: Gpu, code: string, s: RotarySpec): void {
  const n = s.rows * s.heads * (s.rotDim / 2);
  if (n === 0) return;
  gpu.dispatch({
    pipeline: gpu.pipeline(code),
    bindings: [
      s.x,
      s.cos,
      s.sin,
      gpu.uniform([s.rows, s.seq, s.heads, s.headDim, s.rotDim, s.stride, s.off ?? 0, s.posOffset ?? 0, s.backward ? -1 : 1, 0, 0, 0], 'uuuuuuuufuuu'),
    ],
    workgroups: gpu.grid(Math.ceil(n / 256)),
    label: s.backward ? 'rotary_bwd' : 'rotary_fwd',
  });
}

/** CPU reference, in place on `x` (float64 or float32). */
export function rotaryCpu(x: Float32Array | Float64Array, t: RotaryTables, s: Omit<RotarySpec, 'x' | 'cos' | 'sin'>): void {
  const half = s.rotDim / 2;
  const sign = s.backward ? -1 : 1;
  for (let r = 0; r < s.rows; r++) {
    const pos = (s.posOffset ?? 0) + (r % s.seq);
    for (let h = 0; h < s.heads; h++) {
      const base = r * s.stride + (s.off ?? 0) + h * s.headDim;
      for (let i = 0; i < half; i++) {
        const c = t.cos[pos * half + i];
        const sn = sign * t.sin[pos * half + i];
        const x1 = x[base + i];
        const x2 = x[base + i + half];
        x[base + i] = x1 * c - x2 * sn;
        x[base + i + half] = x2 * c + x1 * sn;
      }
    }
  }
}
