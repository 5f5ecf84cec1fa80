/**
 * Rotary position embedding (half-split / GPT-NeoX layout, partial or full), in place.
 * The cos/sin tables are built on the CPU the way transformers builds them in float32
 * (inv_freq = 1 / theta^(2i/d), optionally rescaled by `rope_scaling`, angle = position · inv_freq,
 * each step rounded to f32), so large positions do not depend on the GPU's sin/cos accuracy.
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

/**
 * A config's `rope_scaling` (transformers' `modeling_rope_utils`): 'linear' divides every
 * frequency by `factor` (the same as dividing the positions by it); 'llama3' (Llama 3.1 / 3.2)
 * divides the low frequencies (wavelength above originalMaxPositionEmbeddings / lowFreqFactor)
 * by `factor`, keeps the high ones (wavelength below originalMaxPositionEmbeddings /
 * highFreqFactor) and blends in between. Both leave the attention scaling at 1.
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

function checkScaling(s: RopeScaling): void {
  const positive = (name: string, v: number) => {
    if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`rope_scaling (${s.type}): ${name} = ${v} is not a positive number`);
  };
  positive('factor', s.factor);
  if (s.type === 'linear') return;
  if (s.type !== 'llama3') throw new RangeError(`rope_scaling: type ${JSON.stringify((s as { type: unknown }).type)} is not one of linear, llama3`);
  positive('low_freq_factor', s.lowFreqFactor);
  positive('high_freq_factor', s.highFreqFactor);
  positive('original_max_position_embeddings', s.originalMaxPositionEmbeddings);
  if (!(s.highFreqFactor > s.lowFreqFactor)) throw new RangeError(`rope_scaling (llama3): high_freq_factor ${s.highFreqFactor} is not above low_freq_factor ${s.lowFreqFactor}`);
}

/**
 * inv_freq [rotDim / 2] in float32, step by step as transformers 4.44 computes it on the CPU
 * (bit-exact there: `2π / inv_freq` is torch's reciprocal-then-multiply, and the llama3 blend is
 * `(1 − s) · f / factor + s · f` with s = (original / wavelength − low) / (high − low)).
 */
export function rotaryInvFreq(rotDim: number, theta: number, scaling?: RopeScaling | null): Float32Array {
  // rotDim 0 (no rotary features) gives empty tables, as it always has.
  if (!Number.isInteger(rotDim) || rotDim < 0 || rotDim % 2) throw new RangeError(`rotary: rotDim = ${rotDim} is not a non-negative even integer`);
  if (!(theta > 0) || !Number.isFinite(theta)) throw new RangeError(`rotary: rope_theta = ${theta} is not a positive number`);
  if (scaling) checkScaling(scaling);
  const half = rotDim / 2;
  const f = Math.fround;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = f(1 / f(Math.pow(theta, f((2 * i) / rotDim))));
  if (scaling?.type === 'linear') {
    for (let i = 0; i < half; i++) invFreq[i] = f(invFreq[i] / scaling.factor);
  } else if (scaling?.type === 'llama3') {
    const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: original } = scaling;
    const lowFreqWavelen = f(original / low);
    const highFreqWavelen = f(original / high);
    const twoPi = f(2 * Math.PI);
    for (let i = 0; i < half; i++) {
      const freq = invFreq[i];
      const wavelen = f(f(1 / freq) * twoPi);
      if (wavelen > lowFreqWavelen) invFreq[i] = f(freq / factor);
      else if (!(wavelen < highFreqWavelen)) {
        const smooth = f(f(f(f(1 / wavelen) * original) - low) / f(high - low));
        invFreq[i] = f(f(f(f(1 - smooth) * freq) / factor) + f(smooth * freq));
      }
    }
  }
  return invFreq;
}

/** `scaling`: the config's rope_scaling (omitted or null: plain frequencies). */
export function rotaryTables(rotDim: number, theta: number, positions: number, scaling?: RopeScaling | null): RotaryTables {
  const half = rotDim / 2;
  const f = Math.fround;
  const invFreq = rotaryInvFreq(rotDim, theta, scaling);
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
