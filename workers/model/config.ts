/**
 * Hugging Face config.json → the architecture description the engine runs. Two families:
 * phi (PhiForCausalLM) and falcon-7b style (multi-query, parallel attention, rotary, no bias).
 * Anything else is refused with an error that names the key and the file.
 */
import { MAX_HEAD_DIM } from '../kernels/attention';
import type { GeluKind } from '../kernels/activation';

export type Architecture = 'phi' | 'falcon';

export interface ModelConfig {
  arch: Architecture;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  /** K/V heads (1 for falcon multi-query). */
  kvHeads: number;
  headDim: number;
  ffn: number;
  /** Features of each head that are rotated (phi: partial_rotary_factor · head_dim). */
  rotaryDim: number;
  ropeTheta: number;
  layerNormEps: number;
  activation: GeluKind;
  /** Linear layers (q/k/v/dense/fc1/fc2) carry a bias. */
  linearBias: boolean;
  /** lm_head shares the embedding matrix. */
  tiedLmHead: boolean;
  lmHeadBias: boolean;
  maxPositions: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /**
   * The checkpoint's dtype (config.json `torch_dtype`) when it names one: a 16-bit checkpoint's
   * embedding and lm_head stay 16-bit in QLoRA mode. Unknown: planned as f32.
   */
  storedDtype?: 'F32' | 'F16' | 'BF16';
}

export class ConfigError extends Error {
  constructor(file: string, key: string, message: string) {
    super(`${file}: "${key}" ${message}`);
    this.name = 'ConfigError';
  }
}

type Json = Record<string, unknown>;

function num(cfg: Json, file: string, keys: string[], fallback?: number): number {
  for (const k of keys) {
    const v = cfg[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(file, k, `must be a number, found ${JSON.stringify(v)}`);
    return v;
  }
  if (fallback !== undefined) return fallback;
  throw new ConfigError(file, keys[0], 'is missing');
}

function int(cfg: Json, file: string, keys: string[], fallback?: number): number {
  const v = num(cfg, file, keys, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(file, keys[0], `must be a positive integer, found ${v}`);
  return v;
}

function optionalId(cfg: Json, key: string): number | null {
  const v = cfg[key];
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return null;
}

function requireValue(cfg: Json, file: string, key: string, allowed: unknown[], fallback: unknown, why: string): void {
  const v = key in cfg ? cfg[key] : fallback;
  if (!allowed.some((a) => a === v)) throw new ConfigError(file, key, `= ${JSON.stringify(v)} is not supported (${why})`);
}

function zeroDropout(cfg: Json, file: string, keys: string[]): void {
  for (const k of keys) {
    const v = cfg[k];
    if (v !== undefined && v !== null && v !== 0) throw new ConfigError(file, k, `= ${JSON.stringify(v)} is not supported (only 0: the engine applies no dropout there)`);
  }
}

function checkHeads(c: ModelConfig, file: string): ModelConfig {
  if (c.hidden % c.heads !== 0) throw new ConfigError(file, 'num_attention_heads', `(${c.heads}) does not divide hidden_size (${c.hidden})`);
  if (c.headDim > MAX_HEAD_DIM) throw new ConfigError(file, 'num_attention_heads', `gives head_dim ${c.headDim}; at most ${MAX_HEAD_DIM} is supported`);
  if (c.heads % c.kvHeads !== 0) throw new ConfigError(file, 'num_key_value_heads', `(${c.kvHeads}) does not divide num_attention_heads (${c.heads})`);
  if (c.rotaryDim % 2 !== 0 || c.rotaryDim > c.headDim) throw new ConfigError(file, 'partial_rotary_factor', `gives rotary_dim ${c.rotaryDim}; it must be even and at most head_dim ${c.headDim}`);
  return c;
}

function parsePhi(cfg: Json, file: string): ModelConfig {
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

function parseFalcon(cfg: Json, file: string): ModelConfig {
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

const STORED_DTYPES: Record<string, ModelConfig['storedDtype']> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** Parses a config.json object (or its text); `file` names it in errors. */
export function parseModelConfig(source: string | Json, file = 'config.json'): ModelConfig {
  let cfg: Json;
  if (typeof source === 'string') {
    try {
      cfg = JSON.parse(source) as Json;
    } catch (err) {
      throw new ConfigError(file, '(file)', `is not valid JSON: ${(err as Error).message}`);
    }
  } else cfg = source;
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw new ConfigError(file, '(file)', 'is not a JSON object');
  const type = cfg.model_type;
  const stored = STORED_DTYPES[String(cfg.torch_dtype)];
  const withDtype = (c: ModelConfig): ModelConfig => (stored ? { ...c, storedDtype: stored } : c);
  if (type === 'phi') return withDtype(parsePhi(cfg, file));
  if (type === 'falcon' || type === 'RefinedWebModel' || type === 'RefinedWeb') return withDtype(parseFalcon(cfg, file));
  throw new ConfigError(file, 'model_type', `= ${JSON.stringify(type)} is not supported (supported: "phi", "falcon")`);
}
