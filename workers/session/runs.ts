/**
 * A run assembled from its parts: the examples it learns from, the validation batches, the
 * sample prompts, and the trainer wired to the model with the trainer's view of the run
 * settings. The studio and the CLI assemble every run with `assembleRun`, so the same settings,
 * data and seed give the same adapter whichever started it.
 */
import type { Gpu } from '../gpu/runtime';
import { makeBatch } from '../data/batch';
import type { Example, ExampleList, PreparedDataset } from '../data/types';
import type { TrainableCausalLM } from '../model/types';
import { trainerView, type RunSettings } from '../run/settings';
import { ShuffledExampleSource, ShuffledExamples, type BatchSource, type EvalBatches } from '../train/batches';
import { SHADERS } from '../kernels/shader-sources';
import { Trainer, type CheckpointSink, type TrainEvent } from '../train/trainer';
import type { PagingOptions } from '../train/paged-moments';
import type { TextTokenizer } from '../tokenizer';
import { EngineError } from '../errors';
import { ArrayExamples, IndexedExamples } from '../data/example-list';
import type { ExampleStore, StoredDataset } from '../data/example-store';
import { splitIndices } from '../data/split';
import { learns, type DataSettings } from './datasets';

/**
 * The examples a run trains and evaluates on, read by index (`count`, `get`, `slice`, async
 * iteration): a stored dataset's split (the studio) or arrays (the CLI). Exporters read a run's
 * data through the same lists.
 */
export interface RunExamples {
  train: ExampleList;
  validation: ExampleList;
  /** Training examples left out because no learned token survived the sequence length. */
  dropped: number;
}

function noTrainingExample(file: string, seqLength: number): EngineError {
  return new EngineError('invalid-data', `${file}: no training example keeps a learned token at sequence length ${seqLength}; the dataset needs more rows or a longer sequence`, {
    file,
    setting: 'seqLength',
  });
}

/** Examples with no learned token after the shift teach nothing and would make an empty window. */
export function runExamples(data: PreparedDataset, file: string, seqLength: number): RunExamples {
  const train = data.train.filter(learns);
  if (!train.length) throw noTrainingExample(file, seqLength);
  return { train: new ArrayExamples(train), validation: new ArrayExamples(data.validation.filter(learns)), dropped: data.train.length - train.length };
}

/** Row indices of a stored dataset's training and validation parts (the seeded split `prepareDataset` takes). */
export function storedSplit(d: StoredDataset, s: Pick<DataSettings, 'validationFraction' | 'seed'>): { train: number[]; validation: number[] } {
  return splitIndices(d.rows, s.validationFraction, s.seed);
}

/** `runExamples` over a stored dataset: the same examples in the same order, read from storage. */
export function storedRunExamples(store: ExampleStore, d: StoredDataset, s: DataSettings): RunExamples {
  const split = storedSplit(d, s);
  const train = Uint32Array.from(split.train.filter((i) => d.learns[i]));
  if (!train.length) throw noTrainingExample(d.file, s.seqLength);
  const all = store.examples(d);
  return { train: new IndexedExamples(all, train), validation: new IndexedExamples(all, Uint32Array.from(split.validation.filter((i) => d.learns[i]))), dropped: split.train.length - train.length };
}

/** The prompt part (up to `maxTokens` before the first learned label) of up to `count` examples: what samples continue. */
export async function samplePrompts(examples: readonly Example[] | ExampleList, maxTokens = 96, count = 2): Promise<number[][]> {
  const prompts: number[][] = [];
  for await (const e of examples as AsyncIterable<Example> | Iterable<Example>) {
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
  train: Example[] | ExampleList;
  validation: Example[] | ExampleList;
  samplePrompts: number[][];
  checkpoints?: CheckpointSink;
  onEvent?: (event: TrainEvent) => void;
  /** Optimizer moments paged through a GPU budget (the CLI's --optimizer-budget). */
  paging?: PagingOptions;
  /** Tokens that end the sample generations (default: the tokenizer's end token). */
  stopTokenIds?: number[];
}

/**
 * How a run's training examples become micro-batches (workers/train/batches.ts ShuffledExamples):
 * the trainer's feed and a run bundle's data/order.safetensors both take these.
 */
export function runBatching(s: Pick<RunSettings, 'batchSize' | 'seed'>): { microBatchSize: number; seed: number; shuffle: boolean } {
  return { microBatchSize: s.batchSize, seed: s.seed, shuffle: true };
}

export function assembleRun(p: RunParts): Trainer {
  const padId = p.tokenizer.padTokenId;
  const batchSize = p.settings.batchSize;
  const collate = (ex: Example[]) => makeBatch(ex, padId);
  const order = { ...runBatching(p.settings), collate };
  const train: BatchSource = Array.isArray(p.train) ? new ShuffledExamples({ examples: p.train, ...order }) : new ShuffledExampleSource({ examples: p.train as ExampleList, ...order });
  let validation: EvalBatches | ReturnType<typeof makeBatch>[];
  if (Array.isArray(p.validation)) {
    validation = [];
    for (let i = 0; i < p.validation.length; i += batchSize) validation.push(makeBatch(p.validation.slice(i, i + batchSize), padId));
  } else {
    const list = p.validation as ExampleList;
    validation = { count: Math.ceil(list.count / batchSize), batch: async (k) => makeBatch(await list.slice(k * batchSize, (k + 1) * batchSize), padId) };
  }
  return new Trainer(
    {
      gpu: p.gpu,
      model: p.model,
      shaders: SHADERS,
      train,
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
