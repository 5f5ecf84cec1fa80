/**
 * Datasets for a run: which template or column mapping turns rows into text, tokenizing and
 * splitting them with the run's length, split and seed, and what the page shows about the
 * result. The studio and the CLI prepare a run's data with the same functions.
 */
import { prepareDataset } from '../data/prepare';
import { PRESETS as DATA_TEMPLATES } from '../data/templates';
import type { Example, PreparedDataset, PresetName, Row } from '../data/types';
import type { ColumnMapping, DatasetSummary } from '../protocol';
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
