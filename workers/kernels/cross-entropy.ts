/**
 * Cross-entropy over the vocabulary, one chunk of rows at a time, so the caller can run
 * lm_head → loss → gradient per chunk and never hold seq × vocab logits for a big vocabulary.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export const IGNORE_INDEX = -100;

/**
 * HF's shift-by-one: the target of position t is labels[t + 1] within the same row; the last
 * position of each row has none. Returns [batch · seq] targets (-100 = ignored) and their count.
 */
export function shiftLabels(labels: Int32Array, batch: number, seq: number): { targets: Int32Array; count: number } {
  const targets = new Int32Array(batch * seq).fill(IGNORE_INDEX);
  let count = 0;
  for (let b = 0; b < batch; b++)
    for (let t = 0; t + 1 < seq; t++) {
      const label = labels[b * seq + t + 1];
      if (label !== IGNORE_INDEX) {
        targets[b * seq + t] = label;
        count++;
      }
    }
  return { targets, count };
}

export interface CrossEntropySpec {
  /** [rows, vocab] logits of this chunk; overwritten by gradScale · dloss/dlogits when backward. */
  logits: GpuBuffer;
  /** All targets (i32, < 0 = ignored); this chunk reads targets[rowStart ..]. */
  targets: GpuBuffer;
  /** Per-row losses, written at [rowStart ..]. */
  loss: GpuBuffer;
  rows: number;
  vocab: number;
  rowStart: number;
  backward: boolean;
  gradScale?: number;
}

export function crossEntropy(gpu: Gpu, code: string, s: CrossEntropySpec): void {
  gpu.dispatch({
    pipeline: gpu.pipeline(code),
    bindings: [s.logits, s.targets, s.loss, gpu.uniform([s.rows, s.vocab, s.rowStart, s.backward ? 1 : 0, s.gradScale ?? 1, 0, 0, 0], 'uuuufuuu')],
    workgroups: gpu.grid(s.rows),
    label: 'cross_entropy',
  });
}

/** CPU reference in float64: per-row losses and gradScale · dloss/dlogits. */
export function crossEntropyCpu(logits: ArrayLike<number>, targets: ArrayLike<number>, rows: number, vocab: number, gradScale = 1): { loss: Float64Array; dlogits: Float64Array } {
  const loss = new Float64Array(rows);
  const dlogits = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t < 0) continue;
    let m = -Infinity;
    for (let c = 0; c < vocab; c++) m = Math.max(m, logits[r * vocab + c]);
    let s = 0;
    for (let c = 0; c < vocab; c++) s += Math.exp(logits[r * vocab + c] - m);
    const lse = m + Math.log(s);
    loss[r] = lse - logits[r * vocab + t];
    for (let c = 0; c < vocab; c++) dlogits[r * vocab + c] = gradScale * (Math.exp(logits[r * vocab + c] - lse) - (c === t ? 1 : 0));
  }
  return { loss, dlogits };
}
