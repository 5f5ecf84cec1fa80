/**
 * Byte sources and streaming UTF-8 text: files are read chunk by chunk and never become one
 * string. Decoding checks UTF-8, drops a BOM, and refuses empty and binary files with an error
 * that names where it happened.
 */
import { DatasetError } from './errors';
import type { ByteSource } from './types';

/** The bytes of a source as a sequence of chunks. */
export async function* byteChunks(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield source;
  } else if (source instanceof ArrayBuffer) {
    yield new Uint8Array(source);
  } else if (typeof Blob !== 'undefined' && source instanceof Blob) {
    yield* readStream(source.stream());
  } else if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) {
    yield* readStream(source);
  } else if (Symbol.asyncIterator in source) {
    yield* source;
  } else {
    yield* source as Iterable<Uint8Array>;
  }
}

async function* readStream(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (value.length > 0) yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Signatures of binary formats someone may drop under a text extension. */
const BINARY_MAGIC: [string, number[]][] = [
  ['Parquet', [0x50, 0x41, 0x52, 0x31]],
  ['gzip', [0x1f, 0x8b]],
  ['zip', [0x50, 0x4b, 0x03, 0x04]],
  ['PDF', [0x25, 0x50, 0x44, 0x46]],
  ['PNG', [0x89, 0x50, 0x4e, 0x47]],
];

/** How many leading bytes are checked for NUL (text never holds one; binaries nearly always do). */
const SNIFF_BYTES = 8192;

function binaryKind(head: Uint8Array): string | null {
  if (head.length >= 2 && ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff))) return 'UTF-16';
  for (const [name, magic] of BINARY_MAGIC) {
    if (head.length >= magic.length && magic.every((b, i) => head[i] === b)) return name;
  }
  const n = Math.min(head.length, SNIFF_BYTES);
  for (let i = 0; i < n; i++) if (head[i] === 0) return 'binary';
  return null;
}

/**
 * Index of the first byte that cannot start or continue valid UTF-8 in `bytes`, or -1. A
 * sequence cut by the end of the chunk is not an error (the next chunk completes it).
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) [need, min] = [1, 0x80];
    else if (b >= 0xe0 && b <= 0xef) [need, min] = [2, 0x800];
    else if (b >= 0xf0 && b <= 0xf4) [need, min] = [3, 0x10000];
    else return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return -1;
      const c = bytes[i + k];
      if ((c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

/** Line (1-based) and column (1-based, in characters) after reading `text` from a position. */
export function advancePosition(line: number, column: number, text: string): [number, number] {
  let last = -1;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) {
    line++;
    last = i;
  }
  return last === -1 ? [line, column + text.length] : [line, text.length - last];
}

/**
 * Decoded text of a source, chunk by chunk. Throws DatasetError for an empty file, a binary
 * file, or bytes that are not UTF-8 (naming the line and column where they start).
 */
export async function* textChunks(source: ByteSource, file: string, format: string): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let line = 1;
  let column = 1;
  let first = true;
  let sawText = false;
  let carry = new Uint8Array(0);
  for await (const raw of byteChunks(source)) {
    if (raw.length === 0) continue;
    if (first) {
      first = false;
      const kind = binaryKind(raw);
      if (kind) {
        if (kind === 'UTF-16') throw new DatasetError(file, 1, 1, `${file} is UTF-16 text: re-save it as UTF-8`);
        const what = kind === 'binary' ? 'binary data (NUL bytes)' : `a ${kind} file`;
        throw new DatasetError(file, null, null, `${file} holds ${what}, not ${format} text: check the file or its extension`);
      }
    }
    // Validate only the bytes not yet checked, with an unfinished sequence carried over.
    const bytes = carry.length ? concat(carry, raw) : raw;
    const bad = firstInvalidUtf8(bytes);
    if (bad !== -1) {
      const before = decoder.decode(bytes.subarray(0, bad), { stream: true });
      [line, column] = advancePosition(line, column, before);
      throw new DatasetError(file, line, column, `${file} is not UTF-8 text: byte 0x${bytes[bad].toString(16).padStart(2, '0')} at line ${line}, column ${column}; re-save the file as UTF-8`);
    }
    const cut = incompleteTail(bytes);
    carry = bytes.slice(bytes.length - cut);
    const text = decoder.decode(bytes.subarray(0, bytes.length - cut), { stream: true });
    if (text.length === 0) continue;
    [line, column] = advancePosition(line, column, text);
    if (!sawText && text.trim().length > 0) sawText = true;
    yield text;
  }
  if (carry.length) {
    throw new DatasetError(file, line, column, `${file} is not UTF-8 text: it ends inside a multi-byte character (line ${line}, column ${column})`);
  }
  const rest = decoder.decode();
  if (rest) yield rest;
  if (!sawText) throw new DatasetError(file, null, null, `${file} is empty`);
}

/** Bytes at the end of `bytes` that start a UTF-8 sequence the chunk does not finish. */
function incompleteTail(bytes: Uint8Array): number {
  for (let k = 1; k <= Math.min(3, bytes.length); k++) {
    const b = bytes[bytes.length - k];
    if ((b & 0xc0) === 0x80) continue;
    const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return len > k ? k : 0;
  }
  return 0;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** All bytes of a source in one buffer (for Parquet, whose footer is at the end). */
export async function readAllBytes(source: ByteSource): Promise<Uint8Array> {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of byteChunks(source)) {
    parts.push(c);
    total += c.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
