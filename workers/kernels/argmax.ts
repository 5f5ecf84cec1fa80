/**
 * Argmax over rows of logits on the GPU, so greedy decoding reads back a token id instead of a
 * whole vocabulary of logits, and can write that id straight into the next step's input.
 * Semantics (shared with the CPU reference): the first index on ties, NaN larger than every
 * number (the first NaN wins, as torch.argmax does), -0 equal to +0.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export interface ArgmaxSpec {
  /** [rows, vocab] f32 logits starting at element `logitsOffset`. */
  logits: GpuBuffer;
  /** u32 (read as i32 by the embedding gather) indices, written at [outOffset, outOffset + rows). */
  out: GpuBuffer;
  rows: number;
  vocab: number;
  logitsOffset?: number;
  outOffset?: number;
}

export function argmax(gpu: Gpu, code: string, s: ArgmaxSpec): void {
  if (!Number.isInteger(s.vocab) || s.vocab <= 0) throw new RangeError(`argmax: vocabulary size ${s.vocab} must be a positive integer`);
  if (!Number.isInteger(s.rows) || s.rows <= 0) throw new RangeError(`argmax: row count ${s.rows} must be a positive integer`);
  gpu.dispatch({
    pipeline: gpu.pipeline(code),
    bindings: [s.logits, s.out, gpu.uniform([s.rows, s.vocab, s.logitsOffset ?? 0, s.outOffset ?? 0])],
    workgroups: gpu.grid(s.rows),
    label: 'argmax',
  });
}

/** Index of the largest value: the first on ties, the first NaN if there is one. */
export function argmaxRow(values: ArrayLike<number>, start = 0, length = values.length - start): number {
  let best = 0;
  for (let i = 0; i < length; i++) {
    const v = values[start + i];
    if (Number.isNaN(v)) return i;
    if (v > values[start + best]) best = i;
  }
  return best;
}

/** CPU reference of `argmax` over [rows, vocab] values. */
export function argmaxCpu(values: ArrayLike<number>, rows: number, vocab: number): Int32Array {
  return Int32Array.from({ length: rows }, (_, r) => argmaxRow(values, r * vocab, vocab));
}
