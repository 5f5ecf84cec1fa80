import { describe, expect, it } from 'vitest';
import { randomNf4 } from '../../workers/model/random-weights';
import { dequantizeNF4 } from '../../workers/nf4/reference';

describe('randomNf4', () => {
  it('gives every code, block scales in [0.04, 0.09] and the same state for the same seed', () => {
    const shape = [37, 130];
    const q = randomNf4(shape, 5);
    expect(q.packed.length).toBe((37 * 130 + 1) >> 1);
    const codes = new Set<number>();
    for (const b of q.packed) codes.add(b >> 4).add(b & 15);
    expect(codes.size).toBe(16);
    const w = dequantizeNF4(q);
    const max = w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(max).toBeGreaterThan(0.04);
    expect(max).toBeLessThan(0.0901);
    expect(Array.from(randomNf4(shape, 5).packed)).toEqual(Array.from(q.packed));
    expect(Array.from(randomNf4(shape, 6).packed)).not.toEqual(Array.from(q.packed));
  });
});
