import { describe, expect, it } from 'vitest';
import { labelTokens, seededPermutation, ShuffledExamples } from '../../workers/train/batches';
import type { Batch } from '../../workers/model/types';

const collate = (ids: number[]): Batch => ({ inputIds: Int32Array.from(ids), labels: Int32Array.from(ids), attentionMask: new Int32Array(ids.length).fill(1), batch: ids.length, seq: 1 });

describe('seeded shuffling and micro-batches', () => {
  it('a permutation per (seed, epoch), reproducible, different across epochs and seeds', () => {
    const p = seededPermutation(50, 7, 0);
    expect([...p].sort((a, b) => a - b)).toEqual([...Array(50).keys()]);
    expect(seededPermutation(50, 7, 0)).toEqual(p);
    expect(seededPermutation(50, 7, 1)).not.toEqual(p);
    expect(seededPermutation(50, 8, 0)).not.toEqual(p);
  });

  it('cuts an epoch into micro-batches, the last one smaller, every example once', () => {
    const src = new ShuffledExamples({ examples: [...Array(7).keys()], microBatchSize: 3, seed: 1, shuffle: true, collate });
    expect(src.microBatchesPerEpoch).toBe(3);
    const seen = [0, 1, 2].flatMap((i) => [...src.microBatch(2, i).inputIds]);
    expect(src.microBatch(2, 2).batch).toBe(1);
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(seen).toEqual(src.epochOrder(2));
    expect(() => src.microBatch(0, 3)).toThrow(/outside epoch 0/);
  });

  it('without shuffling keeps the file order', () => {
    const src = new ShuffledExamples({ examples: [5, 6, 7], microBatchSize: 2, seed: 1, shuffle: false, collate });
    expect([...src.microBatch(4, 0).inputIds]).toEqual([5, 6]);
  });

  it('counts label tokens after the shift (position 0 never counts)', () => {
    const b: Batch = { inputIds: new Int32Array(8), attentionMask: new Int32Array(8), labels: Int32Array.from([4, -100, 5, 6, 7, 8, -100, -100]), batch: 2, seq: 4 };
    expect(labelTokens(b)).toBe(3); // row 0: 5, 6 (4 is at t = 0); row 1: 8 (7 is at t = 0)
  });
});
