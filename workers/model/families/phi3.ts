/**
 * Phi-3 (transformers' Phi3ForCausalLM, e.g. Phi-3-mini-4k-instruct): the Llama layout with q, k
 * and v fused into one `qkv_proj` (rows: query heads, key heads, value heads) and gate and up
 * fused into one `gate_up_proj` (rows: gate, then up); NF4 quantizes each fused weight as one,
 * and LoRA adapts the fused module, as PEFT does. No biases, lm_head untied. The 128k models'
 * longrope scaling is refused by name.
 */
import type { Json } from '../config-fields';
import type { ModelConfig } from '../config';
import type { ModelFamily } from '../family';
import { sequentialBlock } from '../blocks/sequential';
import { llamaNames, parseLlamaLike } from './llama';

function parseConfig(cfg: Json, file: string): ModelConfig {
  return parseLlamaLike(cfg, file, { arch: 'phi3', maxPositions: 4096, rmsNormEps: 1e-5 });
}

export const phi3: ModelFamily = {
  name: 'phi3',
  modelTypes: ['phi3'],
  hfClass: 'Phi3ForCausalLM',
  linearModules: ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'],
  parseConfig,
  names: (c) => llamaNames(c, true, () => false),
  block: sequentialBlock,
  tinyConfig: { arch: 'phi3', vocabSize: 203, hidden: 40, layers: 2, heads: 4, kvHeads: 2, headDim: 10, ffn: 66, rotaryDim: 10, ropeTheta: 10000, layerNormEps: 1e-5, activation: 'silu', linearBias: false, tiedLmHead: false, lmHeadBias: false, maxPositions: 64, bosTokenId: 1, eosTokenId: 2 },
};
