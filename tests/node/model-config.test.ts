import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseModelConfig } from '../../workers/model/config';
import { architectureNames, isTargetModule } from '../../workers/model/architecture';
import { adaptedModules, initLoraA, parsePeftConfig } from '../../workers/model/lora-adapter';
import { seededRandom } from '../../workers/util/random';
import { openSafetensorsWeights } from '../../workers/model/weights';
import { argmax, samplingDistribution } from '../../workers/model/sampling';
import { writeSafetensors } from '../../workers/formats/safetensors';

const fixture = (p: string) => readFileSync(`tests/fixtures/hf-golden/${p}`, 'utf8');

describe('config.json', () => {
  it('reads the phi fixture: partial rotary, gelu_new, untied lm_head with bias', () => {
    const c = parseModelConfig(fixture('tiny-phi/config.json'));
    expect(c).toMatchObject({ arch: 'phi', hidden: 64, heads: 4, kvHeads: 4, headDim: 16, rotaryDim: 8, ffn: 256, activation: 'gelu_new', linearBias: true, tiedLmHead: false, lmHeadBias: true, layerNormEps: 1e-5 });
  });

  it('reads the falcon fixture: one K/V head despite num_kv_heads, exact GELU, tied lm_head', () => {
    const c = parseModelConfig(fixture('tiny-falcon/config.json'));
    expect(c).toMatchObject({ arch: 'falcon', heads: 4, kvHeads: 1, headDim: 16, rotaryDim: 16, ffn: 256, activation: 'gelu', linearBias: false, tiedLmHead: true, eosTokenId: 11 });
  });

  it("reads falcon-7b's original RefinedWebModel keys", () => {
    const c = parseModelConfig({ model_type: 'RefinedWebModel', n_embed: 4544, n_head: 71, n_layer: 32, vocab_size: 65024, multi_query: true, parallel_attn: true, bias: false, alibi: false, layer_norm_epsilon: 1e-5 });
    expect(c).toMatchObject({ hidden: 4544, heads: 71, headDim: 64, layers: 32, ffn: 18176, kvHeads: 1 });
    expect(architectureNames(c).layers[0].linears[0]).toMatchObject({ path: 'transformer.h.0.self_attention.query_key_value', outFeatures: 4672 });
  });

  it('records the checkpoint dtype from torch_dtype (what QLoRA mode keeps the embedding and lm_head in)', () => {
    const base = { model_type: 'RefinedWebModel', n_embed: 64, n_head: 4, n_layer: 1, vocab_size: 100 };
    expect(parseModelConfig({ ...base, torch_dtype: 'bfloat16' }).storedDtype).toBe('BF16');
    expect(parseModelConfig({ ...base, torch_dtype: 'float16' }).storedDtype).toBe('F16');
    expect(parseModelConfig({ ...base, torch_dtype: 'float32' }).storedDtype).toBe('F32');
    expect(parseModelConfig(base).storedDtype).toBeUndefined();
    expect(parseModelConfig(fixture('tiny-phi/config.json')).storedDtype).toBe('F32');
  });

  const refusals: [Record<string, unknown>, string][] = [
    [{ alibi: true }, 'alibi'],
    [{ new_decoder_architecture: true }, 'new_decoder_architecture'],
    [{ multi_query: false }, 'multi_query'],
    [{ parallel_attn: false }, 'parallel_attn'],
    [{ rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling'],
    [{ bias: true }, 'bias'],
  ];
  for (const [change, key] of refusals) {
    it(`refuses falcon with ${key} changed, naming the key and file`, () => {
      const cfg = { ...JSON.parse(fixture('tiny-falcon/config.json')), ...change };
      expect(() => parseModelConfig(cfg, 'models/x/config.json')).toThrow(new RegExp(`models/x/config.json: "${key}"`));
    });
  }

  it('refuses phi with qk_layernorm, another activation, or an unknown model_type', () => {
    const phi = JSON.parse(fixture('tiny-phi/config.json'));
    expect(() => parseModelConfig({ ...phi, qk_layernorm: true })).toThrow(/"qk_layernorm"/);
    expect(() => parseModelConfig({ ...phi, hidden_act: 'relu' })).toThrow(/"hidden_act"/);
    expect(() => parseModelConfig({ ...phi, model_type: 'gpt2' })).toThrow(/"model_type" = "gpt2" is not supported \(supported: "phi", "falcon", /);
    expect(() => parseModelConfig('{not json', 'c.json')).toThrow(/c.json/);
  });
});

describe('LoRA settings', () => {
  it('reads PEFT adapter_config.json and matches target modules by suffix', () => {
    const s = parsePeftConfig(fixture('tiny-falcon/adapter_config.json'));
    expect(s).toMatchObject({ r: 4, alpha: 8, dropout: 0, useRslora: false, baseModel: 'tiny-falcon' });
    const names = architectureNames(parseModelConfig(fixture('tiny-falcon/config.json')));
    expect(adaptedModules(names, s).map((m) => m.path)).toContain('transformer.h.1.mlp.dense_4h_to_h');
    expect(adaptedModules(names, { ...s, targetModules: ['dense'] }).map((m) => m.name)).toEqual(['dense', 'dense']);
    expect(isTargetModule('model.layers.0.self_attn.q_proj', '.*\\.(q|v)_proj')).toBe(true);
    expect(isTargetModule('model.layers.0.self_attn.k_proj', '.*\\.(q|v)_proj')).toBe(false);
  });

  it('refuses what the engine does not implement', () => {
    const base = JSON.parse(fixture('tiny-phi/adapter_config.json'));
    expect(() => parsePeftConfig(JSON.stringify({ ...base, use_dora: true }), 'a.json')).toThrow(/a.json: "use_dora"/);
    expect(() => parsePeftConfig(JSON.stringify({ ...base, bias: 'all' }))).toThrow(/"bias"/);
    expect(() => parsePeftConfig(JSON.stringify({ ...base, rank_pattern: { q_proj: 8 } }))).toThrow(/"rank_pattern"/);
  });

  it('initialises A uniformly in ±1/√in from a seed', () => {
    const a = initLoraA(16, 2048, seededRandom(1));
    const bound = 1 / Math.sqrt(2048);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(bound);
    const mean = a.reduce((x, y) => x + y, 0) / a.length;
    const variance = a.reduce((x, y) => x + y * y, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.02 * bound);
    expect(variance / (bound * bound)).toBeCloseTo(1 / 3, 1);
    expect(Array.from(initLoraA(2, 5, seededRandom(9)))).toEqual(Array.from(initLoraA(2, 5, seededRandom(9))));
  });
});

describe('weights', () => {
  it('opens sharded checkpoints through model.safetensors.index.json', async () => {
    const shard1 = writeSafetensors([{ name: 'a', dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) }]);
    const shard2 = writeSafetensors([{ name: 'b', dtype: 'F32', shape: [1], data: Float32Array.of(3) }]);
    const files: Record<string, Uint8Array> = {
      'm/model.safetensors.index.json': new TextEncoder().encode(JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } })),
      'm/model-00001-of-00002.safetensors': shard1,
      'm/model-00002-of-00002.safetensors': shard2,
    };
    const src = await openSafetensorsWeights('m', async (p) => files[p] ?? null);
    expect(src.names().sort()).toEqual(['a', 'b']);
    expect(Array.from(await src.readF32('b'))).toEqual([3]);
    delete files['m/model-00002-of-00002.safetensors'];
    await expect(openSafetensorsWeights('m', async (p) => files[p] ?? null)).rejects.toThrow(/model-00002-of-00002.safetensors" is listed but missing/);
  });
});

describe('sampling', () => {
  const logits = Float32Array.of(1, 3, 2, 0.5, 3);
  it('argmax takes the first maximum', () => expect(argmax(logits)).toBe(1));
  it('top-k keeps the k largest, top-p the smallest set reaching p', () => {
    expect(samplingDistribution(logits, { topK: 2 }).ids).toEqual([1, 4]);
    const d = samplingDistribution(logits, { topP: 0.5 });
    expect(d.ids).toEqual([1, 4]);
    expect(d.probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    const hot = samplingDistribution(logits, { temperature: 100 });
    expect(Math.max(...hot.probs) - Math.min(...hot.probs)).toBeLessThan(0.01);
  });
});
