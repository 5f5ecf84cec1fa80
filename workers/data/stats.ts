/** Token-length statistics and the histogram the page draws. */
import type { Histogram } from './types';

/** Nearest-rank percentile of sorted values (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Equal-width bins from 0 to the longest length (bin width a whole number of tokens). */
export function histogram(lengths: readonly number[], bins = 20): Histogram {
  const max = lengths.reduce((a, b) => Math.max(a, b), 0);
  const width = Math.max(1, Math.ceil((max + 1) / bins));
  const n = Math.max(1, Math.ceil((max + 1) / width));
  const counts = new Array<number>(n).fill(0);
  for (const len of lengths) counts[Math.min(n - 1, Math.floor(len / width))]++;
  const edges = Array.from({ length: n + 1 }, (_, i) => i * width);
  return { edges, counts };
}
