import { describe, expect, it } from 'vitest';
import { dequantizeNF4, quantizeNF4, unpackCodes } from '../../workers/nf4/reference';
import { LoadedWeightSource } from '../../workers/load/weight-source';
import { seededNormal } from '../mock-hub/tiny-model';

describe('LoadedWeightSource (a cached NF4 model for an engine that quantizes what it reads)', () => {
  it('readNf4 returns the stored state; readF32 dequantizes it, and requantizing keeps every 4-bit code', async () => {
    const shape = [96, 200];
    const values = seededNormal(96 * 200, 3, 0.02);
    const q = quantizeNF4(values, shape, { doubleQuant: true });
    const source = new LoadedWeightSource(new Map([['w', { kind: 'nf4', name: 'w', dtype: 'float16', quant: q }]]), 'cache');
    expect(await source.readNf4('w')).toBe(q);
    expect(source.info('w')).toEqual({ dtype: 'F16', shape });
    const deq = await source.readF32('w');
    expect(Array.from(deq)).toEqual(Array.from(dequantizeNF4(q)));
    const again = quantizeNF4(deq, shape, { doubleQuant: true });
    expect(Array.from(unpackCodes(again.packed, deq.length))).toEqual(Array.from(unpackCodes(q.packed, deq.length)));
    // The block scales are double-quantized a second time: close, not bit-identical.
    const twice = dequantizeNF4(again);
    let worst = 0;
    let ref = 0;
    for (let i = 0; i < deq.length; i++) {
      worst = Math.max(worst, Math.abs(twice[i] - deq[i]));
      ref = Math.max(ref, Math.abs(deq[i]));
    }
    console.info(`requantized cached weight: max |diff| / max |w| = ${(worst / ref).toExponential(2)}`);
    expect(worst / ref).toBeLessThan(1e-4);
  });
});
