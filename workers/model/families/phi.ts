/**
 * phi-1 / phi-1_5 / phi-2 (transformers' PhiForCausalLM): parallel attention + MLP with one
 * LayerNorm, partial rotary, gelu_new, biases on every linear layer and on lm_head.
 */
import { checkHeads, int, num, optionalId, requireValue, zeroDropout, type Json } from '../config-fields';
import type { ModelConfig } from '../config';
import type { ArchitectureNames, LayerSpec } from '../architecture';
import type { ModelFamily } from '../family';
import { parallelBlock } from '../blocks/parallel';
import { linearSpec, normSpec } from './layout';

function parseConfig(cfg: Json, file: string): ModelConfig {
  requireValue(cfg, file, 'qk_layernorm', [false, undefined, null], false, 'phi with q/k LayerNorm');
  requireValue(cfg, file, 'rope_scaling', [null, undefined], null, 'scaled rotary embeddings');
  requireValue(cfg, file, 'hidden_act', ['gelu_new'], 'gelu_new', 'phi uses gelu_new');
  zeroDropout(cfg, file, ['resid_pdrop', 'embd_pdrop', 'attention_dropout']);
  const hidden = int(cfg, file, ['hidden_size']);
  const heads = int(cfg, file, ['num_attention_heads']);
  const headDim = hidden / heads;
  const factor = num(cfg, file, ['partial_rotary_factor'], 0.5);
  return checkHeads(
    {
      arch: 'phi',
      vocabSize: int(cfg, file, ['vocab_size']),
      hidden,
      layers: int(cfg, file, ['num_hidden_layers']),
      heads,
      kvHeads: int(cfg, file, ['num_key_value_heads'], heads),
      headDim,
      ffn: int(cfg, file, ['intermediate_size']),
      rotaryDim: Math.floor(factor * headDim),
      ropeTheta: num(cfg, file, ['rope_theta'], 10000),
      layerNormEps: num(cfg, file, ['layer_norm_eps'], 1e-5),
      activation: 'gelu_new',
      linearBias: true,
      tiedLmHead: cfg.tie_word_embeddings === true,
      lmHeadBias: true,
      maxPositions: int(cfg, file, ['max_position_embeddings'], 2048),
      bosTokenId: optionalId(cfg, 'bos_token_id'),
      eosTokenId: optionalId(cfg, 'eos_token_id'),
    },
    file,
  );
}

function names(c: ModelConfig): ArchitectureNames {
  const D = c.headDim;
  const layers: LayerSpec[] = [];
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}`;
    layers.push({
      prefix: `${p}.`,
      norms: [normSpec('input', `${p}.input_layernorm`, 'layernorm')],
      linears: [
        linearSpec(c, 'q', `${p}.self_attn.q_proj`, c.hidden, c.heads * D),
        linearSpec(c, 'k', `${p}.self_attn.k_proj`, c.hidden, c.kvHeads * D),
        linearSpec(c, 'v', `${p}.self_attn.v_proj`, c.hidden, c.kvHeads * D),
        linearSpec(c, 'dense', `${p}.self_attn.dense`, c.heads * D, c.hidden),
        linearSpec(c, 'fc1', `${p}.mlp.fc1`, c.hidden, c.ffn),
        linearSpec(c, 'fc2', `${p}.mlp.fc2`, c.ffn, c.hidden),
      ],
    });
  }
  return {
    embedding: 'model.embed_tokens.weight',
    finalNorm: normSpec('final', 'model.final_layernorm', 'layernorm'),
    lmHeadWeight: c.tiedLmHead ? 'model.embed_tokens.weight' : 'lm_head.weight',
    lmHeadBias: c.lmHeadBias ? 'lm_head.bias' : null,
    layers,
  };
}

export const phi: ModelFamily = {
  name: 'phi',
  modelTypes: ['phi'],
  hfClass: 'PhiForCausalLM',
  linearModules: ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'],
  parseConfig,
  names,
  block: parallelBlock,
  tinyConfig: { arch: 'phi', vocabSize: 203, hidden: 40, layers: 2, heads: 4, kvHeads: 4, headDim: 10, ffn: 72, rotaryDim: 4, ropeTheta: 10000, layerNormEps: 1e-5, activation: 'gelu_new', linearBias: true, tiedLmHead: false, lmHeadBias: true, maxPositions: 64, bosTokenId: null, eosTokenId: null },
};
