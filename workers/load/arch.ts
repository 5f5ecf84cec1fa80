/**
 * The shapes a loader and a memory planner need from an HF config.json: sizes, the linear
 * layers of one block and the tensor names around them. Validates the keys it reads and says
 * which key of which file is missing or unsupported.
 */
import type { HfConfig } from './presets';

export type Family = 'phi' | 'falcon';

export interface LinearShape {
  /** Module name as PEFT's target_modules matches it (`q_proj`, `query_key_value`). */
  module: string;
  /** Path inside one block, e.g. `self_attn.q_proj`. */
  path: string;
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
}

export interface ArchShape {
  family: Family;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  rotaryDim: number;
  intermediate: number;
  vocab: number;
  maxPositions: number;
  /** The linear layers of one decoder block. */
  linears: LinearShape[];
  /** lm_head shares the embedding matrix (no lm_head.weight in the files). */
  tiedLmHead: boolean;
  lmHeadBias: boolean;
  /** Tensor name prefix of block i, e.g. `model.layers.3.`. */
  blockPrefix: (i: number) => string;
  embeddingName: string;
  lmHeadName: string;
  /** Parameters of the whole model. */
  parameters: number;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly key: string,
    message: string,
  ) {
    super(`${file}: "${key}" ${message}`);
    this.name = 'ConfigError';
  }
}

function int(config: HfConfig, key: string, file: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (v === undefined || v === null) throw new ConfigError(file, key, 'is missing');
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ConfigError(file, key, `must be a positive integer, found ${JSON.stringify(v)}`);
  return v;
}

function bool(config: HfConfig, key: string, fallback: boolean, file: string): boolean {
  const v = config[key] ?? fallback;
  if (typeof v !== 'boolean') throw new ConfigError(file, key, `must be true or false, found ${JSON.stringify(v)}`);
  return v;
}

export function archFromConfig(config: HfConfig, file = 'config.json'): ArchShape {
  const type = config.model_type;
  if (type === undefined) throw new ConfigError(file, 'model_type', 'is missing');
  if (type === 'phi') return phiArch(config, file);
  if (type === 'falcon' || type === 'RefinedWebModel' || type === 'RefinedWeb') return falconArch(config, file);
  throw new ConfigError(file, 'model_type', `is ${JSON.stringify(type)}; supported: phi, falcon`);
}

function phiArch(config: HfConfig, file: string): ArchShape {
  const hidden = int(config, 'hidden_size', file);
  const layers = int(config, 'num_hidden_layers', file);
  const heads = int(config, 'num_attention_heads', file);
  const kvHeads = int(config, 'num_key_value_heads', file, heads);
  const intermediate = int(config, 'intermediate_size', file);
  const vocab = int(config, 'vocab_size', file);
  if (hidden % heads !== 0) throw new ConfigError(file, 'num_attention_heads', `(${heads}) must divide hidden_size (${hidden})`);
  if (kvHeads !== heads) throw new ConfigError(file, 'num_key_value_heads', `(${kvHeads}) differs from num_attention_heads: grouped-query phi is not supported`);
  if (config.qk_layernorm === true) throw new ConfigError(file, 'qk_layernorm', 'true is not supported');
  const act = config.hidden_act ?? 'gelu_new';
  if (act !== 'gelu_new') throw new ConfigError(file, 'hidden_act', `${JSON.stringify(act)} is not supported (gelu_new)`);
  if (bool(config, 'tie_word_embeddings', false, file)) throw new ConfigError(file, 'tie_word_embeddings', 'true is not supported for phi');
  const headDim = hidden / heads;
  const factor = config.partial_rotary_factor ?? 0.5;
  if (typeof factor !== 'number' || factor <= 0 || factor > 1) throw new ConfigError(file, 'partial_rotary_factor', `must be in (0, 1], found ${JSON.stringify(factor)}`);
  const lin = (module: string, path: string, inFeatures: number, outFeatures: number): LinearShape => ({ module, path, inFeatures, outFeatures, bias: true });
  const linears = [
    lin('q_proj', 'self_attn.q_proj', hidden, hidden),
    lin('k_proj', 'self_attn.k_proj', hidden, hidden),
    lin('v_proj', 'self_attn.v_proj', hidden, hidden),
    lin('dense', 'self_attn.dense', hidden, hidden),
    lin('fc1', 'mlp.fc1', hidden, intermediate),
    lin('fc2', 'mlp.fc2', intermediate, hidden),
  ];
  return finish({
    family: 'phi', hidden, layers, heads, kvHeads, headDim, rotaryDim: Math.floor(factor * headDim), intermediate, vocab,
    maxPositions: int(config, 'max_position_embeddings', file, 2048),
    linears, tiedLmHead: false, lmHeadBias: true,
    blockPrefix: (i) => `model.layers.${i}.`, embeddingName: 'model.embed_tokens.weight', lmHeadName: 'lm_head.weight',
    parameters: 0,
  }, 2 /* input_layernorm weight and bias */);
}

function falconArch(config: HfConfig, file: string): ArchShape {
  const hidden = int(config, 'hidden_size', file);
  const layers = int(config, 'num_hidden_layers', file);
  const heads = int(config, 'num_attention_heads', file);
  const vocab = int(config, 'vocab_size', file);
  if (bool(config, 'alibi', false, file)) throw new ConfigError(file, 'alibi', 'true is not supported (rotary Falcon only)');
  if (!bool(config, 'parallel_attn', true, file)) throw new ConfigError(file, 'parallel_attn', 'false is not supported');
  const newArch = bool(config, 'new_decoder_architecture', false, file);
  if (newArch) throw new ConfigError(file, 'new_decoder_architecture', 'true (Falcon-40B/180B layout) is not supported');
  if (hidden % heads !== 0) throw new ConfigError(file, 'num_attention_heads', `(${heads}) must divide hidden_size (${hidden})`);
  const multiQuery = bool(config, 'multi_query', true, file);
  const kvHeads = multiQuery ? 1 : heads;
  const headDim = hidden / heads;
  const ffn = int(config, 'ffn_hidden_size', file, 4 * hidden);
  const bias = bool(config, 'bias', false, file);
  const lin = (module: string, path: string, inFeatures: number, outFeatures: number): LinearShape => ({ module, path, inFeatures, outFeatures, bias });
  const linears = [
    lin('query_key_value', 'self_attention.query_key_value', hidden, (heads + 2 * kvHeads) * headDim),
    lin('dense', 'self_attention.dense', hidden, hidden),
    lin('dense_h_to_4h', 'mlp.dense_h_to_4h', hidden, ffn),
    lin('dense_4h_to_h', 'mlp.dense_4h_to_h', ffn, hidden),
  ];
  return finish({
    family: 'falcon', hidden, layers, heads, kvHeads, headDim, rotaryDim: headDim, intermediate: ffn, vocab,
    maxPositions: int(config, 'max_position_embeddings', file, 2048),
    linears, tiedLmHead: bool(config, 'tie_word_embeddings', true, file), lmHeadBias: false,
    blockPrefix: (i) => `transformer.h.${i}.`, embeddingName: 'transformer.word_embeddings.weight', lmHeadName: 'lm_head.weight',
    parameters: 0,
  }, 2 /* input_layernorm weight and bias */);
}

function finish(arch: ArchShape, normVectorsPerBlock: number): ArchShape {
  const h = arch.hidden;
  let perBlock = normVectorsPerBlock * h;
  for (const l of arch.linears) perBlock += l.inFeatures * l.outFeatures + (l.bias ? l.outFeatures : 0);
  const head = arch.tiedLmHead ? 0 : arch.vocab * h + (arch.lmHeadBias ? arch.vocab : 0);
  arch.parameters = arch.vocab * h + arch.layers * perBlock + 2 * h + head;
  return arch;
}

/** Tensors that quantize-on-load turns into NF4: the 2-D weights of the blocks' linear layers. */
export function isQuantizedLinear(arch: ArchShape, name: string): boolean {
  if (!name.endsWith('.weight')) return false;
  for (let i = 0; i < arch.layers; i++) {
    const prefix = arch.blockPrefix(i);
    if (name.startsWith(prefix)) return arch.linears.some((l) => name === `${prefix}${l.path}.weight`);
  }
  return false;
}
