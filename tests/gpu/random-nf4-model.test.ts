/**
 * Benchmark models take their linear layers as random NF4 states (no floats generated, nothing
 * quantized): CausalLM must upload those states as they are.
 */
import { describe, expect, it } from 'vitest';
import { CausalLM } from '../../workers/model/causal-lm';
import { allLinearNames } from '../../workers/model/architecture';
import { RandomWeights, tinyConfig } from '../../workers/model/random-weights';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { dequantizeNF4 } from '../../workers/nf4/reference';
import { testGpu } from './helpers';

describe('random NF4 benchmark weights', () => {
  it('reach the GPU as the states RandomWeights offers, code for code', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('falcon');
    const weights = new RandomWeights(c, 11, undefined, { nf4Linears: true });
    const model = await CausalLM.load(gpu, SHADERS, c, weights, {
      mode: 'nf4',
      lora: { settings: { r: 2, alpha: 4, dropout: 0, targetModules: allLinearNames(c) }, init: { seed: 1 } },
    });
    const onGpu = await model.dequantizedLinearWeights();
    expect(onGpu.size).toBe(c.layers * 4);
    for (const [name, values] of onGpu) {
      const state = await weights.readNf4(name);
      expect(state, name).not.toBeNull();
      expect(Array.from(values), name).toEqual(Array.from(dequantizeNF4(state!)));
    }
    // Not a linear weight: read as floats as before.
    expect(await weights.readNf4('transformer.word_embeddings.weight')).toBeNull();
    model.dispose();
  });
});
