/**
 * Sizes in a config.json bounded by what the engine can represent, checked before anything is
 * allocated or planned: a config.json comes from any repository or dropped folder, and
 * `hidden_size: 1e9` or `num_hidden_layers: 1e6` must be refused with the key named, not
 * discovered by the planner running out of heap or a buffer failing to allocate.
 *
 * These are limits of representation, not of memory: whether a model fits this GPU is the
 * planner's verdict. Real models stay far inside them (falcon-7b's largest tensor holds 3 · 10^8
 * elements; a 405B-parameter model's 2 · 10^9).
 */
import { ConfigError } from './config-fields';
import type { ModelConfig } from './config';

/** Sizes travel to the kernels as i32/u32 uniform words and dispatch counts. */
export const MAX_SIZE = 2 ** 31 - 1;
/**
 * Elements of one tensor: WGSL indexes a binding with a u32, and one tensor is one buffer (or
 * one typed array on the CPU side), so 2^32 − 1 is the most any single tensor can hold.
 */
export const MAX_TENSOR_ELEMENTS = 2 ** 32 - 1;
/**
 * Decoder blocks: the planner and the loader keep records per block (names, buffers, offsets),
 * and the deepest published decoders have under 200; 1024 leaves room and keeps every count
 * the planner sums (bytes over all blocks) far below 2^53.
 */
export const MAX_LAYERS = 1024;

/**
 * Positions: the rotary tables are computed on the CPU and uploaded whole when the model loads,
 * one row per position the config allows, whatever sequence length a run uses. 2^20 (a
 * million-token context, the longest published) keeps them under a gigabyte.
 */
export const MAX_POSITIONS = 2 ** 20;

/** The config.json key each size comes from (the name Hugging Face writes). */
const KEYS = {
  vocabSize: 'vocab_size',
  hidden: 'hidden_size',
  layers: 'num_hidden_layers',
  heads: 'num_attention_heads',
  kvHeads: 'num_key_value_heads',
  ffn: 'intermediate_size',
  maxPositions: 'max_position_embeddings',
} as const;

type SizeField = keyof typeof KEYS;

function keyOf(config: ModelConfig, field: SizeField): string {
  if (field === 'ffn' && config.arch === 'falcon') return 'ffn_hidden_size';
  return KEYS[field];
}

/**
 * Throws a ConfigError naming the config.json key when a size cannot be represented: a size
 * beyond i32, more than MAX_LAYERS blocks or MAX_POSITIONS positions, or one tensor with more than 2^32 − 1 elements
 * (the key named is the larger of the tensor's two sizes).
 */
export function checkConfigBounds(config: ModelConfig, file = 'config.json'): void {
  for (const field of Object.keys(KEYS) as SizeField[]) {
    const v = config[field];
    if (!Number.isSafeInteger(v) || v <= 0 || v > MAX_SIZE) {
      throw new ConfigError(file, keyOf(config, field), `= ${v} is beyond what the engine can represent (a positive integer up to ${MAX_SIZE})`);
    }
  }
  if (config.maxPositions > MAX_POSITIONS) {
    throw new ConfigError(file, keyOf(config, 'maxPositions'), `= ${config.maxPositions}: at most ${MAX_POSITIONS} positions are supported (the rotary tables hold one row per position)`);
  }
  if (config.layers > MAX_LAYERS) {
    throw new ConfigError(file, keyOf(config, 'layers'), `= ${config.layers}: at most ${MAX_LAYERS} decoder blocks are supported`);
  }
  const headsOut = config.heads * config.headDim;
  const qkvOut = (config.heads + 2 * config.kvHeads) * config.headDim;
  // [rows, columns, which field each comes from, what the tensor is]
  const tensors: [number, SizeField, number, SizeField, string][] = [
    [config.vocabSize, 'vocabSize', config.hidden, 'hidden', 'the embedding (vocab_size × hidden_size)'],
    [qkvOut, 'heads', config.hidden, 'hidden', 'the attention projections (heads · head_dim × hidden_size)'],
    [headsOut, 'heads', config.hidden, 'hidden', 'the attention output projection'],
    [config.ffn, 'ffn', config.hidden, 'hidden', 'the MLP projections (intermediate size × hidden_size)'],
  ];
  for (const [rows, rowField, cols, colField, what] of tensors) {
    const elements = rows * cols;
    if (elements <= MAX_TENSOR_ELEMENTS) continue;
    const field = config[rowField] >= config[colField] ? rowField : colField;
    throw new ConfigError(
      file,
      keyOf(config, field),
      `= ${config[field]} makes ${what} ${elements.toExponential(3)} elements; one tensor can hold at most ${MAX_TENSOR_ELEMENTS} (2^32 − 1)`,
    );
  }
}
