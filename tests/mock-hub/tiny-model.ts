/** Tiny random HF-layout models for loader tests: phi or falcon, F16/BF16/F32, one file or sharded. */
import { writeSafetensors, type DType, type TensorToWrite } from '../../workers/formats/safetensors';
import { f32ArrayToBf16, f32ArrayToF16 } from '../../workers/formats/float16';
import { archFromConfig } from '../../workers/load/arch';
import type { HfConfig } from '../../workers/load/presets';
import { seededNormals } from '../../workers/util/random';

export const seededNormal = seededNormals;

export function tinyPhiConfig(overrides: HfConfig = {}): HfConfig {
  return {
    architectures: ['PhiForCausalLM'], model_type: 'phi', hidden_size: 64, intermediate_size: 160, num_attention_heads: 4,
    num_hidden_layers: 2, num_key_value_heads: 4, partial_rotary_factor: 0.5, vocab_size: 96, max_position_embeddings: 128,
    hidden_act: 'gelu_new', layer_norm_eps: 1e-5, rope_theta: 10000.0, tie_word_embeddings: false, torch_dtype: 'float16', ...overrides,
  };
}

function encode(values: Float32Array, dtype: DType): ArrayBufferView {
  if (dtype === 'F16') return f32ArrayToF16(values);
  if (dtype === 'BF16') return f32ArrayToBf16(values);
  return values;
}

/** Every tensor the config's architecture has, with seeded values. */
export function tinyModelTensors(config: HfConfig, dtype: DType = 'F16', seed = 7): TensorToWrite[] {
  const arch = archFromConfig(config);
  const h = arch.hidden;
  const out: TensorToWrite[] = [];
  let s = seed;
  const add = (name: string, shape: number[], std: number, mean = 0) => {
    const values = seededNormal(shape.reduce((a, b) => a * b, 1), s++, std).map((x) => x + mean);
    out.push({ name, dtype, shape, data: encode(values, dtype) });
  };
  add(arch.embeddingName, [arch.vocab, h], 0.3);
  for (let i = 0; i < arch.layers; i++) {
    const p = arch.blockPrefix(i);
    add(`${p}input_layernorm.weight`, [h], 0.1, 1);
    add(`${p}input_layernorm.bias`, [h], 0.05);
    for (const l of arch.linears) {
      add(`${p}${l.path}.weight`, [l.outFeatures, l.inFeatures], 0.1);
      if (l.bias) add(`${p}${l.path}.bias`, [l.outFeatures], 0.05);
    }
  }
  const finalNorm = arch.family === 'phi' ? 'model.final_layernorm' : 'transformer.ln_f';
  add(`${finalNorm}.weight`, [h], 0.1, 1);
  add(`${finalNorm}.bias`, [h], 0.05);
  if (!arch.tiedLmHead) {
    add(arch.lmHeadName, [arch.vocab, h], 0.1);
    if (arch.lmHeadBias) add('lm_head.bias', [arch.vocab], 0.05);
  }
  return out;
}

/** Files of a model: `model.safetensors`, or `shards` shards plus `model.safetensors.index.json`. */
export function tinyModelFiles(config: HfConfig, tensors: TensorToWrite[], shards = 1): Map<string, Uint8Array | string> {
  const files = new Map<string, Uint8Array | string>();
  files.set('config.json', JSON.stringify(config, null, 2));
  if (shards === 1) {
    files.set('model.safetensors', writeSafetensors(tensors, { format: 'pt' }));
    return files;
  }
  const weightMap: Record<string, string> = {};
  for (let k = 0; k < shards; k++) {
    const name = `model-${String(k + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.filter((_, i) => i % shards === k);
    for (const t of part) weightMap[t.name] = name;
    files.set(name, writeSafetensors(part, { format: 'pt' }));
  }
  files.set('model.safetensors.index.json', JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  return files;
}
