/**
 * Qwen2 / Qwen2.5 (transformers' Qwen2ForCausalLM): the Llama layout with biases on q, k and v
 * (not on o or the MLP), usually a tied lm_head in the small sizes. Sliding-window attention is
 * refused (use_sliding_window true): the released models train with it off.
 */
import { requireValue, type Json } from '../config-fields';
import type { ModelConfig } from '../config';
import type { ModelFamily } from '../family';
import { sequentialBlock } from '../blocks/sequential';
import { biasOf, llamaNames, parseLlamaLike } from './llama';

function parseConfig(cfg: Json, file: string): ModelConfig {
  requireValue(cfg, file, 'use_sliding_window', [false, undefined, null], false, 'sliding-window attention');
  const c = parseLlamaLike(cfg, file, { arch: 'qwen2', maxPositions: 32768, rmsNormEps: 1e-6 });
  return { ...c, linearBias: true, biasRoles: ['q', 'k', 'v'] };
}

export const qwen2: ModelFamily = {
  name: 'qwen2',
  modelTypes: ['qwen2'],
  hfClass: 'Qwen2ForCausalLM',
  linearModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  parseConfig,
  names: (c) => llamaNames(c, false, biasOf(c)),
  block: sequentialBlock,
  tinyConfig: { arch: 'qwen2', vocabSize: 197, hidden: 56, layers: 2, heads: 7, kvHeads: 1, headDim: 8, ffn: 88, rotaryDim: 8, ropeTheta: 1000000, layerNormEps: 1e-6, activation: 'silu', linearBias: true, biasRoles: ['q', 'k', 'v'], tiedLmHead: true, lmHeadBias: false, maxPositions: 64, bosTokenId: null, eosTokenId: 3 },
};
