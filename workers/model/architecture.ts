/**
 * Module paths and tensor names of each architecture, as Hugging Face names them, and which
 * linear layers a PEFT `target_modules` setting adapts.
 */
import type { ModelConfig } from './config';

/** What a linear layer does in the block. */
export type LinearRole = 'q' | 'k' | 'v' | 'qkv' | 'dense' | 'fc1' | 'fc2';

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

export interface LayerSpec {
  /** input_layernorm path. */
  norm: string;
  linears: LinearSpec[];
}

export interface ArchitectureNames {
  embedding: string;
  finalNorm: string;
  /** lm_head weight (the embedding's name when tied) and bias (null when none). */
  lmHeadWeight: string;
  lmHeadBias: string | null;
  layers: LayerSpec[];
}

export function architectureNames(c: ModelConfig): ArchitectureNames {
  const layers: LayerSpec[] = [];
  const D = c.headDim;
  for (let i = 0; i < c.layers; i++) {
    const lin = (role: LinearRole, path: string, inFeatures: number, outFeatures: number): LinearSpec => ({
      role,
      path,
      name: path.slice(path.lastIndexOf('.') + 1),
      inFeatures,
      outFeatures,
      bias: c.linearBias,
    });
    if (c.arch === 'phi') {
      const p = `model.layers.${i}`;
      layers.push({
        norm: `${p}.input_layernorm`,
        linears: [
          lin('q', `${p}.self_attn.q_proj`, c.hidden, c.heads * D),
          lin('k', `${p}.self_attn.k_proj`, c.hidden, c.kvHeads * D),
          lin('v', `${p}.self_attn.v_proj`, c.hidden, c.kvHeads * D),
          lin('dense', `${p}.self_attn.dense`, c.heads * D, c.hidden),
          lin('fc1', `${p}.mlp.fc1`, c.hidden, c.ffn),
          lin('fc2', `${p}.mlp.fc2`, c.ffn, c.hidden),
        ],
      });
    } else {
      const p = `transformer.h.${i}`;
      layers.push({
        norm: `${p}.input_layernorm`,
        linears: [
          lin('qkv', `${p}.self_attention.query_key_value`, c.hidden, (c.heads + 2 * c.kvHeads) * D),
          lin('dense', `${p}.self_attention.dense`, c.heads * D, c.hidden),
          lin('fc1', `${p}.mlp.dense_h_to_4h`, c.hidden, c.ffn),
          lin('fc2', `${p}.mlp.dense_4h_to_h`, c.ffn, c.hidden),
        ],
      });
    }
  }
  if (c.arch === 'phi') {
    return {
      embedding: 'model.embed_tokens.weight',
      finalNorm: 'model.final_layernorm',
      lmHeadWeight: c.tiedLmHead ? 'model.embed_tokens.weight' : 'lm_head.weight',
      lmHeadBias: c.lmHeadBias ? 'lm_head.bias' : null,
      layers,
    };
  }
  return {
    embedding: 'transformer.word_embeddings.weight',
    finalNorm: 'transformer.ln_f',
    lmHeadWeight: c.tiedLmHead ? 'transformer.word_embeddings.weight' : 'lm_head.weight',
    lmHeadBias: null,
    layers,
  };
}

/** Every linear module name of the architecture (what "all linear layers" means for LoRA). */
export function allLinearNames(c: ModelConfig): string[] {
  return c.arch === 'phi' ? ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'] : ['query_key_value', 'dense', 'dense_h_to_4h', 'dense_4h_to_h'];
}

/**
 * PEFT's matching: a list matches a module whose path equals an entry or ends with `.<entry>`;
 * a single string is a regular expression that must match the whole path.
 */
export function isTargetModule(path: string, targets: string[] | string): boolean {
  if (typeof targets === 'string') return new RegExp(`^(?:${targets})$`).test(path);
  return targets.some((t) => path === t || path.endsWith(`.${t}`));
}

/** PEFT adapter keys of a module. */
export function loraKeys(path: string): { a: string; b: string } {
  return { a: `base_model.model.${path}.lora_A.weight`, b: `base_model.model.${path}.lora_B.weight` };
}
