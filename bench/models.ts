/**
 * The models the benchmarks build: the presets' published phi-1_5 and falcon-7b configs (so
 * random weights come in the checkpoints' dtypes), cut to a size. `smoke` also narrows the
 * layers: it only checks the pipeline end to end, and SwiftShader needs minutes per real-width
 * layer. `--layers N` overrides the layer count (e.g. a quicker `full` run on a GPU).
 */
import { parseModelConfig, type ModelConfig } from '../workers/model/config';
import { CausalLM } from '../workers/model/causal-lm';
import { allLinearNames } from '../workers/model/architecture';
import { RandomWeights } from '../workers/model/random-weights';
import { SHADERS } from '../workers/kernels/shader-sources';
import type { Gpu } from '../workers/gpu/runtime';
import { getPreset } from '../workers/load/presets';
import type { BenchSize } from './suite';

export const BENCH_MODELS = ['phi-1_5', 'falcon-7b'] as const;

const SMOKE_WIDTH: Record<string, Partial<ModelConfig>> = {
  phi: { hidden: 128, heads: 2, kvHeads: 2, ffn: 512 },
  falcon: { hidden: 256, heads: 4, ffn: 1024 },
};

export interface ModelCut {
  /** null: every layer. */
  layers: number | null;
  /** null: the real vocabulary. */
  vocab: number | null;
}

export function benchModelConfig(name: string, cut: ModelCut, size: BenchSize, flags: Record<string, string | true>): ModelConfig {
  const base = parseModelConfig(getPreset(name).config, `${name} config`);
  const narrow = size === 'smoke' ? SMOKE_WIDTH[base.arch] : {};
  const layers = Number(flags.layers) > 0 ? Math.min(Number(flags.layers), base.layers) : cut.layers ?? base.layers;
  return { ...base, ...narrow, layers, vocabSize: cut.vocab ?? base.vocabSize };
}

/** A note saying how a non-full size differs from the real models. */
export function cutNote(size: BenchSize, c: ModelConfig, cut: ModelCut): string | null {
  if (size === 'full') return null;
  return `${size} size: ${cut.layers} layer(s), vocabulary ${cut.vocab}; ${size === 'smoke' ? `layer widths narrowed too (hidden ${c.hidden}; a pipeline check only)` : 'the real layer widths'}.`;
}

/**
 * The model every suite measures: random weights (the linear layers as random NF4 codes, so a
 * full-size falcon-7b builds in seconds), NF4 base, LoRA r 16, alpha 32 on every linear layer.
 */
export function loadBenchModel(gpu: Gpu, c: ModelConfig, o: { seed: number; dropout?: number; checkpointing?: boolean; maxPositions?: number }): Promise<CausalLM> {
  return CausalLM.load(gpu, SHADERS, c, new RandomWeights(c, o.seed, undefined, { nf4Linears: true }), {
    mode: 'nf4',
    lora: { settings: { r: 16, alpha: 32, dropout: o.dropout ?? 0, targetModules: allLinearNames(c) }, init: { seed: o.seed } },
    checkpointing: o.checkpointing,
    maxPositions: o.maxPositions,
  });
}
