/**
 * Rows into training examples: map and template each row, tokenize with completion-only labels
 * (-100 on the prompt, the response and an appended EOS learned), truncate, split seeded into
 * train and validation, optionally pack, and measure.
 */
import { detectColumns } from './columns';
import { asResult, DatasetError, type Result } from './errors';
import { collectRows } from './source';
import { splitIndices } from './split';
import { histogram, percentile } from './stats';
import { checkColumns, formatRow, mappedColumns, type Segment } from './templates';
import type { ColumnMapping, Example, PrepareOptions, PreparedDataset, PresetName, Preview, Row, TokenStats } from './types';
import type { TextTokenizer } from '../tokenizer';

export const IGNORE_INDEX = -100;

export interface FormatOptions {
  mapping?: ColumnMapping;
  preset?: PresetName;
  /** Needed for a `messages` mapping (its chat template); otherwise optional. */
  tokenizer?: TextTokenizer | null;
  file?: string;
}

export interface FormattedDataset {
  rows: Row[];
  columns: string[];
  /** Per row: its text as masked and learned segments. */
  segments: Segment[][];
}

/** Rows mapped and templated; a missing mapped column is an error naming the rows. */
export async function formatDataset(source: Iterable<Row> | AsyncIterable<Row>, options: FormatOptions): Promise<FormattedDataset> {
  const file = options.file ?? 'dataset';
  const rows = await collectRows(source);
  if (rows.length === 0) throw new DatasetError(file, null, null, `${file} holds no rows`);
  const columns = detectColumns(rows);
  if (!options.preset && !options.mapping) {
    throw new DatasetError(file, null, null, `${file}: choose a preset or map the columns; the columns are: ${columns.join(', ')}`);
  }
  checkColumns(rows, mappedColumns(options.mapping, options.preset), file, columns);
  const segments = rows.map((row, i) => formatRow(row, i, options.mapping, options.preset, options.tokenizer ?? null, file));
  return { rows, columns, segments };
}

interface Tokenized {
  ids: number[];
  labels: number[];
}

/** Segments into ids and labels; EOS is appended (learned) unless the text already ends with it. */
export function tokenizeSegments(segments: readonly Segment[], tokenizer: TextTokenizer): Tokenized {
  const ids: number[] = [];
  const labels: number[] = [];
  for (const s of segments) {
    if (s.text === '') continue;
    for (const id of tokenizer.encode(s.text)) {
      ids.push(id);
      labels.push(s.learn ? id : IGNORE_INDEX);
    }
  }
  if (ids[ids.length - 1] !== tokenizer.eosTokenId) {
    ids.push(tokenizer.eosTokenId);
    labels.push(tokenizer.eosTokenId);
  }
  return { ids, labels };
}

/** Greedy packing in order: examples are concatenated while the sum fits in maxLength. */
export function packExamples(examples: readonly Example[], maxLength: number): Example[] {
  const packed: Example[] = [];
  let ids: number[] = [];
  let labels: number[] = [];
  const flush = () => {
    if (ids.length) packed.push({ inputIds: Int32Array.from(ids), labels: Int32Array.from(labels) });
    ids = [];
    labels = [];
  };
  for (const e of examples) {
    if (ids.length + e.inputIds.length > maxLength) flush();
    ids.push(...e.inputIds);
    labels.push(...e.labels);
  }
  flush();
  return packed;
}

function previewOf(segments: readonly Segment[], tokenizer: TextTokenizer): Preview {
  let masked = '';
  let learned = '';
  let marked = '';
  for (const s of segments) {
    if (s.learn) learned += s.text;
    else masked += s.text;
    marked += s.learn ? s.text : `⟦${s.text}⟧`;
  }
  const last = segments[segments.length - 1];
  if (!last?.text.endsWith(tokenizer.eosToken)) {
    learned += tokenizer.eosToken;
    marked += tokenizer.eosToken;
  }
  return { masked, learned, marked };
}

export async function prepareDataset(source: Iterable<Row> | AsyncIterable<Row>, options: PrepareOptions): Promise<PreparedDataset> {
  const file = options.file ?? 'dataset';
  const { tokenizer, maxLength } = options;
  if (!(Number.isInteger(maxLength) && maxLength >= 2)) throw new DatasetError(file, null, null, `maximum length must be an integer ≥ 2, got ${maxLength}`);
  const { rows, columns, segments } = await formatDataset(source, { ...options, file });
  const lengths: number[] = [];
  let truncated = 0;
  let emptyAfterTruncation = 0;
  let labelTokens = 0;
  const examples: Example[] = segments.map((segs) => {
    const { ids, labels } = tokenizeSegments(segs, tokenizer);
    lengths.push(ids.length);
    if (ids.length > maxLength) truncated++;
    const n = Math.min(ids.length, maxLength);
    const example = { inputIds: Int32Array.from(ids.slice(0, n)), labels: Int32Array.from(labels.slice(0, n)) };
    const learned = example.labels.reduce((c, l) => c + (l !== IGNORE_INDEX ? 1 : 0), 0);
    if (learned === 0) emptyAfterTruncation++;
    labelTokens += learned;
    return example;
  });
  const split = splitIndices(rows.length, options.validationFraction ?? 0.1, options.seed ?? 0);
  let train = split.train.map((i) => examples[i]);
  let validation = split.validation.map((i) => examples[i]);
  if (options.packing) {
    train = packExamples(train, maxLength);
    validation = packExamples(validation, maxLength);
  }
  const warnings: string[] = [];
  if (truncated > 0) warnings.push(`${truncated} of ${rows.length} examples are longer than ${maxLength} tokens and were truncated`);
  if (emptyAfterTruncation > 0) warnings.push(`${emptyAfterTruncation} examples have no learned tokens left after truncation to ${maxLength} (their prompt fills the length)`);
  const sorted = [...lengths].sort((a, b) => a - b);
  const total = lengths.reduce((a, b) => a + b, 0);
  const tokens: TokenStats = {
    mean: total / lengths.length,
    p95: percentile(sorted, 95),
    max: sorted[sorted.length - 1],
    min: sorted[0],
    total,
    truncated,
    maxLength,
    labelTokens,
    emptyAfterTruncation,
    histogram: histogram(lengths),
  };
  const previewRow = split.train[0] ?? 0;
  return {
    train,
    validation,
    stats: { rows: rows.length, columns, train: train.length, validation: validation.length, tokens, preview: previewOf(segments[previewRow], tokenizer), warnings },
  };
}

/** prepareDataset with failures as values, for the page. */
export function prepareDatasetResult(source: Iterable<Row> | AsyncIterable<Row>, options: PrepareOptions): Promise<Result<PreparedDataset>> {
  return asResult(options.file ?? 'dataset', () => prepareDataset(source, options));
}
