/**
 * From a row to training text: the column mapping picks values, the template lays them out,
 * and the result is a list of segments that are either masked (prompt, no loss) or learned.
 */
import { getPath } from './columns';
import { DatasetError } from './errors';
import { rowLine } from './row-line';
import type { ColumnMapping, PresetName, Row } from './types';
import type { ChatMessage, TextTokenizer } from '../tokenizer';

export interface Segment {
  text: string;
  learn: boolean;
}

export interface Preset {
  name: PresetName;
  title: string;
  /** Columns the template reads, by role. */
  columns: Record<string, string>;
  /** Shown next to the preset in the page. */
  note?: string;
  format(values: Record<string, string>): Segment[];
}

export const PRESETS: Record<PresetName, Preset> = {
  ds1000: {
    name: 'ds1000',
    title: 'DS-1000 (data-science code)',
    columns: { prompt: 'prompt', response: 'reference_code', library: 'metadata.library' },
    note: 'DS-1000 has only a test split: a validation part is held out, and scoring DS-1000 after training on it is contaminated.',
    // The question (which ends by opening a <code> block), then the code answer and its closing tag.
    format: (v) => [
      { text: `### Library: ${v.library}\n${v.prompt}`, learn: false },
      { text: `${v.response.trimEnd()}\n</code>`, learn: true },
    ],
  },
  counseling: {
    name: 'counseling',
    title: 'Counseling conversations',
    columns: { prompt: 'Context', response: 'Response' },
    format: (v) => [
      { text: `### Context:\n${v.prompt.trim()}\n### Response:\n`, learn: false },
      { text: v.response.trim(), learn: true },
    ],
  },
};

/** The layout of a plain prompt/response mapping. */
function instructionTemplate(prompt: string, response: string): Segment[] {
  return [
    { text: `### Instruction:\n${prompt.trim()}\n### Response:\n`, learn: false },
    { text: response.trim(), learn: true },
  ];
}

/** Every column a mapping or preset reads. */
export function mappedColumns(mapping: ColumnMapping | undefined, preset: PresetName | undefined): string[] {
  if (preset) return Object.values(PRESETS[preset].columns);
  if (!mapping) return [];
  if (mapping.kind === 'prompt-response') return [mapping.prompt, mapping.response];
  return [mapping.kind === 'text' ? mapping.text : mapping.messages];
}

/** A cell as text: strings as they are, numbers and booleans printed, null/undefined missing. */
function cellText(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

/** Rows (1-based, with their lines) that lack a column, for one error that names them. */
export function checkColumns(rows: readonly Row[], columns: string[], file: string, available: string[]): void {
  for (const column of columns) {
    const missing: number[] = [];
    rows.forEach((row, i) => {
      if (getPath(row, column) === undefined || getPath(row, column) === null) missing.push(i);
    });
    if (missing.length === 0) continue;
    const first = rows[missing[0]];
    if (missing.length === rows.length) {
      throw new DatasetError(file, null, null, `${file}: no column "${column}"; the columns are: ${available.join(', ')}`);
    }
    const shown = missing.slice(0, 5).map((i) => `${i + 1}${rowLine(rows[i]) !== null ? ` (line ${rowLine(rows[i])})` : ''}`);
    const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
    throw new DatasetError(file, rowLine(first), null, `${file}: column "${column}" is missing or null in ${missing.length} row(s): row ${shown.join(', ')}${more}`);
  }
}

/** The segments of one row. Columns must have been checked first (checkColumns). */
export function formatRow(row: Row, index: number, mapping: ColumnMapping | undefined, preset: PresetName | undefined, tokenizer: TextTokenizer | null, file: string): Segment[] {
  if (preset) {
    const p = PRESETS[preset];
    const values: Record<string, string> = {};
    for (const [role, column] of Object.entries(p.columns)) values[role] = cellText(getPath(row, column)) ?? '';
    return p.format(values);
  }
  if (!mapping) throw new DatasetError(file, null, null, 'choose a preset or map the columns (prompt and response, a text column, or a messages column)');
  if (mapping.kind === 'prompt-response') {
    return instructionTemplate(cellText(getPath(row, mapping.prompt)) ?? '', cellText(getPath(row, mapping.response)) ?? '');
  }
  if (mapping.kind === 'text') return [{ text: cellText(getPath(row, mapping.text)) ?? '', learn: true }];
  const messages = toMessages(getPath(row, mapping.messages), row, index, mapping.messages, file);
  if (!tokenizer) return [{ text: messages.map((m) => m.content).join('\n'), learn: true }];
  try {
    return chatSegments(messages, tokenizer);
  } catch (err) {
    // The template's message names the template; the row says where it failed.
    if ((err as Error).name === 'ChatTemplateError') throw new DatasetError(file, rowLine(row), null, `${file}: row ${index + 1}: ${(err as Error).message}`);
    throw err;
  }
}

/** A `messages` cell as chat messages; a JSON string holding the list is accepted too (CSV). */
function toMessages(value: unknown, row: Row, index: number, column: string, file: string): ChatMessage[] {
  let list = value;
  if (typeof list === 'string') {
    try {
      list = JSON.parse(list);
    } catch {
      /* reported below */
    }
  }
  const ok = Array.isArray(list) && list.every((m) => m && typeof m === 'object' && typeof m.role === 'string' && typeof m.content === 'string');
  if (!ok) {
    throw new DatasetError(file, rowLine(row), null, `${file}: row ${index + 1}: column "${column}" must be a list of {"role": ..., "content": ...} messages`);
  }
  return (list as ChatMessage[]).map((m) => ({ role: m.role, content: m.content }));
}

/**
 * A conversation through the chat template, with only the assistant turns learned. Each
 * assistant turn's text is what rendering it adds after the conversation so far with the
 * generation prompt; a template that does not render that way has the whole text learned.
 */
export function chatSegments(messages: ChatMessage[], tokenizer: TextTokenizer): Segment[] {
  const full = tokenizer.applyChatTemplate(messages);
  const segments: Segment[] = [];
  let at = 0;
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const before = tokenizer.applyChatTemplate(messages.slice(0, i), { addGenerationPrompt: true });
    const through = tokenizer.applyChatTemplate(messages.slice(0, i + 1));
    if (!through.startsWith(before) || !full.startsWith(through) || before.length < at) return [{ text: full, learn: true }];
    if (before.length > at) segments.push({ text: full.slice(at, before.length), learn: false });
    segments.push({ text: full.slice(before.length, through.length), learn: true });
    at = through.length;
  }
  if (at < full.length) segments.push({ text: full.slice(at), learn: false });
  return segments;
}
