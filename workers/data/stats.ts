/** Token-length statistics and the histogram the page draws. */
import type { Histogram } from './types';

/** Nearest-rank percentile of sorted values (p in 0..100). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Equal-width bins (a whole number of tokens wide) from the shortest to the longest length. */
export function histogram(lengths: ArrayLike<number>, bins = 20): Histogram {
  if (lengths.length === 0) return { edges: [0, 1], counts: [0] };
  let min = Infinity;
  let max = 0;
  for (let i = 0; i < lengths.length; i++) {
    min = Math.min(min, lengths[i]);
    max = Math.max(max, lengths[i]);
  }
  const width = Math.max(1, Math.ceil((max - min + 1) / bins));
  const n = Math.ceil((max - min + 1) / width);
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < lengths.length; i++) counts[Math.floor((lengths[i] - min) / width)]++;
  const edges = Array.from({ length: n + 1 }, (_, i) => min + i * width);
  return { edges, counts };
}
