/**
 * The data pipeline's shared shapes: what parsers yield, how columns map to the text a model
 * learns, and the prepared examples (batched into the model's `Batch`, workers/model/types.ts).
 */
import type { TextTokenizer } from '../tokenizer';
import type { ColumnMapping } from '../protocol';

/** One dataset row as parsed: CSV cells are strings, JSON/Parquet values keep their types. */
export type Row = Record<string, unknown>;

export type DataFormat = 'jsonl' | 'json' | 'csv' | 'tsv' | 'parquet';

/** Bytes of one file, in any of the forms a page, a worker or a test holds them. */
export type ByteSource = ReadableStream<Uint8Array> | Blob | Uint8Array | ArrayBuffer | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * Which columns make the training text (declared in workers/protocol.ts: the page sends it).
 * Column names may be dotted paths into nested values (`metadata.library`).
 * - `prompt-response`: prompt tokens are masked (label -100), the response is learned.
 * - `text`: the whole text is learned.
 * - `messages`: a `[{role, content}]` column rendered with the tokenizer's chat template;
 *   only assistant turns are learned. With a chat template, `prompt-response` is rendered the
 *   same way, as a user turn and an assistant turn.
 */
export type { ColumnMapping };

/**
 * A mapping as the data pipeline takes it: the page's ColumnMapping, and for prompt/response an
 * optional system column (the system turn of a chat-template rendering; unused otherwise).
 */
export type DataMapping = Exclude<ColumnMapping, { kind: 'prompt-response' }> | (Extract<ColumnMapping, { kind: 'prompt-response' }> & { system?: string });

export type PresetName = 'ds1000' | 'counseling';

/** One training sequence. `labels[i]` is -100 where no loss is taken (prompt, padding). */
export interface Example {
  inputIds: Int32Array;
  labels: Int32Array;
  /** The row it was made from, as text (a run bundle's data/*.jsonl); absent for packed examples. */
  text?: ExampleText;
}

/**
 * A row as text for other tools: the prompt as laid out (masked) and the completion (learned),
 * or the conversation of chat data.
 */
export type ExampleText = { prompt: string; completion: string } | { messages: { role: string; content: string }[] };

export interface PrepareOptions {
  /** Either a mapping or a preset (a preset brings its own mapping and template). */
  mapping?: DataMapping;
  preset?: PresetName;
  tokenizer: TextTokenizer;
  /** Sequences longer than this (EOS included) are cut; counted in `stats.truncated`. */
  maxLength: number;
  /** Fraction of rows held out for validation (default 0.1; at least one row when rows ≥ 2). */
  validationFraction?: number;
  /** Seed of the train/validation shuffle (default 0): the same seed gives the same split. */
  seed?: number;
  /** Concatenate short examples (each ending with EOS) into sequences up to maxLength. */
  packing?: boolean;
  /** The file name errors name. */
  file?: string;
}

export interface TokenStats {
  /** Tokens per example before truncation, EOS included. */
  mean: number;
  p95: number;
  max: number;
  min: number;
  total: number;
  /** Examples longer than maxLength (cut to it). */
  truncated: number;
  maxLength: number;
  /** Learned (label ≠ -100) tokens after truncation, over all examples. */
  labelTokens: number;
  /** Examples whose whole response was cut away by truncation (they teach nothing). */
  emptyAfterTruncation: number;
  histogram: Histogram;
}

export interface Histogram {
  /** Bin i holds lengths in [edges[i], edges[i+1]); edges run from the shortest length past the longest. */
  edges: number[];
  counts: number[];
}

/** One formatted example for the page: the masked part (no loss) and the learned part. */
export interface Preview {
  /** Every masked part, joined. */
  masked: string;
  /** Every learned part, joined (a conversation has one per assistant turn). */
  learned: string;
  /** The whole text with each masked part marked: `⟦masked⟧learned⟦masked⟧learned`. */
  marked: string;
  /** The text in order, part by part, as the page shows it. */
  parts: PreviewPart[];
}

export interface PreviewPart {
  text: string;
  learn: boolean;
}

export interface DatasetStats {
  rows: number;
  columns: string[];
  train: number;
  validation: number;
  tokens: TokenStats;
  preview: Preview | null;
  warnings: string[];
}

export interface PreparedDataset {
  train: Example[];
  validation: Example[];
  stats: DatasetStats;
}

/**
 * Examples read by index without holding them all: a prepared dataset in the browser's storage
 * (workers/data/example-store.ts), a subset of one (a run's training split), or an array. The
 * trainer, the validation batches, the sample prompts and exporters read a run's data through it.
 */
export interface ExampleList {
  readonly count: number;
  get(index: number): Promise<Example>;
  /** Examples `start` (inclusive) to `end` (exclusive, default: the end), in order. */
  slice(start: number, end?: number): Promise<Example[]>;
  /** Examples at these indices, in the order given. */
  getMany(indices: readonly number[]): Promise<Example[]>;
  /** Every example in order, a slice at a time. */
  [Symbol.asyncIterator](): AsyncIterator<Example>;
}
