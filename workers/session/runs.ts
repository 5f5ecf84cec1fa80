/**
 * A run assembled from its parts: the examples it learns from, the validation batches, the
 * sample prompts, and the trainer wired to the model with the trainer's view of the run
 * settings. The studio and the CLI assemble every run with `assembleRun`, so the same settings,
 * data and seed give the same adapter whichever started it.
 */
import type { Gpu } from '../gpu/runtime';
import { makeBatch } from '../data/batch';
import type { Example, PreparedDataset } from '../data/types';
import type { TrainableCausalLM } from '../model/types';
import { trainerView, type RunSettings } from '../run/settings';
import { ShuffledExamples } from '../train/batches';
import { SHADERS } from '../kernels/shader-sources';
import { Trainer, type CheckpointSink, type TrainEvent } from '../train/trainer';
import type { PagingOptions } from '../train/paged-moments';
import type { TextTokenizer } from '../tokenizer';
import { EngineError } from '../errors';
import { learns } from './datasets';

/** The examples a run trains and evaluates on. */
export interface RunExamples {
  train: Example[];
  validation: Example[];
  /** Training examples left out because no learned token survived the sequence length. */
  dropped: number;
}

/** Examples with no learned token after the shift teach nothing and would make an empty window. */
export function runExamples(data: PreparedDataset, file: string, seqLength: number): RunExamples {
  const train = data.train.filter(learns);
  if (!train.length) {
    throw new EngineError('invalid-data', `${file}: no training example keeps a learned token at sequence length ${seqLength}; the dataset needs more rows or a longer sequence`, {
      file,
      setting: 'seqLength',
    });
  }
  return { train, validation: data.validation.filter(learns), dropped: data.train.length - train.length };
}

/** The prompt part (up to `maxTokens` before the first learned label) of up to `count` examples: what samples continue. */
export function samplePrompts(examples: Example[], maxTokens = 96, count = 2): number[][] {
  const prompts: number[][] = [];
  for (const e of examples) {
    const firstLearned = e.labels.findIndex((l) => l !== -100);
    if (firstLearned > 0) prompts.push(Array.from(e.inputIds.subarray(Math.max(0, firstLearned - maxTokens), firstLearned)));
    if (prompts.length === count) break;
  }
  return prompts;
}

export interface RunParts {
  gpu: Gpu;
  model: TrainableCausalLM;
  tokenizer: TextTokenizer;
  settings: RunSettings;
  train: Example[];
  validation: Example[];
  samplePrompts: number[][];
  checkpoints?: CheckpointSink;
  onEvent?: (event: TrainEvent) => void;
  /** Optimizer moments paged through a GPU budget (the CLI's --optimizer-budget). */
  paging?: PagingOptions;
  /** Tokens that end the sample generations (default: the tokenizer's end token). */
  stopTokenIds?: number[];
}

export function assembleRun(p: RunParts): Trainer {
  const padId = p.tokenizer.padTokenId;
  const batchSize = p.settings.batchSize;
  const validation = [];
  for (let i = 0; i < p.validation.length; i += batchSize) validation.push(makeBatch(p.validation.slice(i, i + batchSize), padId));
  return new Trainer(
    {
      gpu: p.gpu,
      model: p.model,
      shaders: SHADERS,
      train: new ShuffledExamples({ examples: p.train, microBatchSize: batchSize, seed: p.settings.seed, shuffle: true, collate: (ex) => makeBatch(ex, padId) }),
      validation,
      samplePrompts: p.samplePrompts,
      eosTokenIds: p.stopTokenIds ?? [p.tokenizer.eosTokenId],
      decode: (ids) => p.tokenizer.decode(ids),
      checkpoints: p.checkpoints,
      onEvent: p.onEvent,
    },
    { ...trainerView(p.settings), paging: p.paging },
  );
}
