/**
 * Parquet through hyparquet, one row group at a time. Nested structs come back as objects
 * (reachable by dotted paths), lists as arrays. A Blob/File or URL is read by byte ranges, so
 * only the footer and the current row group are in memory.
 */
import { parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { readAllBytes } from './bytes';
import { DatasetError } from './errors';
import type { ByteSource, Row } from './types';

const MAGIC = [0x50, 0x41, 0x52, 0x31]; // "PAR1" at both ends of every Parquet file

/** A random-access view of a source: Blobs are sliced lazily, streams are gathered once. */
export async function asyncBufferOf(source: ByteSource | AsyncBuffer): Promise<AsyncBuffer> {
  if (typeof (source as AsyncBuffer).slice === 'function' && typeof (source as AsyncBuffer).byteLength === 'number' && !(source instanceof Uint8Array) && !(source instanceof ArrayBuffer) && !(typeof Blob !== 'undefined' && source instanceof Blob)) {
    return source as AsyncBuffer;
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    return { byteLength: source.size, slice: (start, end) => source.slice(start, end).arrayBuffer() };
  }
  const bytes = await readAllBytes(source as ByteSource);
  return { byteLength: bytes.byteLength, slice: (start, end) => bytes.slice(start, end).buffer };
}

async function checkMagic(buffer: AsyncBuffer, file: string): Promise<void> {
  if (buffer.byteLength === 0) throw new DatasetError(file, null, null, `${file} is empty`);
  const tooShort = buffer.byteLength < 12;
  const head = tooShort ? new Uint8Array(0) : new Uint8Array(await buffer.slice(0, 4));
  const tail = tooShort ? new Uint8Array(0) : new Uint8Array(await buffer.slice(buffer.byteLength - 4));
  if (tooShort || !MAGIC.every((b, i) => head[i] === b && tail[i] === b)) {
    throw new DatasetError(file, null, null, `${file} is not a Parquet file (no PAR1 signature at its start and end)`);
  }
}

export async function* parseParquet(source: ByteSource | AsyncBuffer, file: string): AsyncGenerator<Row> {
  const buffer = await asyncBufferOf(source);
  await checkMagic(buffer, file);
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (err) {
    throw new DatasetError(file, null, null, `${file}: cannot read the Parquet footer: ${(err as Error).message}`);
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    let rows: Row[];
    try {
      rows = (await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd })) as Row[];
    } catch (err) {
      throw new DatasetError(file, null, null, `${file}: cannot read rows ${rowStart + 1}–${rowEnd}: ${(err as Error).message}`);
    }
    for (const row of rows) yield normalizeValues(row) as Row;
    rowStart = rowEnd;
  }
}

/** 64-bit integers arrive as BigInt; rows hold numbers (exact up to 2^53) so JSON can carry them. */
function normalizeValues(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(normalizeValues);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = normalizeValues(v);
    return out;
  }
  return value;
}
