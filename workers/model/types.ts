/**
 * The model's public surface: what the training loop, the decoder UI and the checks code
 * against. Implementations live next to this file (causal-lm.ts and friends).
 */
import type { GpuBuffer } from '../gpu/pool';

/** Row-major [batch, seq] token data; labels use -100 for ignored positions (HF shifts by one inside). */
export interface Batch {
  inputIds: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array;
  batch: number;
  seq: number;
}

/** One trainable LoRA tensor: A is [r, in], B is [out, r]; both f32, category `lora`. */
export interface LoraTensor {
  /** PEFT adapter key, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`. */
  key: string;
  shape: [number, number];
  weight: GpuBuffer;
  /** Same shape as weight; forwardBackward ADDS into it (zero it before an optimizer step's first micro-batch). */
  grad: GpuBuffer;
}

export interface LoraSettings {
  r: number;
  alpha: number;
  /** Dropout on the LoRA input (PEFT's lora_dropout); 0 = identity. */
  dropout: number;
  /** Module names PEFT matches as suffixes of the module path (e.g. `q_proj`, `query_key_value`). */
  targetModules: string[];
  /** PEFT's string form: targetModules[0] is one regular expression matched against the whole module path. */
  targetRegex?: boolean;
  /** rsLoRA: scale = alpha / sqrt(r) instead of alpha / r. */
  useRslora?: boolean;
}

export interface ForwardBackwardOptions {
  /** Multiplies d(lossSum)/dθ before it is added into the LoRA gradient buffers. */
  gradScale: number;
  /** LoRA dropout mask key; the same (seed, step) regenerates the same mask. */
  dropoutSeed?: number;
  step?: number;
}

export interface LossResult {
  /** Sum of the per-token cross-entropy over every shifted label that is not -100. */
  lossSum: number;
  /** Number of those labels. loss = lossSum / tokens (HF's mean). */
  tokens: number;
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 (default) = greedy argmax. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off). */
  topP?: number;
  /** Stop after emitting any of these ids. */
  eosTokenIds?: number[];
  /** Sampling RNG seed. */
  seed?: number;
  /** Called with each new token as soon as it is chosen. */
  onToken?: (token: number, index: number) => void;
  /** Called with the logits that chose each token (for checks); costs a copy per step. */
  onLogits?: (logits: Float32Array, index: number) => void;
  /** Run without the LoRA adapters. */
  noLora?: boolean;
}

export interface GenerateResult {
  tokens: number[];
  stoppedBy: 'eos' | 'length';
}

/** The model ↔ training contract (docs/ARCHITECTURE.md). */
export interface TrainableCausalLM {
  readonly lora: LoraTensor[];
  /** Adds gradScale · d(lossSum)/dθ into each LoRA gradient buffer; returns the loss sum and label count. */
  forwardBackward(batch: Batch, options: ForwardBackwardOptions): Promise<LossResult>;
  /** Loss without gradients (evaluation). */
  loss(batch: Batch, options?: { noLora?: boolean }): Promise<LossResult>;
  generate(prompt: number[], options: GenerateOptions): Promise<GenerateResult>;
  /** Frees every GPU buffer the model owns. */
  dispose(): void;
}
