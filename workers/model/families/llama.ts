/**
 * Llama (transformers' LlamaForCausalLM: Llama 2/3.x, TinyLlama, SmolLM2, …): pre-norm
 * sequential blocks with RMSNorm, grouped-query attention with full-width rotary (rope_theta,
 * rope_scaling linear or llama3), a SiLU-gated MLP, optional attention / MLP biases, lm_head tied
 * or not. `parseLlamaLike` also reads the Qwen2 and Phi-3 configs, which share these fields.
 */
import { checkHeads, ConfigError, int, num, optionalId, requireValue, zeroDropout, type Json } from '../config-fields';
import type { ModelConfig } from '../config';
import type { ArchitectureNames, LayerSpec, LinearSpec } from '../architecture';
import type { ModelFamily } from '../family';
import { sequentialBlock } from '../blocks/sequential';
import { ropeScalingFromConfig } from '../rope-scaling';
import { linearSpec, normSpec } from './layout';

export interface LlamaLikeDefaults {
  arch: string;
  maxPositions: number;
  rmsNormEps: number;
}

/** The config fields Llama, Qwen2 and Phi-3 share, with the family's defaults. */
export function parseLlamaLike(cfg: Json, file: string, d: LlamaLikeDefaults): ModelConfig {
  requireValue(cfg, file, 'hidden_act', ['silu'], 'silu', 'only the SiLU-gated MLP is supported');
  requireValue(cfg, file, 'pretraining_tp', [1, undefined, null], 1, 'tensor-parallel slicing of the projections');
  zeroDropout(cfg, file, ['attention_dropout', 'resid_pdrop', 'embd_pdrop']);
  const hidden = int(cfg, file, ['hidden_size']);
  const heads = int(cfg, file, ['num_attention_heads']);
  const explicit = Object.hasOwn(cfg, 'head_dim') && cfg.head_dim !== null;
  const headDim = explicit ? int(cfg, file, ['head_dim']) : hidden / heads;
  if (!Number.isInteger(headDim)) throw new ConfigError(file, 'num_attention_heads', `(${heads}) does not divide hidden_size (${hidden})`);
  return checkHeads(
    {
      arch: d.arch,
      vocabSize: int(cfg, file, ['vocab_size']),
      hidden,
      layers: int(cfg, file, ['num_hidden_layers']),
      heads,
      kvHeads: int(cfg, file, ['num_key_value_heads'], heads),
      headDim,
      explicitHeadDim: explicit,
      ffn: int(cfg, file, ['intermediate_size']),
      rotaryDim: headDim,
      ropeTheta: num(cfg, file, ['rope_theta'], 10000),
      ropeScaling: ropeScalingFromConfig(Object.hasOwn(cfg, 'rope_scaling') ? cfg.rope_scaling : null, file),
      layerNormEps: num(cfg, file, ['rms_norm_eps'], d.rmsNormEps),
      activation: 'silu',
      linearBias: false,
      // These configs' class default is false, and save_pretrained omits defaults.
      tiedLmHead: cfg.tie_word_embeddings === true,
      lmHeadBias: false,
      maxPositions: int(cfg, file, ['max_position_embeddings'], d.maxPositions),
      bosTokenId: optionalId(cfg, 'bos_token_id'),
      eosTokenId: optionalId(cfg, 'eos_token_id'),
    },
    file,
  );
}

function bool(cfg: Json, file: string, key: string): boolean {
  const v = Object.hasOwn(cfg, key) ? cfg[key] : undefined;
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new ConfigError(file, key, `must be true or false, found ${JSON.stringify(v)}`);
  return v;
}

/** Which linear layers carry a bias, by role. */
export type BiasRule = (role: string) => boolean;

/** Tensor names of the Llama layout (Qwen2 shares it; Phi-3 fuses qkv and gate_up). */
export function llamaNames(c: ModelConfig, fused: boolean, bias: BiasRule): ArchitectureNames {
  const D = c.headDim;
  const layers: LayerSpec[] = [];
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}`;
    const lin = (role: string, path: string, inF: number, outF: number): LinearSpec => linearSpec(c, role, `${p}.${path}`, inF, outF, bias(role));
    const attention = fused
      ? [lin('qkv', 'self_attn.qkv_proj', c.hidden, (c.heads + 2 * c.kvHeads) * D)]
      : [lin('q', 'self_attn.q_proj', c.hidden, c.heads * D), lin('k', 'self_attn.k_proj', c.hidden, c.kvHeads * D), lin('v', 'self_attn.v_proj', c.hidden, c.kvHeads * D)];
    const mlp = fused ? [lin('gate_up', 'mlp.gate_up_proj', c.hidden, 2 * c.ffn)] : [lin('gate', 'mlp.gate_proj', c.hidden, c.ffn), lin('up', 'mlp.up_proj', c.hidden, c.ffn)];
    layers.push({
      prefix: `${p}.`,
      norms: [normSpec('input', `${p}.input_layernorm`, 'rmsnorm'), normSpec('post', `${p}.post_attention_layernorm`, 'rmsnorm')],
      linears: [...attention, lin('o', 'self_attn.o_proj', c.heads * D, c.hidden), ...mlp, lin('down', 'mlp.down_proj', c.ffn, c.hidden)],
    });
  }
  return {
    embedding: 'model.embed_tokens.weight',
    finalNorm: normSpec('final', 'model.norm', 'rmsnorm'),
    lmHeadWeight: c.tiedLmHead ? 'model.embed_tokens.weight' : 'lm_head.weight',
    lmHeadBias: null,
    layers,
  };
}

function parseConfig(cfg: Json, file: string): ModelConfig {
  const c = parseLlamaLike(cfg, file, { arch: 'llama', maxPositions: 2048, rmsNormEps: 1e-6 });
  const biasRoles = [...(bool(cfg, file, 'attention_bias') ? ['q', 'k', 'v', 'o'] : []), ...(bool(cfg, file, 'mlp_bias') ? ['gate', 'up', 'down'] : [])];
  return { ...c, linearBias: biasRoles.length > 0, biasRoles };
}

/** The linear layers of `c` that carry a bias: those of its biasRoles. */
export function biasOf(c: ModelConfig): BiasRule {
  const roles = new Set(c.biasRoles ?? []);
  return (role) => roles.has(role);
}

export const llama: ModelFamily = {
  name: 'llama',
  modelTypes: ['llama'],
  hfClass: 'LlamaForCausalLM',
  linearModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  parseConfig,
  names: (c) => llamaNames(c, false, biasOf(c)),
  block: sequentialBlock,
  tinyConfig: { arch: 'llama', vocabSize: 211, hidden: 48, layers: 2, heads: 6, kvHeads: 2, headDim: 8, ffn: 72, rotaryDim: 8, ropeTheta: 500000, layerNormEps: 1e-5, activation: 'silu', linearBias: false, tiedLmHead: false, lmHeadBias: false, maxPositions: 64, bosTokenId: 1, eosTokenId: 2 },
};
