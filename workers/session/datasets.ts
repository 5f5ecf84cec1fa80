/**
 * Datasets for a run: which template or column mapping turns rows into text, tokenizing and
 * splitting them with the run's length, split and seed, and what the page shows about the
 * result. The studio and the CLI prepare a run's data with the same functions.
 */
import { prepareDataset } from '../data/prepare';
import { PRESETS as DATA_TEMPLATES } from '../data/templates';
import type { Example, PreparedDataset, PresetName, Row } from '../data/types';
import type { ColumnMapping, DatasetSummary, ModelSource } from '../protocol';
import type { StoredDataset } from '../data/example-store';
import { Sha256 } from '../util/sha256';
import { crc32 } from '../util/crc32';
import type { RunSettings } from '../run/settings';
import type { TextTokenizer } from '../tokenizer';

export const TEMPLATE_NAMES = Object.keys(DATA_TEMPLATES) as PresetName[];

/**
 * The data template for these columns: the preferred one when the file has its columns,
 * otherwise any template whose columns are all present (a counseling CSV under the demo preset).
 */
export function chooseTemplate(columns: string[], preferred: string | null): PresetName | null {
  const ordered = preferred && TEMPLATE_NAMES.includes(preferred as PresetName) ? [preferred as PresetName, ...TEMPLATE_NAMES.filter((n) => n !== preferred)] : TEMPLATE_NAMES;
  return ordered.find((name) => Object.values(DATA_TEMPLATES[name].columns).every((c) => columns.includes(c))) ?? null;
}

/** The columns a template reads, as the mapping the page shows. */
export function templateMapping(template: PresetName | null): ColumnMapping | null {
  if (!template) return null;
  const { prompt, response } = DATA_TEMPLATES[template].columns;
  return { kind: 'prompt-response', prompt, response };
}

/** A first guess at the mapping from common column names; the person can change it. */
export function guessMapping(columns: string[]): ColumnMapping | null {
  const find = (...names: string[]) => columns.find((c) => names.includes(c.toLowerCase()));
  const messages = find('messages', 'conversations');
  if (messages) return { kind: 'messages', messages };
  const prompt = find('prompt', 'instruction', 'question', 'context', 'input');
  const response = find('response', 'reference_code', 'completion', 'answer', 'output');
  if (prompt && response) return { kind: 'prompt-response', prompt, response };
  const text = find('text', 'content');
  return text ? { kind: 'text', text } : null;
}

/** How rows become text: a template, or an explicit mapping (a mapping wins). */
export interface RowFormat {
  template: PresetName | null;
  mapping: ColumnMapping | null;
}

/** The run settings that shape its data. */
export type DataSettings = Pick<RunSettings, 'seqLength' | 'validationFraction' | 'seed'>;

/** Tokenizes and splits rows with the run's sequence length, validation fraction and seed. */
export function prepareForRun(rows: Row[] | AsyncIterable<Row>, format: RowFormat, tokenizer: TextTokenizer, settings: DataSettings, file: string): Promise<PreparedDataset> {
  return prepareDataset(rows, {
    preset: format.mapping ? undefined : (format.template ?? undefined),
    mapping: format.mapping ?? undefined,
    tokenizer,
    maxLength: settings.seqLength,
    validationFraction: settings.validationFraction,
    seed: settings.seed,
    file,
  });
}

/** Whether the run's prepared data was made with these settings (else it is tokenized again). */
export function preparedWith(prepared: DataSettings, s: DataSettings): boolean {
  return prepared.seqLength === s.seqLength && prepared.validationFraction === s.validationFraction && prepared.seed === s.seed;
}

/** An example teaches something only if a learned token is left after the shift by one. */
export function learns(e: Example): boolean {
  return e.labels.some((l, i) => i > 0 && l !== -100);
}

/** What the Data section shows about a prepared dataset. */
export function datasetSummary(file: string, columns: string[], format: RowFormat, data: PreparedDataset): DatasetSummary {
  const { stats } = data;
  return {
    file,
    rows: stats.rows,
    columns,
    mapping: format.mapping ?? templateMapping(format.template),
    template: format.template,
    train: stats.train,
    validation: stats.validation,
    tokens: stats.tokens,
    preview: stats.preview ? { masked: stats.preview.masked, learned: stats.preview.learned, parts: stats.preview.parts } : null,
    warnings: stats.warnings,
  };
}

/** The SHA-256 (the stored dataset's content) and crc32 (the model card's fingerprint) of a file, read a slice at a time. */
export async function blobDigest(blob: Blob): Promise<{ sha256: string; crc32: number }> {
  const sha = new Sha256();
  let crc = 0;
  const step = 8 << 20;
  for (let at = 0; at < blob.size; at += step) {
    const bytes = new Uint8Array(await blob.slice(at, at + step).arrayBuffer());
    sha.update(bytes);
    crc = crc32(bytes, crc);
  }
  return { sha256: sha.hex(), crc32: crc };
}

/**
 * What tells tokenizers apart for a stored dataset's key: the model it came with, its
 * vocabulary size and special ids, and how it encodes a probe text.
 */
export function tokenizerFingerprint(model: ModelSource, tokenizer: TextTokenizer): string {
  const id = model.kind === 'preset' ? `preset:${model.name}@${model.revision ?? ''}` : model.kind === 'hub' ? `hub:${model.id}@${model.revision ?? ''}` : `local:${model.files.map((f) => `${f.name}:${f.size}:${f.lastModified}`).join(',')}`;
  const probe = tokenizer.encode('The quick brown fox: def f(x):\n    return x ** 2  # ünïcödé 数据');
  return JSON.stringify({ id, vocab: tokenizer.vocabSize, eos: tokenizer.eosTokenId, pad: tokenizer.padTokenId, chat: tokenizer.hasChatTemplate, probe });
}

/** `head` (rows already read) followed by the rest of `rest`, one iterable. */
export async function* prepend<T>(head: readonly T[], rest: AsyncIterator<T>): AsyncGenerator<T> {
  yield* head;
  try {
    for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value;
  } finally {
    await rest.return?.();
  }
}

/** Reads up to `n` rows from `rows`, leaving the iterator open for the rest. */
export async function headOf<T>(rows: AsyncIterator<T>, n: number): Promise<{ head: T[]; ended: boolean }> {
  const head: T[] = [];
  while (head.length < n) {
    const r = await rows.next();
    if (r.done) return { head, ended: true };
    head.push(r.value);
  }
  return { head, ended: false };
}

/** What the Data section shows about a stored dataset with this split. */
export function storedSummary(file: string, format: RowFormat, d: StoredDataset, split: { train: number[]; validation: number[] }): DatasetSummary {
  const preview = d.previews[split.train[0] ?? 0] ?? null;
  return {
    file,
    rows: d.rows,
    columns: d.columns,
    mapping: format.mapping ?? templateMapping(format.template),
    template: format.template,
    train: split.train.length,
    validation: split.validation.length,
    tokens: d.tokens,
    preview: preview ? { masked: preview.masked, learned: preview.learned, parts: preview.parts } : null,
    warnings: d.warnings,
  };
}
