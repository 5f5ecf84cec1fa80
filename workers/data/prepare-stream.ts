/**
 * Rows into stored training examples as they stream in: each row is mapped, templated and
 * tokenized exactly as `prepareDataset` does (`exampleOf`), then written to the example store a
 * chunk at a time, so memory holds one chunk and a few numbers per row (its length, whether it
 * learns), never the rows or the examples. The split, which needs the row count, is taken
 * afterwards from the count and the seed (`splitIndices`), as `prepareDataset` takes it.
 */
import { detectColumns, getPath } from './columns';
import { DatasetError } from './errors';
import type { ExampleWriter, StoredDataset } from './example-store';
import { exampleOf, lengthWarnings, previewOf, tokenStats, IGNORE_INDEX } from './prepare';
import { rowLine } from './row-line';
import { formatRowFull, mappedColumns } from './templates';
import type { DataMapping, Example, PresetName, Preview, Row } from './types';
import type { TextTokenizer } from '../tokenizer';

/** How many rows list the columns (as `detectColumns` looks at them). */
const COLUMN_ROWS = 200;
/** Rows whose previews are kept: the summary shows the first training row's. */
export const PREVIEW_ROWS = 64;

export interface StreamPrepareOptions {
  mapping?: DataMapping;
  preset?: PresetName;
  tokenizer: TextTokenizer;
  maxLength: number;
  file: string;
  /** The content key it is stored under (`datasetKey`); a function when it is known only once every row was read (a hub dataset's). */
  key: string | (() => string);
  /** Rows prepared so far, now and then. */
  onRows?: (rows: number) => void;
}

/** An example teaches something only if a learned token is left after the shift by one. */
export function exampleLearns(e: Example): boolean {
  for (let i = 1; i < e.labels.length; i++) if (e.labels[i] !== IGNORE_INDEX) return true;
  return false;
}

/** Rows missing a mapped column, counted as they stream (the first few named, as `checkColumns` names them). */
class MissingColumns {
  private readonly missing = new Map<string, { count: number; shown: string[]; firstLine: number | null }>();
  constructor(private readonly columns: string[]) {}

  /** Whether the row has every mapped column. */
  check(row: Row, index: number): boolean {
    let ok = true;
    for (const column of this.columns) {
      const v = getPath(row, column);
      if (v !== undefined && v !== null) continue;
      ok = false;
      let m = this.missing.get(column);
      if (!m) this.missing.set(column, (m = { count: 0, shown: [], firstLine: rowLine(row) }));
      m.count++;
      if (m.shown.length < 5) m.shown.push(`${index + 1}${rowLine(row) !== null ? ` (line ${rowLine(row)})` : ''}`);
    }
    return ok;
  }

  throwIfAny(rows: number, file: string, available: string[]): void {
    for (const column of this.columns) {
      const m = this.missing.get(column);
      if (!m) continue;
      if (m.count === rows) throw new DatasetError(file, null, null, `${file}: no column "${column}"; the columns are: ${available.join(', ')}`);
      const more = m.count > 5 ? ` and ${m.count - 5} more` : '';
      throw new DatasetError(file, m.firstLine, null, `${file}: column "${column}" is missing or null in ${m.count} row(s): row ${m.shown.join(', ')}${more}`);
    }
  }
}

/** Growable typed array (a number per row without a JS array of boxed numbers). */
class Column<T extends Int32Array | Uint8Array> {
  private data: T;
  length = 0;
  constructor(private readonly make: (n: number) => T) {
    this.data = make(1024);
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = this.make(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }
  values(): T {
    return this.data.slice(0, this.length) as T;
  }
}

/** Prepares `rows` into `writer`; on failure what was written is dropped. */
export async function prepareToStore(rows: AsyncIterable<Row>, o: StreamPrepareOptions, writer: ExampleWriter): Promise<StoredDataset> {
  try {
    return await prepareRows(rows, o, writer);
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

async function prepareRows(rows: AsyncIterable<Row>, o: StreamPrepareOptions, writer: ExampleWriter): Promise<StoredDataset> {
  const { file, tokenizer, maxLength } = o;
  if (!(Number.isInteger(maxLength) && maxLength >= 2)) throw new DatasetError(file, null, null, `maximum length must be an integer ≥ 2, got ${maxLength}`);
  const head: Row[] = [];
  let columns: string[] | null = null;
  let missing: MissingColumns | null = null;
  let count = 0;
  let failed = false;
  const lengths = new Column((n) => new Int32Array(n));
  const learns = new Column((n) => new Uint8Array(n));
  const previews: Preview[] = [];
  let truncated = 0;
  let emptyAfterTruncation = 0;
  let labelTokens = 0;

  const take = async (row: Row, index: number) => {
    // Once a row lacks a mapped column the preparation fails; the rest are only counted for the message.
    if (!missing!.check(row, index)) failed = true;
    if (failed) return;
    const formatted = formatRowFull(row, index, o.mapping, o.preset, tokenizer, file);
    const { example, length, learned } = exampleOf(formatted, tokenizer, maxLength);
    lengths.push(length);
    learns.push(exampleLearns(example) ? 1 : 0);
    if (length > maxLength) truncated++;
    if (learned === 0) emptyAfterTruncation++;
    labelTokens += learned;
    if (index < PREVIEW_ROWS) previews.push(previewOf(formatted, tokenizer));
    await writer.add(example);
  };
  const start = () => {
    columns = detectColumns(head);
    if (!o.preset && !o.mapping) throw new DatasetError(file, null, null, `${file}: choose a preset or map the columns; the columns are: ${columns.join(', ')}`);
    missing = new MissingColumns(mappedColumns(o.mapping, o.preset));
  };

  for await (const row of rows) {
    if (columns === null) {
      head.push(row);
      if (head.length < COLUMN_ROWS) continue;
      start();
      for (let i = 0; i < head.length; i++) await take(head[i], i);
      count = head.length;
      head.length = 0;
      continue;
    }
    await take(row, count++);
    if (count % 4096 === 0) o.onRows?.(count);
  }
  if (columns === null) {
    if (head.length === 0) throw new DatasetError(file, null, null, `${file} holds no rows`);
    start();
    for (let i = 0; i < head.length; i++) await take(head[i], i);
    count = head.length;
  }
  missing!.throwIfAny(count, file, columns!);
  o.onRows?.(count);
  const allLengths = lengths.values();
  return writer.finish({
    key: typeof o.key === 'string' ? o.key : o.key(),
    rows: count,
    columns: columns!,
    learns: learns.values(),
    tokens: tokenStats(allLengths, { truncated, maxLength, labelTokens, emptyAfterTruncation }),
    previews,
    warnings: lengthWarnings(count, truncated, emptyAfterTruncation, maxLength),
  });
}
