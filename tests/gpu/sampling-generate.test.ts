/**
 * Decoding through CausalLM.generate on tiny random models of both families. Greedy decoding
 * takes its argmax on the GPU and reads back only token ids, one step recorded ahead; the
 * tokens must be those the CPU argmax picks from each step's logits (what decoding did before),
 * with and without EOS in the middle. Sampling must draw what the sorting reference draws from
 * the same logits with the same seed.
 */
import { describe, expect, it, vi } from 'vitest';
import type { Gpu } from '../../workers/gpu/runtime';
import { CausalLM, ModelInputError } from '../../workers/model/causal-lm';
import type { ModelConfig } from '../../workers/model/config';
import { allLinearNames } from '../../workers/model/architecture';
import { RandomWeights, tinyConfig } from '../../workers/model/random-weights';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { argmax, sampleTokenBySort, type SamplingOptions } from '../../workers/model/sampling';
import type { GenerateOptions } from '../../workers/model/types';
import { seededRandom } from '../../workers/util/random';
import { randn, testGpu } from './helpers';

/** Linear layers strong enough against falcon's tied embedding that greedy decoding does not just repeat the last token. */
const WEIGHT_STD = { linear: 0.3, embedding: 0.1, bias: 0.02, norm: 0.1 };

async function build(gpu: Gpu, c: ModelConfig): Promise<CausalLM> {
  const model = await CausalLM.load(gpu, SHADERS, c, new RandomWeights(c, 7, WEIGHT_STD), {
    mode: 'exact',
    lora: { settings: { r: 3, alpha: 6, dropout: 0, targetModules: allLinearNames(c) }, init: { seed: 3 } },
  });
  model.lora.filter((t) => t.key.includes('lora_B')).forEach((t, i) => gpu.write(t.weight, randn(t.shape[0] * t.shape[1], 100 + i, 0.05)));
  return model;
}

/** Byte counts of every read from the GPU while `work` runs, and those issued by the time of each onToken. */
async function watchReads<T>(gpu: Gpu, work: (readsSoFar: () => number) => Promise<T>): Promise<{ out: T; reads: number[] }> {
  const reads: number[] = [];
  const original = gpu.read.bind(gpu);
  const spy = vi.spyOn(gpu, 'read').mockImplementation((buf, bytes, offset) => {
    reads.push(bytes ?? buf.size);
    return original(buf, bytes, offset);
  });
  try {
    return { out: await work(() => reads.length), reads };
  } finally {
    spy.mockRestore();
  }
}

/** Greedy tokens the CPU picks from each step's logits (the choice decoding made before the GPU argmax). */
async function greedyWithLogits(m: CausalLM, prompt: number[], o: GenerateOptions) {
  const logits: Float32Array[] = [];
  const out = await m.generate(prompt, { ...o, onLogits: (l, i) => (logits[i] = l.slice()) });
  return { out, cpuChoice: logits.map((l) => argmax(l)) };
}

describe('generate', () => {
  for (const arch of ['phi', 'falcon'] as const) {
    it(`${arch}: greedy reads back one 4-byte id per step, recorded one step ahead, and picks the CPU argmax of each step's logits`, async () => {
      const gpu = await testGpu();
      const c = tinyConfig(arch);
      const m = await build(gpu, c);
      const prompt = [5, 17, 3, 99, 42];
      const n = 9;
      // The first run creates what every later one reuses (e.g. the runtime's dummy binding).
      await m.generate(prompt, { maxNewTokens: 2 });
      const live = gpu.pool.stats().liveTotal;
      const streamed: [number, number, number][] = [];
      const { out, reads } = await watchReads(gpu, (soFar) => m.generate(prompt, { maxNewTokens: n, onToken: (t, i) => streamed.push([t, i, soFar()]) }));
      expect(out.tokens).toHaveLength(n);
      expect(out.stoppedBy).toBe('length');
      expect(reads).toEqual(new Array(n).fill(4));
      // Token i is handed out after step i + 1 was recorded (its read issued), except for the last.
      expect(streamed).toEqual(out.tokens.map((t, i) => [t, i, Math.min(i + 2, n)]));
      expect(gpu.pool.stats().liveTotal).toBe(live);
      const withLogits = await greedyWithLogits(m, prompt, { maxNewTokens: n });
      expect(withLogits.out.tokens).toEqual(out.tokens);
      expect(withLogits.cpuChoice).toEqual(out.tokens);
      // The tiny model does not just repeat one token, so the steps really feed each other.
      expect(new Set(out.tokens).size).toBeGreaterThan(1);
      m.dispose();
    });

    it(`${arch}: greedy EOS in the middle stops there, drops the step recorded ahead, and leaks nothing`, async () => {
      const gpu = await testGpu();
      const c = tinyConfig(arch);
      const m = await build(gpu, c);
      const prompt = [7, 8, 9, 10];
      const n = 8;
      const full = await m.generate(prompt, { maxNewTokens: n });
      // An id whose first appearance is at position j of the greedy output, for j at the start, the middle and the end.
      const firstAt = (j: number) => full.tokens.indexOf(full.tokens[j]) === j;
      const positions = [0, ...[2, 3, 4, 5].filter(firstAt).slice(0, 1), ...(firstAt(n - 1) ? [n - 1] : [])];
      expect(positions.some((j) => j > 0 && j < n - 1)).toBe(true);
      for (const j of positions) {
        const eos = full.tokens[j];
        const live = gpu.pool.stats().liveTotal;
        const streamed: number[] = [];
        const { out, reads } = await watchReads(gpu, () => m.generate(prompt, { maxNewTokens: n, eosTokenIds: [eos, c.vocabSize + 5], onToken: (t) => streamed.push(t) }));
        expect(out.tokens).toEqual(full.tokens.slice(0, j + 1));
        expect(streamed).toEqual(out.tokens);
        expect(out.stoppedBy).toBe('eos');
        // The prefill, steps 1..j, and the one recorded ahead of the EOS (none after the last token).
        expect(reads.length).toBe(Math.min(j + 2, n));
        expect(gpu.pool.stats().liveTotal).toBe(live);
        const again = await greedyWithLogits(m, prompt, { maxNewTokens: n, eosTokenIds: [eos] });
        expect(again.out.tokens).toEqual(out.tokens);
        expect(again.cpuChoice).toEqual(out.tokens);
      }
      m.dispose();
    });

    it(`${arch}: sampling draws what the sorting reference draws from each step's logits with the same seed`, async () => {
      const gpu = await testGpu();
      const c = tinyConfig(arch);
      const m = await build(gpu, c);
      const prompt = [11, 12, 13];
      const settings: SamplingOptions[] = [{ temperature: 1.3 }, { temperature: 0.9, topP: 0.8 }, { temperature: 2, topK: 17 }, { temperature: 1.1, topK: 40, topP: 0.6 }];
      for (const [k, s] of settings.entries()) {
        const seed = 40 + k;
        const logits: Float32Array[] = [];
        const out = await m.generate(prompt, { maxNewTokens: 7, seed, ...s, onLogits: (l, i) => (logits[i] = l.slice()) });
        const random = seededRandom(seed);
        expect(out.tokens, JSON.stringify(s)).toEqual(logits.map((l) => sampleTokenBySort(l, s, random)));
        const quiet = await m.generate(prompt, { maxNewTokens: 7, seed, ...s });
        expect(quiet.tokens).toEqual(out.tokens);
        if (k === 0) {
          // An EOS among the drawn tokens stops sampling as well.
          const j = out.tokens.findIndex((t, i) => i > 0 && out.tokens.indexOf(t) === i);
          expect(j).toBeGreaterThan(0);
          const stop = await m.generate(prompt, { maxNewTokens: 7, seed, ...s, eosTokenIds: [out.tokens[j]] });
          expect(stop.tokens).toEqual(out.tokens.slice(0, j + 1));
          expect(stop.stoppedBy).toBe('eos');
        }
      }
      m.dispose();
    });
  }

  it('maxNewTokens 0 gives no tokens and no GPU work; bad options are rejected before any', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('phi');
    const m = await build(gpu, c);
    const { out, reads } = await watchReads(gpu, () => m.generate([1, 2], { maxNewTokens: 0 }));
    expect(out).toEqual({ tokens: [], stoppedBy: 'length' });
    expect(reads).toEqual([]);
    const live = gpu.pool.stats().liveTotal;
    await expect(m.generate([1, 2], { maxNewTokens: 2.5 })).rejects.toThrow(ModelInputError);
    await expect(m.generate([1, 2], { maxNewTokens: 2, temperature: 1, topK: -1 })).rejects.toThrow(/topK -1/);
    await expect(m.generate([1, 2], { maxNewTokens: 2, temperature: Infinity })).rejects.toThrow(/temperature Infinity/);
    await expect(m.generate([1, c.vocabSize], { maxNewTokens: 2 })).rejects.toThrow(/prompt\[1\]/);
    expect(gpu.pool.stats().liveTotal).toBe(live);
    m.dispose();
  });
});
