/** Picks the parser for a file by its extension and yields its rows. */
import { parseDelimited } from './csv';
import { DatasetError } from './errors';
import { parseJson } from './json';
import { parseJsonl } from './jsonl';
import { parseParquet } from './parquet';
import { setRowLine } from './row-line';
import type { ByteSource, DataFormat, Row } from './types';
import { ownEntry } from '../util/own';

const EXTENSIONS: Record<string, DataFormat> = {
  jsonl: 'jsonl',
  ndjson: 'jsonl',
  json: 'json',
  csv: 'csv',
  tsv: 'tsv',
  tab: 'tsv',
  parquet: 'parquet',
  pq: 'parquet',
};

export function formatFromName(file: string): DataFormat | null {
  const base = file.split(/[\\/]/).pop() ?? file;
  const dot = base.lastIndexOf('.');
  return dot === -1 ? null : (ownEntry(EXTENSIONS, base.slice(dot + 1).toLowerCase()) ?? null);
}

/** Rows of a file; `format` overrides the extension. Throws DatasetError on bad input. */
export async function* readRows(source: ByteSource, file: string, format: DataFormat | null = formatFromName(file)): AsyncGenerator<Row> {
  if (format === null) {
    throw new DatasetError(file, null, null, `${file}: unknown dataset format; use .jsonl, .json, .csv, .tsv or .parquet`);
  }
  if (format === 'parquet') {
    let index = 0;
    for await (const row of parseParquet(source, file)) {
      yield setRowLine(row, ++index);
    }
    return;
  }
  const parser = format === 'jsonl' ? parseJsonl(source, file) : format === 'json' ? parseJson(source, file) : parseDelimited(source, file, format === 'csv' ? ',' : '\t');
  yield* parser;
}

/** All rows of a file in memory (rows, not the file's text), for the split and statistics. */
export async function collectRows(rows: AsyncIterable<Row> | Iterable<Row>): Promise<Row[]> {
  const out: Row[] = [];
  for await (const row of rows) out.push(row);
  return out;
}
