/**
 * Hugging Face config.json → the architecture description the engine runs. Each family module
 * (workers/model/families/) parses its own model types; anything else is refused with an error
 * that names the key, the file and the supported types.
 */
import type { GeluKind } from '../kernels/activation';
import type { RopeScaling } from '../kernels/rotary';
import { ConfigError, type Json } from './config-fields';
import { familyForModelType, supportedModelTypes } from './families';
import { checkConfigBounds } from './config-bounds';

export { ConfigError };

/** The name of a registered model family (workers/model/families/index.ts), e.g. `phi`, `falcon`. */
export type Architecture = string;

export interface ModelConfig {
  arch: Architecture;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  /** K/V heads (1 for falcon multi-query). */
  kvHeads: number;
  headDim: number;
  /** head_dim is set in the config rather than hidden / heads. */
  explicitHeadDim?: boolean;
  ffn: number;
  /** Features of each head that are rotated (phi: partial_rotary_factor · head_dim). */
  rotaryDim: number;
  ropeTheta: number;
  /** rope_scaling (linear, llama3); absent or null: plain frequencies. */
  ropeScaling?: RopeScaling | null;
  /** The norms' eps (layer_norm_eps, or rms_norm_eps for RMSNorm families). */
  layerNormEps: number;
  /** The MLP's activation: a GELU (phi, falcon) or SiLU gating (Llama, Qwen2, Phi-3). */
  activation: GeluKind | 'silu';
  /** Linear layers carry a bias (all of them, unless biasRoles names which). */
  linearBias: boolean;
  /** The roles of the linear layers that carry a bias, where not all do (Qwen2: q, k, v). */
  biasRoles?: string[];
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

const STORED_DTYPES = new Map<string, ModelConfig['storedDtype']>([
  ['float32', 'F32'],
  ['float16', 'F16'],
  ['bfloat16', 'BF16'],
]);

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
  const family = typeof type === 'string' ? familyForModelType(type) : null;
  if (!family) throw new ConfigError(file, 'model_type', `= ${JSON.stringify(type)} is not supported (supported: ${supportedModelTypes().map((t) => JSON.stringify(t)).join(', ')})`);
  const config = family.parseConfig(cfg, file);
  // Sizes the engine cannot represent are refused here, before anything walks the model.
  checkConfigBounds(config, file);
  const stored = STORED_DTYPES.get(String(cfg.torch_dtype));
  return stored ? { ...config, storedDtype: stored } : config;
}
