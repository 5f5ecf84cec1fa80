import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Sha256 } from '../../workers/util/sha256';
import { seededNormals } from '../../workers/util/random';

/** Deterministic pseudo-random bytes. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const nodeHex = (d: Uint8Array) => createHash('sha256').update(d).digest('hex');

describe('incremental sha256', () => {
  it('matches node:crypto on awkward sizes, fed in random pieces', () => {
    const sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 4097, 65_537];
    let seed = 1;
    for (const n of sizes) {
      const data = bytes(n, seed++);
      expect(new Sha256().update(data).hex(), `size ${n} whole`).toBe(nodeHex(data));
      const cuts = seededNormals(4, seed++, 1).map((v) => Math.floor(Math.abs(v) * n) % (n + 1)).sort((a, b) => a - b);
      const h = new Sha256();
      let prev = 0;
      for (const c of [...cuts, n]) {
        h.update(data.subarray(prev, c));
        prev = c;
      }
      expect(h.hex(), `size ${n} in pieces at ${cuts}`).toBe(nodeHex(data));
    }
  });

  it('a saved state restored (as IndexedDB would clone it) goes on to the same digest', () => {
    const data = bytes(10_000, 42);
    for (const cut of [0, 1, 63, 64, 3333, 9999]) {
      const first = new Sha256().update(data.subarray(0, cut));
      const restored = new Sha256(structuredClone(first.save())).update(data.subarray(cut));
      expect(restored.hex(), `cut at ${cut}`).toBe(nodeHex(data));
    }
    // hex() does not finish the hash: more bytes may follow.
    const h = new Sha256().update(data.subarray(0, 100));
    h.hex();
    expect(h.update(data.subarray(100)).hex()).toBe(nodeHex(data));
  });

  it('refuses an inconsistent saved state', () => {
    expect(() => new Sha256({ h: [1, 2, 3], length: 0, pending: new Uint8Array(0) })).toThrow(/8 words/);
    expect(() => new Sha256({ h: new Array(8).fill(0), length: 70, pending: new Uint8Array(2) })).toThrow(/inconsistent/);
  });
});
