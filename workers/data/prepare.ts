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
import { checkColumns, formatRowFull, mappedColumns, type FormattedRow, type Segment } from './templates';
import type { DataMapping, Example, ExampleText, PrepareOptions, PreparedDataset, PresetName, Preview, Row, TokenStats } from './types';
import type { TextTokenizer } from '../tokenizer';
import { commonPrefixLength } from '../tokenizer/chat-turns';

export const IGNORE_INDEX = -100;

export interface FormatOptions {
  mapping?: DataMapping;
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
  /** Per row: whether a chat template rendered it, and whether its learned text ends with an end token. */
  formatted: FormattedRow[];
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
  const formatted = rows.map((row, i) => formatRowFull(row, i, options.mapping, options.preset, options.tokenizer ?? null, file));
  return { rows, columns, segments: formatted.map((f) => f.segments), formatted };
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

/**
 * A chat-template rendering into ids and labels. The text is tokenized whole, as the model was
 * trained on it (a SentencePiece tokenizer would otherwise start every piece with a word
 * boundary), with no special tokens added: a BOS the template writes is its only BOS, and
 * `<|im_end|>`-like markers are single special tokens. Each segment's labels start where the
 * ids of the text before it stop being a prefix of the whole; EOS is appended (learned) only
 * when the template closes the last reply with no end token of its own.
 */
export function tokenizeChat(row: FormattedRow, tokenizer: TextTokenizer): Tokenized {
  const text = row.segments.map((s) => s.text).join('');
  const ids = tokenizer.encode(text);
  const labels = new Array<number>(ids.length).fill(IGNORE_INDEX);
  let offset = 0;
  let from = 0;
  for (const s of row.segments) {
    offset += s.text.length;
    const to = offset === text.length ? ids.length : commonPrefixLength(tokenizer.encode(text.slice(0, offset)), ids);
    if (s.learn) for (let k = from; k < to; k++) labels[k] = ids[k];
    from = Math.max(from, to);
  }
  if (!row.closed && ids[ids.length - 1] !== tokenizer.eosTokenId) {
    ids.push(tokenizer.eosTokenId);
    labels.push(tokenizer.eosTokenId);
  }
  return { ids, labels };
}

/** A row's ids and labels, by the tokenization that fits how it was formatted. */
export function tokenizeRow(row: FormattedRow, tokenizer: TextTokenizer): Tokenized {
  return row.chat ? tokenizeChat(row, tokenizer) : tokenizeSegments(row.segments, tokenizer);
}

/** A row as text: its conversation, or its masked start as the prompt and the rest as the completion. */
export function exampleText(row: FormattedRow): ExampleText {
  if (row.messages) return { messages: row.messages.map((m) => ({ role: m.role, content: m.content })) };
  const firstLearned = row.segments.findIndex((s) => s.learn);
  const cut = firstLearned < 0 ? row.segments.length : firstLearned;
  return { prompt: row.segments.slice(0, cut).map((s) => s.text).join(''), completion: row.segments.slice(cut).map((s) => s.text).join('') };
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

export function previewOf(row: FormattedRow, tokenizer: TextTokenizer): Preview {
  const parts = row.segments.filter((s) => s.text !== '').map((s) => ({ text: s.text, learn: s.learn }));
  // The EOS that tokenization appends is part of what is learned.
  const last = parts[parts.length - 1];
  const appendsEos = row.chat ? !row.closed && !last?.text.endsWith(tokenizer.eosToken) : !last?.text.endsWith(tokenizer.eosToken);
  if (appendsEos) {
    if (last?.learn) last.text += tokenizer.eosToken;
    else parts.push({ text: tokenizer.eosToken, learn: true });
  }
  const masked = parts.filter((p) => !p.learn).map((p) => p.text).join('');
  const learned = parts.filter((p) => p.learn).map((p) => p.text).join('');
  const marked = parts.map((p) => (p.learn ? p.text : `⟦${p.text}⟧`)).join('');
  return { masked, learned, marked, parts };
}

export async function prepareDataset(source: Iterable<Row> | AsyncIterable<Row>, options: PrepareOptions): Promise<PreparedDataset> {
  const file = options.file ?? 'dataset';
  const { tokenizer, maxLength } = options;
  if (!(Number.isInteger(maxLength) && maxLength >= 2)) throw new DatasetError(file, null, null, `maximum length must be an integer ≥ 2, got ${maxLength}`);
  const { rows, columns, formatted } = await formatDataset(source, { ...options, file });
  const lengths: number[] = [];
  let truncated = 0;
  let emptyAfterTruncation = 0;
  let labelTokens = 0;
  const examples: Example[] = formatted.map((row) => {
    const { example, length, learned } = exampleOf(row, tokenizer, maxLength);
    lengths.push(length);
    if (length > maxLength) truncated++;
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
  const warnings = lengthWarnings(rows.length, truncated, emptyAfterTruncation, maxLength);
  const tokens = tokenStats(lengths, { truncated, maxLength, labelTokens, emptyAfterTruncation });
  const previewRow = split.train[0] ?? 0;
  return {
    train,
    validation,
    stats: { rows: rows.length, columns, train: train.length, validation: validation.length, tokens, preview: previewOf(formatted[previewRow], tokenizer), warnings },
  };
}

/** A formatted row as a training example cut to `maxLength`, with its full length and learned tokens. */
export function exampleOf(row: FormattedRow, tokenizer: TextTokenizer, maxLength: number): { example: Example; length: number; learned: number } {
  const { ids, labels } = tokenizeRow(row, tokenizer);
  const n = Math.min(ids.length, maxLength);
  const example: Example = { inputIds: Int32Array.from(ids.slice(0, n)), labels: Int32Array.from(labels.slice(0, n)), text: exampleText(row) };
  const learned = example.labels.reduce((c, l) => c + (l !== IGNORE_INDEX ? 1 : 0), 0);
  return { example, length: ids.length, learned };
}

/** What the page is told about truncation. */
export function lengthWarnings(rows: number, truncated: number, emptyAfterTruncation: number, maxLength: number): string[] {
  const warnings: string[] = [];
  if (truncated > 0) warnings.push(`${truncated} of ${rows} examples are longer than ${maxLength} tokens and were truncated`);
  if (emptyAfterTruncation > 0) warnings.push(`${emptyAfterTruncation} examples have no learned tokens left after truncation to ${maxLength} (their prompt fills the length)`);
  return warnings;
}

/** Token-length statistics from every example's length before truncation. */
export function tokenStats(lengths: ArrayLike<number>, counts: Pick<TokenStats, 'truncated' | 'maxLength' | 'labelTokens' | 'emptyAfterTruncation'>): TokenStats {
  const sorted = Float64Array.from(lengths).sort();
  let total = 0;
  for (let i = 0; i < sorted.length; i++) total += sorted[i];
  return {
    mean: total / sorted.length,
    p95: percentile(sorted, 95),
    max: sorted[sorted.length - 1],
    min: sorted[0],
    total,
    ...counts,
    histogram: histogram(sorted),
  };
}

/** prepareDataset with failures as values, for the page. */
export function prepareDatasetResult(source: Iterable<Row> | AsyncIterable<Row>, options: PrepareOptions): Promise<Result<PreparedDataset>> {
  return asResult(options.file ?? 'dataset', () => prepareDataset(source, options));
}
