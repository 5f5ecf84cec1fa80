/** JSON Lines: one JSON object per line, parsed line by line as the text streams in. */
import { textChunks } from './bytes';
import { DatasetError } from './errors';
import { locateJsonError } from './json-position';
import { setRowLine } from './row-line';
import type { ByteSource, Row } from './types';

/** A line longer than this is refused rather than held in memory (a row is never this big). */
export const MAX_LINE_CHARS = 64 * 1024 * 1024;

/** Lines of a text stream with their 1-based numbers (`\n` or `\r\n` endings). */
export async function* numberedLines(chunks: AsyncIterable<string>, file: string): AsyncGenerator<[string, number]> {
  let pending = '';
  let line = 0;
  for await (const chunk of chunks) {
    let start = 0;
    for (let nl = chunk.indexOf('\n'); nl !== -1; nl = chunk.indexOf('\n', start)) {
      const text = pending + chunk.slice(start, nl);
      pending = '';
      start = nl + 1;
      yield [text.endsWith('\r') ? text.slice(0, -1) : text, ++line];
    }
    pending += chunk.slice(start);
    if (pending.length > MAX_LINE_CHARS) throw new DatasetError(file, line + 1, null, `${file}: line ${line + 1} is longer than ${MAX_LINE_CHARS} characters`);
  }
  if (pending.length > 0) yield [pending.endsWith('\r') ? pending.slice(0, -1) : pending, ++line];
}

export async function* parseJsonl(source: ByteSource, file: string): AsyncGenerator<Row> {
  for await (const [text, line] of numberedLines(textChunks(source, file, 'JSON Lines'), file)) {
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      const { offset, message } = locateJsonError(text);
      throw new DatasetError(file, line, offset + 1, `${file}:${line}:${offset + 1}: malformed JSON: ${message}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      const firstChar = text.search(/\S/) + 1;
      throw new DatasetError(file, line, firstChar, `${file}:${line}: each line must be a JSON object ({"column": value, ...}), found ${Array.isArray(value) ? 'an array' : typeof value}`);
    }
    yield setRowLine(value as Row, line);
  }
}
