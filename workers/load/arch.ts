/**
 * What the loader needs to know about a model from its config.json: sizes, the linear layers
 * of a block and the tensor names around them. Parsed and validated by the engine's own
 * config reader (workers/model/config.ts), so the loader accepts exactly what the engine runs
 * and its errors name the same file and key.
 */
import { ConfigError, parseModelConfig, type Architecture, type ModelConfig } from '../model/config';
import { architectureNames } from '../model/architecture';
import { checkConfigBounds } from '../model/config-bounds';
import type { HfConfig } from './presets';

export { ConfigError };

export type Family = Architecture;

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
  /** `<path>.weight` of every block linear layer: what quantize-on-load turns into NF4. */
  linearWeights: Set<string>;
  /** Parameters of the whole model. */
  parameters: number;
}

export function archFromModelConfig(c: ModelConfig): ArchShape {
  const names = architectureNames(c);
  const first = names.layers[0];
  const linears = first.linears.map((s) => ({ module: s.name, path: s.path.slice(first.prefix.length), inFeatures: s.inFeatures, outFeatures: s.outFeatures, bias: s.bias }));
  const h = c.hidden;
  let perBlock = 0;
  for (const n of first.norms) perBlock += n.bias ? 2 * h : h;
  for (const l of linears) perBlock += l.inFeatures * l.outFeatures + (l.bias ? l.outFeatures : 0);
  const head = (c.tiedLmHead ? 0 : c.vocabSize * h) + (c.lmHeadBias ? c.vocabSize : 0) + (names.finalNorm.bias ? 2 * h : h);
  return {
    family: c.arch,
    hidden: h,
    layers: c.layers,
    heads: c.heads,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    rotaryDim: c.rotaryDim,
    intermediate: c.ffn,
    vocab: c.vocabSize,
    maxPositions: c.maxPositions,
    linears,
    tiedLmHead: c.tiedLmHead,
    lmHeadBias: c.lmHeadBias,
    blockPrefix: (i) => names.layers[i].prefix,
    embeddingName: names.embedding,
    lmHeadName: names.lmHeadWeight,
    linearWeights: new Set(names.layers.flatMap((l) => l.linears.map((s) => `${s.path}.weight`))),
    parameters: c.vocabSize * h + c.layers * perBlock + head,
  };
}

export function archFromConfig(config: HfConfig, file = 'config.json'): ArchShape {
  const parsed = parseModelConfig(config, file);
  // Before the loader lists a name per block or sizes a buffer.
  checkConfigBounds(parsed, file);
  return archFromModelConfig(parsed);
}

/** Tensors that quantize-on-load turns into NF4: the 2-D weights of the blocks' linear layers. */
export function isQuantizedLinear(arch: ArchShape, name: string): boolean {
  return arch.linearWeights.has(name);
}
