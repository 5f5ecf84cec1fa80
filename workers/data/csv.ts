/**
 * CSV and TSV per RFC 4180: a header row, fields separated by `,` (or tab), quoted fields may
 * hold separators, doubled quotes and line breaks; CRLF or LF endings; a BOM is dropped.
 * Parsed as the text streams in; each row is yielded when it ends.
 */
import { advancePosition, textChunks } from './bytes';
import { DatasetError } from './errors';
import { MAX_LINE_CHARS } from './jsonl';
import { setRowLine } from './row-line';
import type { ByteSource, Row } from './types';

export async function* parseDelimited(source: ByteSource, file: string, delimiter: ',' | '\t'): AsyncGenerator<Row> {
  const format = delimiter === ',' ? 'CSV' : 'TSV';
  let header: string[] | null = null;
  let fields: string[] = [];
  let field = '';
  let quoted = false; // inside a quoted field
  let quotePending = false; // a chunk ended on a quote inside a quoted field
  let afterQuote = false; // a quoted field has closed; only a separator or line end may follow
  let fieldStarted = false; // the current row has any content
  let skipLf = false; // a '\r' ended the last line; a '\n' right after belongs to it
  let line = 1;
  let column = 1;
  let rowLine = 1;
  let quoteLine = 0;
  let quoteColumn = 0;

  const endRow = (): Row | null => {
    fields.push(field);
    const cells = fields;
    fields = [];
    field = '';
    afterQuote = false;
    fieldStarted = false;
    if (cells.length === 1 && cells[0] === '') return null; // blank line
    if (header === null) {
      header = cells.map((name, i) => name.trim() || `column_${i + 1}`);
      const seen = new Set<string>();
      for (const name of header) {
        if (seen.has(name)) throw new DatasetError(file, rowLine, null, `${file}:${rowLine}: the header names column "${name}" twice`);
        seen.add(name);
      }
      return null;
    }
    if (cells.length !== header.length) {
      throw new DatasetError(file, rowLine, null, `${file}:${rowLine}: row has ${cells.length} fields but the header has ${header.length} (${format} fields holding '${delimiter === ',' ? ',' : '\\t'}' or line breaks must be in "quotes")`);
    }
    const row: Row = {};
    header.forEach((name, i) => (row[name] = cells[i]));
    return setRowLine(row, rowLine);
  };

  for await (const chunk of textChunks(source, file, format)) {
    const rows: Row[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (quotePending) {
        // The previous chunk ended on a quote inside a quoted field: "" or the field's end.
        quotePending = false;
        if (chunk[i] === '"') {
          field += '"';
          i++;
          column++;
          continue;
        }
        quoted = false;
        afterQuote = true;
      }
      if (quoted) {
        // Copy everything up to the next quote in one step.
        const q = chunk.indexOf('"', i);
        const end = q === -1 ? chunk.length : q;
        const piece = chunk.slice(i, end);
        field += piece;
        [line, column] = advancePosition(line, column, piece);
        if (q === -1) break;
        column++;
        if (q + 1 >= chunk.length) {
          quotePending = true;
          i = q + 1;
        } else if (chunk[q + 1] === '"') {
          field += '"';
          column++;
          i = q + 2;
        } else {
          quoted = false;
          afterQuote = true;
          i = q + 1;
        }
        continue;
      }
      const ch = chunk[i];
      if (skipLf) {
        skipLf = false;
        if (ch === '\n') {
          i++;
          continue;
        }
      }
      if (ch === delimiter) {
        fields.push(field);
        field = '';
        afterQuote = false;
        fieldStarted = true;
        column++;
      } else if (ch === '\n' || ch === '\r') {
        const row = endRow();
        if (row) rows.push(row);
        line++;
        column = 1;
        rowLine = line;
        skipLf = ch === '\r';
      } else if (afterQuote) {
        throw new DatasetError(file, line, column, `${file}:${line}:${column}: unexpected ${JSON.stringify(ch)} after a closing quote (a quote inside a quoted field must be doubled: "")`);
      } else if (ch === '"' && field === '') {
        quoted = true;
        quoteLine = line;
        quoteColumn = column;
        fieldStarted = true;
        column++;
      } else {
        // Unquoted text up to the next separator or line end (a stray quote is kept as text).
        let j = i + 1;
        while (j < chunk.length) {
          const c = chunk[j];
          if (c === delimiter || c === '\n' || c === '\r') break;
          j++;
        }
        field += chunk.slice(i, j);
        column += j - i;
        fieldStarted = true;
        i = j;
        continue;
      }
      i++;
    }
    if (field.length > MAX_LINE_CHARS) throw new DatasetError(file, rowLine, null, `${file}:${rowLine}: a field is longer than ${MAX_LINE_CHARS} characters`);
    yield* rows;
  }
  if (quotePending) {
    quoted = false;
    afterQuote = true;
  }
  if (quoted) {
    throw new DatasetError(file, quoteLine, quoteColumn, `${file}:${quoteLine}:${quoteColumn}: unterminated quoted field (the quote opened here never closes)`);
  }
  if (fieldStarted || fields.length > 0 || field !== '') {
    const row = endRow();
    if (row) yield row;
  }
  if (header === null) throw new DatasetError(file, null, null, `${file} is empty`);
}
