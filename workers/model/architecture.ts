/**
 * Module paths and tensor names of a model, as Hugging Face names them, and which linear layers
 * a PEFT `target_modules` setting adapts. Each family (workers/model/families/) says what its
 * layers hold; this file is what every family's description has in common.
 */
import type { ModelConfig } from './config';
import { familyOf } from './families';

/**
 * What a linear layer does in its block, in the engine's words (`q`, `k`, `v`, `qkv`, `dense`,
 * `fc1`, `fc2`, …): the block finds its layers by role, PEFT finds them by module name.
 */
export type LinearRole = string;

export interface LinearSpec {
  role: LinearRole;
  /** HF module path, e.g. `model.layers.0.self_attn.q_proj`; tensors are `<path>.weight` / `.bias`. */
  path: string;
  /** The module's own name, matched against PEFT target_modules. */
  name: string;
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
}

/** LayerNorm (weight and bias, mean and variance) or RMSNorm (weight only). */
export type NormKind = 'layernorm' | 'rmsnorm';

export interface NormSpec {
  /** What the norm does in its block, e.g. `input`. */
  role: string;
  /** HF module path; tensors are `<path>.weight` (and `.bias` when `bias`). */
  path: string;
  kind: NormKind;
  bias: boolean;
}

export interface LayerSpec {
  /** Tensor name prefix of the block, e.g. `model.layers.3.`. */
  prefix: string;
  norms: NormSpec[];
  linears: LinearSpec[];
}

export interface ArchitectureNames {
  embedding: string;
  finalNorm: NormSpec;
  /** lm_head weight (the embedding's name when tied) and bias (null when none). */
  lmHeadWeight: string;
  lmHeadBias: string | null;
  layers: LayerSpec[];
}

export function architectureNames(c: ModelConfig): ArchitectureNames {
  return familyOf(c).names(c);
}

/** Every linear module name of the architecture (what "all linear layers" means for LoRA). */
export function allLinearNames(c: ModelConfig): string[] {
  return [...familyOf(c).linearModules];
}

/** PEFT's target_modules matching (a list of names, or one pattern matched in linear time). */
export { isTargetModule } from './target-modules';

/** PEFT adapter keys of a module. */
export function loraKeys(path: string): { a: string; b: string } {
  return { a: `base_model.model.${path}.lora_A.weight`, b: `base_model.model.${path}.lora_B.weight` };
}

/** Every tensor of the model with its shape (tied lm_head excluded), in embedding → blocks → head order. */
export function tensorShapes(c: ModelConfig, names = architectureNames(c)): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const norm = (n: NormSpec) => {
    shapes.set(`${n.path}.weight`, [c.hidden]);
    if (n.bias) shapes.set(`${n.path}.bias`, [c.hidden]);
  };
  shapes.set(names.embedding, [c.vocabSize, c.hidden]);
  for (const l of names.layers) {
    for (const s of l.linears) {
      shapes.set(`${s.path}.weight`, [s.outFeatures, s.inFeatures]);
      if (s.bias) shapes.set(`${s.path}.bias`, [s.outFeatures]);
    }
    l.norms.forEach(norm);
  }
  norm(names.finalNorm);
  if (!c.tiedLmHead) shapes.set(names.lmHeadWeight, [c.vocabSize, c.hidden]);
  if (names.lmHeadBias) shapes.set(names.lmHeadBias, [c.vocabSize]);
  return shapes;
}
