/**
 * A JSON file holding rows: an array of objects, or an object with one array of objects
 * (`{"data": [...]}`, the first array-valued key). The text is scanned as it streams and
 * only one row's text is held at a time.
 */
import { advancePosition, textChunks } from './bytes';
import { DatasetError } from './errors';
import { locateJsonError } from './json-position';
import { MAX_LINE_CHARS } from './jsonl';
import { setRowLine } from './row-line';
import type { ByteSource, Row } from './types';

export async function* parseJson(source: ByteSource, file: string): AsyncGenerator<Row> {
  // Containers open around the current position ('[' or '{'), outermost first.
  const stack: string[] = [];
  let rowsDepth = -1; // stack length inside the rows array; -1 until it is found
  let rowsClosed = false; // later arrays in a wrapping object are not rows
  let inString = false;
  let escaped = false;
  let done = false; // the outermost value has closed
  let line = 1;
  let column = 1;
  // The row being read: its text so far and where it started.
  let rowParts: string[] | null = null;
  let rowChars = 0;
  let rowLine = 0;
  let rowColumn = 0;
  let rowCount = 0;

  const fail = (l: number, c: number, message: string): never => {
    throw new DatasetError(file, l, c, `${file}:${l}:${c}: ${message}`);
  };

  const finishRow = (): Row => {
    const text = rowParts!.join('');
    rowParts = null;
    rowChars = 0;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      const { offset, message } = locateJsonError(text);
      const [l, c] = advancePosition(rowLine, rowColumn, text.slice(0, offset));
      fail(l, c, `malformed JSON in row ${rowCount + 1}: ${message}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      fail(rowLine, rowColumn, `row ${rowCount + 1} is not a JSON object ({"column": value, ...})`);
    }
    rowCount++;
    return setRowLine(value as Row, rowLine);
  };

  for await (const chunk of textChunks(source, file, 'JSON')) {
    let rowStartInChunk = rowParts ? 0 : -1;
    const rows: Row[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i];
      const at: [number, number] = [line, column];
      if (ch === '\n') {
        line++;
        column = 1;
      } else column++;
      if (inString) {
        if (escaped) escaped = false;
        else if (ch === '\\') escaped = true;
        else if (ch === '"') inString = false;
        continue;
      }
      if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue;
      if (done) {
        const hint = ch === '{' ? ' (one JSON object per line is JSON Lines: name the file .jsonl)' : '';
        fail(at[0], at[1], `unexpected ${JSON.stringify(ch)} after the end of the JSON value${hint}`);
      }
      const directlyInRows = !rowsClosed && stack.length === rowsDepth;
      if (directlyInRows && rowParts === null && ch !== ']' && ch !== ',') {
        rowParts = [];
        rowStartInChunk = i;
        [rowLine, rowColumn] = at;
      }
      if (ch === '"') {
        inString = true;
      } else if (ch === '[' || ch === '{') {
        if (stack.length === 0 && ch === '[') rowsDepth = 1;
        else if (rowsDepth === -1 && ch === '[' && stack.length === 1) rowsDepth = 2;
        stack.push(ch);
      } else if (ch === ']' || ch === '}') {
        const open = stack.pop();
        if (open === undefined || (open === '[') !== (ch === ']')) fail(at[0], at[1], `unexpected ${JSON.stringify(ch)}: brackets do not match`);
        if (!rowsClosed && stack.length === rowsDepth - 1) {
          rowsClosed = true;
          if (rowParts !== null) {
            // The rows array closes: the row before it ends at this bracket.
            (rowParts as string[]).push(chunk.slice(rowStartInChunk, i));
            rows.push(finishRow());
            rowStartInChunk = -1;
          }
        }
        if (stack.length === 0) done = true;
      } else if (ch === ',' && directlyInRows && rowParts !== null) {
        rowParts.push(chunk.slice(rowStartInChunk, i));
        rows.push(finishRow());
        rowStartInChunk = -1;
      } else if (stack.length === 0) {
        fail(at[0], at[1], `a JSON dataset must be an array of rows or an object holding one; found ${JSON.stringify(ch)}`);
      }
    }
    if (rowParts !== null && rowStartInChunk !== -1) {
      (rowParts as string[]).push(chunk.slice(rowStartInChunk));
      rowChars += chunk.length - rowStartInChunk;
      if (rowChars > MAX_LINE_CHARS) fail(rowLine, rowColumn, `row ${rowCount + 1} is longer than ${MAX_LINE_CHARS} characters`);
    }
    yield* rows;
  }
  if (inString) fail(line, column, 'unexpected end of file inside a string');
  if (stack.length > 0) fail(line, column, `unexpected end of file: ${stack.length} bracket(s) still open`);
  if (rowsDepth === -1) throw new DatasetError(file, null, null, `${file}: the JSON object holds no array of rows (expected e.g. {"data": [{...}, ...]})`);
}
