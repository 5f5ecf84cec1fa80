/**
 * The selecting sampler against the sorting reference (the algorithm decoding used before):
 * the same kept ids and probabilities, and the same token for the same u, over vocabulary
 * sizes, logit scales, ties, -Infinity, temperatures, top-k and top-p, with the prefix guessed
 * from the weights and grown from the smallest one.
 */
import { describe, expect, it } from 'vitest';
import { argmax, checkSamplingOptions, drawToken, sampleToken, sampleTokenBySort, samplingDistribution, samplingDistributionBySort, type SamplingOptions } from '../../workers/model/sampling';
import { seededNormals, seededRandom } from '../../workers/util/random';

function logitsCase(V: number, seed: number, kind: 'normal' | 'ties' | 'masked' | 'peaked', scale: number): Float32Array {
  const x = seededNormals(V, seed, scale);
  if (kind === 'ties') return x.map((v) => Math.round(v));
  if (kind === 'masked') return x.map((v, i) => (i % 3 === 1 ? -Infinity : v));
  if (kind === 'peaked') {
    // Zipf-like: logit −1.1·ln(rank) with the ranks shuffled over the ids, as language models tend to give.
    const r = seededRandom(seed);
    const ranks = Array.from({ length: V }, (_, i) => i + 1).sort(() => r() - 0.5);
    return Float32Array.from(ranks, (k, i) => -1.1 * Math.log(k) + 0.01 * x[i]);
  }
  return x;
}

const relErr = (a: number[], b: number[]) => Math.max(0, ...a.map((v, i) => Math.abs(v - b[i]))) / Math.max(...b.map(Math.abs));

describe('sampling by selection', () => {
  const temperatures = [0.25, 1, 4];
  const topKs = [undefined, 0, 1, 3];
  const topPs = [undefined, 0.97, 0.5, 0.05, 0];

  it('draws the reference token for the same u, over many vocabularies, distributions and options', () => {
    let draws = 0;
    let notArgmax = 0;
    for (const V of [1, 2, 5, 203, 1000]) {
      for (const kind of ['normal', 'ties', 'masked', 'peaked'] as const) {
        for (const scale of [0.5, 3, 12]) {
          const logits = logitsCase(V, V * 7 + scale, kind, scale);
          if (kind === 'masked' && V === 2) logits[0] = 1; // not every logit -Infinity
          const us = seededRandom(V + scale);
          for (const temperature of temperatures) {
            for (const topK of [...topKs, V - 1, V + 3]) {
              for (const topP of topPs) {
                const o: SamplingOptions = { temperature, topK: topK && topK < 0 ? 0 : topK, topP };
                for (const u of [us(), us(), temperature === 1 ? 0 : 0.999999]) {
                  const want = sampleTokenBySort(logits, o, () => u);
                  expect(drawToken(logits, o, u), JSON.stringify({ V, kind, scale, o, u })).toBe(want);
                  expect(drawToken(logits, o, u, false), JSON.stringify({ V, kind, scale, o, u, grown: true })).toBe(want);
                  draws++;
                  if (want !== argmax(logits)) notArgmax++;
                }
              }
            }
          }
        }
      }
    }
    expect(draws).toBe(5 * 4 * 3 * temperatures.length * (topKs.length + 2) * topPs.length * 3);
    // Many draws are not simply the argmax: the cases exercise the walk, not just the first id.
    expect(notArgmax).toBeGreaterThan(draws / 8);
  }, 120_000);

  it('keeps the reference ids with the reference probabilities (bit-equal when the sorted prefix is every kept id)', () => {
    for (const V of [5, 203, 5003]) {
      for (const kind of ['normal', 'ties', 'peaked'] as const) {
        const logits = logitsCase(V, V + 1, kind, 3);
        for (const temperature of [undefined, 0.5, 1.5]) {
          for (const topK of [undefined, 4, 60]) {
            for (const topP of [undefined, 0.9, 0.3]) {
              const o = { temperature, topK, topP };
              const got = samplingDistribution(logits, o);
              const want = samplingDistributionBySort(logits, o);
              expect(got.ids, JSON.stringify({ V, kind, o })).toEqual(want.ids);
              if ((topK && topK < V) || topP === undefined) expect(got.probs).toEqual(want.probs);
              else expect(relErr(got.probs, want.probs)).toBeLessThan(1e-13);
            }
          }
        }
      }
    }
  });

  it('a 51200-word vocabulary: the same tokens as the reference from one seeded stream', () => {
    for (const kind of ['normal', 'peaked'] as const) {
      const logits = logitsCase(51200, 9, kind, 2.5);
      for (const o of [{ temperature: 1 }, { temperature: 0.7, topP: 0.9 }, { temperature: 1.2, topK: 50, topP: 0.95 }]) {
        const a = seededRandom(5);
        const b = seededRandom(5);
        for (let i = 0; i < 6; i++) expect(sampleToken(logits, o, a)).toBe(sampleTokenBySort(logits, o, b));
        // Exactly one random number per token, as the reference uses.
        expect(a()).toBe(b());
      }
    }
  });

  it('greedy settings take the argmax without drawing', () => {
    const logits = Float32Array.of(1, 3, 2, 3);
    const never = () => {
      throw new Error('drew');
    };
    for (const temperature of [undefined, 0, -1]) expect(sampleToken(logits, { temperature, topK: 2 }, never)).toBe(1);
    expect(argmax(Float32Array.of(1, NaN, 5, NaN))).toBe(1);
  });

  it('rejects logits and options no distribution can be made of, naming them', () => {
    const o = { temperature: 1 };
    expect(() => drawToken(Float32Array.of(1, NaN, 2), o, 0.5)).toThrow(/logit 1 is NaN/);
    expect(() => drawToken(Float32Array.of(1, 2, Infinity), o, 0.5)).toThrow(/logit 2 is \+Infinity/);
    expect(() => drawToken(Float32Array.of(-Infinity, -Infinity), o, 0.5)).toThrow(/every logit is -Infinity/);
    expect(() => drawToken(new Float32Array(0), o, 0.5)).toThrow(/empty/);
    expect(() => checkSamplingOptions({ temperature: 1, topK: 2.5 })).toThrow(/topK 2.5/);
    expect(() => checkSamplingOptions({ temperature: NaN, topP: NaN })).toThrow(/topP is NaN/);
    expect(() => samplingDistribution(Float32Array.of(1, 2), { temperature: 0 })).toThrow(/temperature 0/);
    expect(() => checkSamplingOptions({ temperature: 0.8, topK: 0, topP: 0.9 })).not.toThrow();
  });
});
