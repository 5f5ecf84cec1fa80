/**
 * From a row to training text: the column mapping picks values, the template lays them out,
 * and the result is a list of segments that are either masked (prompt, no loss) or learned.
 */
import { getPath } from './columns';
import { DatasetError } from './errors';
import { rowLine } from './row-line';
import type { DataMapping, PresetName, Row } from './types';
import type { ChatMessage, TextTokenizer } from '../tokenizer';
import { renderConversation } from '../tokenizer/chat-turns';

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
export function mappedColumns(mapping: DataMapping | undefined, preset: PresetName | undefined): string[] {
  if (preset) return Object.values(PRESETS[preset].columns);
  if (!mapping) return [];
  if (mapping.kind === 'prompt-response') return [mapping.prompt, mapping.response, ...(mapping.system ? [mapping.system] : [])];
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

/** One row as text: its segments, and how they were made. */
export interface FormattedRow {
  segments: Segment[];
  /** Rendered with a chat template: tokenized as one text, so tokens merge as the model saw them in its own training. */
  chat: boolean;
  /** The learned text already ends with an end token (the template's end-of-turn): no EOS is appended. */
  closed: boolean;
  /** Chat data: the conversation the segments were rendered from. */
  messages?: ChatMessage[];
}

/** The segments of one row. Columns must have been checked first (checkColumns). */
export function formatRow(row: Row, index: number, mapping: DataMapping | undefined, preset: PresetName | undefined, tokenizer: TextTokenizer | null, file: string): Segment[] {
  return formatRowFull(row, index, mapping, preset, tokenizer, file).segments;
}

/** A row's segments, and whether a chat template rendered them. */
export function formatRowFull(row: Row, index: number, mapping: DataMapping | undefined, preset: PresetName | undefined, tokenizer: TextTokenizer | null, file: string): FormattedRow {
  const plain = (segments: Segment[]): FormattedRow => ({ segments, chat: false, closed: false });
  if (preset) {
    const p = PRESETS[preset];
    const values: Record<string, string> = {};
    for (const [role, column] of Object.entries(p.columns)) values[role] = cellText(getPath(row, column)) ?? '';
    return plain(p.format(values));
  }
  if (!mapping) throw new DatasetError(file, null, null, 'choose a preset or map the columns (prompt and response, a text column, or a messages column)');
  if (mapping.kind === 'text') return plain([{ text: cellText(getPath(row, mapping.text)) ?? '', learn: true }]);
  let messages: ChatMessage[];
  if (mapping.kind === 'prompt-response') {
    const prompt = cellText(getPath(row, mapping.prompt)) ?? '';
    const response = cellText(getPath(row, mapping.response)) ?? '';
    // A model with a chat template learns in its own conversation format; others get the plain layout.
    if (!tokenizer?.hasChatTemplate) return plain(instructionTemplate(prompt, response));
    const system = mapping.system ? cellText(getPath(row, mapping.system))?.trim() : undefined;
    messages = [...(system ? [{ role: 'system', content: system }] : []), { role: 'user', content: prompt.trim() }, { role: 'assistant', content: response.trim() }];
  } else {
    messages = toMessages(getPath(row, mapping.messages), row, index, mapping.messages, file);
    if (!tokenizer) return { ...plain([{ text: messages.map((m) => m.content).join('\n'), learn: true }]), messages };
  }
  try {
    return chatRow(messages, tokenizer);
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
 * A conversation through the chat template, with only the assistant turns learned: each reply
 * and the end-of-turn token that closes it (workers/tokenizer/chat-turns.ts locates them).
 */
export function chatSegments(messages: ChatMessage[], tokenizer: TextTokenizer): Segment[] {
  return chatRow(messages, tokenizer).segments;
}

function chatRow(messages: ChatMessage[], tokenizer: TextTokenizer): FormattedRow {
  const { text, spans } = renderConversation(messages, tokenizer);
  const segments: Segment[] = [];
  const push = (part: string, learn: boolean) => {
    if (!part) return;
    const last = segments[segments.length - 1];
    if (last && last.learn === learn) last.text += part;
    else segments.push({ text: part, learn });
  };
  let at = 0;
  for (const span of spans) {
    push(text.slice(at, span.start), false);
    push(text.slice(span.start, span.learnedEnd), true);
    at = span.learnedEnd;
  }
  push(text.slice(at), false);
  const last = spans[spans.length - 1];
  return { segments, chat: true, closed: last !== undefined && last.endOfTurn !== null, messages };
}
