/**
 * falcon-7b style (transformers' FalconForCausalLM, model types falcon / RefinedWebModel):
 * multi-query attention through one fused query_key_value layer, parallel attention + MLP with
 * one LayerNorm, full rotary, exact GELU, no biases, lm_head tied by default.
 */
import { checkHeads, int, num, optionalId, requireValue, zeroDropout, type Json } from '../config-fields';
import type { ModelConfig } from '../config';
import type { ArchitectureNames, LayerSpec } from '../architecture';
import type { ModelFamily } from '../family';
import { parallelBlock } from '../blocks/parallel';
import { linearSpec, normSpec } from './layout';

function parseConfig(cfg: Json, file: string): ModelConfig {
  requireValue(cfg, file, 'alibi', [false], false, 'ALiBi position bias');
  requireValue(cfg, file, 'new_decoder_architecture', [false], false, 'the falcon-40b/180b decoder');
  requireValue(cfg, file, 'multi_query', [true], true, 'only multi-query falcon (one K/V head) is supported');
  requireValue(cfg, file, 'parallel_attn', [true], true, 'only parallel attention + MLP blocks are supported');
  requireValue(cfg, file, 'bias', [false], false, 'linear biases in falcon');
  requireValue(cfg, file, 'apply_residual_connection_post_layernorm', [false], false, 'post-LayerNorm residuals');
  requireValue(cfg, file, 'rope_scaling', [null, undefined], null, 'scaled rotary embeddings');
  requireValue(cfg, file, 'activation', ['gelu'], 'gelu', 'falcon uses the exact GELU');
  zeroDropout(cfg, file, ['hidden_dropout', 'attention_dropout']);
  const hidden = int(cfg, file, ['hidden_size', 'n_embed']);
  const heads = int(cfg, file, ['num_attention_heads', 'n_head']);
  const headDim = hidden / heads;
  return checkHeads(
    {
      arch: 'falcon',
      vocabSize: int(cfg, file, ['vocab_size']),
      hidden,
      layers: int(cfg, file, ['num_hidden_layers', 'n_layer']),
      heads,
      // multi_query wins over a stale num_kv_heads, as in transformers.
      kvHeads: 1,
      headDim,
      ffn: int(cfg, file, ['ffn_hidden_size'], 4 * hidden),
      rotaryDim: headDim,
      ropeTheta: num(cfg, file, ['rope_theta'], 10000),
      layerNormEps: num(cfg, file, ['layer_norm_epsilon'], 1e-5),
      activation: 'gelu',
      linearBias: false,
      // PretrainedConfig's default is true and save_pretrained omits defaults.
      tiedLmHead: cfg.tie_word_embeddings !== false,
      lmHeadBias: false,
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
    const p = `transformer.h.${i}`;
    layers.push({
      prefix: `${p}.`,
      norms: [normSpec('input', `${p}.input_layernorm`, 'layernorm')],
      linears: [
        // Rows: all query heads, then the key head(s), then the value head(s).
        linearSpec(c, 'qkv', `${p}.self_attention.query_key_value`, c.hidden, (c.heads + 2 * c.kvHeads) * D),
        linearSpec(c, 'dense', `${p}.self_attention.dense`, c.heads * D, c.hidden),
        linearSpec(c, 'fc1', `${p}.mlp.dense_h_to_4h`, c.hidden, c.ffn),
        linearSpec(c, 'fc2', `${p}.mlp.dense_4h_to_h`, c.ffn, c.hidden),
      ],
    });
  }
  return {
    embedding: 'transformer.word_embeddings.weight',
    finalNorm: normSpec('final', 'transformer.ln_f', 'layernorm'),
    lmHeadWeight: c.tiedLmHead ? 'transformer.word_embeddings.weight' : 'lm_head.weight',
    lmHeadBias: null,
    layers,
  };
}

export const falcon: ModelFamily = {
  name: 'falcon',
  modelTypes: ['falcon', 'RefinedWebModel', 'RefinedWeb'],
  hfClass: 'FalconForCausalLM',
  linearModules: ['query_key_value', 'dense', 'dense_h_to_4h', 'dense_4h_to_h'],
  parseConfig,
  names,
  block: parallelBlock,
  tinyConfig: { arch: 'falcon', vocabSize: 211, hidden: 48, layers: 2, heads: 4, kvHeads: 1, headDim: 12, ffn: 80, rotaryDim: 12, ropeTheta: 10000, layerNormEps: 1e-5, activation: 'gelu', linearBias: false, tiedLmHead: true, lmHeadBias: false, maxPositions: 64, bosTokenId: 1, eosTokenId: 2 },
};
