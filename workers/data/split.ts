/** The seeded train/validation split: the same seed and row count give the same split. */
import { seededRandom } from '../util/random';

/** How many rows are held out: the fraction rounded, at least one when there are ≥ 2 rows. */
export function validationCount(rows: number, fraction: number): number {
  if (!(fraction > 0) || rows < 2) return 0;
  return Math.min(rows - 1, Math.max(1, Math.round(rows * fraction)));
}

/** Row indices for training and validation, each in file order. */
export function splitIndices(rows: number, fraction: number, seed: number): { train: number[]; validation: number[] } {
  const order = Array.from({ length: rows }, (_, i) => i);
  const random = seededRandom(seed);
  for (let i = rows - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const held = new Set(order.slice(0, validationCount(rows, fraction)));
  const train: number[] = [];
  const validation: number[] = [];
  for (let i = 0; i < rows; i++) (held.has(i) ? validation : train).push(i);
  return { train, validation };
}
