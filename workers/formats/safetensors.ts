/**
 * safetensors: an 8-byte little-endian header length, a JSON header of
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`, then raw
 * little-endian data. The header is parsed and validated on its own, so a reader can fetch
 * single tensors with Range requests or File.slice without reading the whole file.
 */
import { bf16ArrayToF32, f16ArrayToF32 } from './float16';
import { hasOwnKey } from '../util/own';

export type DType = 'F32' | 'F16' | 'BF16' | 'U8' | 'I8' | 'I32' | 'I64' | 'BOOL' | 'F64' | 'I16' | 'U16' | 'U32';

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  U8: 1,
  I8: 1,
  BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offsets in the file (header included). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Bytes before the data section: 8 + header JSON length. */
  dataStart: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    message: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor ? ` (tensor "${tensor}")` : ''}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** Header size limit: real files stay far below; a larger value means a corrupt or hostile file. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Reads the 8-byte prefix and returns the header JSON length. */
export function headerLength(prefix: Uint8Array, file: string): number {
  if (prefix.byteLength < 8) throw new SafetensorsError(file, `file is ${prefix.byteLength} bytes, too short for a safetensors header`);
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n === 0 || n > MAX_HEADER_BYTES) throw new SafetensorsError(file, `header length ${n} is not plausible (corrupt or not a safetensors file)`);
  return n;
}

/** Parses and validates the header. `headerBytes` holds the JSON; `fileSize` lets us reject offsets beyond the end. */
export function parseHeader(headerBytes: Uint8Array, file: string, fileSize?: number): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw new SafetensorsError(file, `header is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new SafetensorsError(file, 'header is not a JSON object');
  const dataStart = 8 + headerBytes.byteLength;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const ranges: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new SafetensorsError(file, '"__metadata__" is not an object of strings');
      for (const [key, value] of Object.entries(raw)) {
        if (typeof value !== 'string') throw new SafetensorsError(file, `"__metadata__" entry "${key}" is ${JSON.stringify(value)}, not a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!entry || typeof entry !== 'object') throw new SafetensorsError(file, 'entry is not an object', name);
    const dtype = entry.dtype;
    // Own keys only: `constructor` or `__proto__` are found `in` every object.
    if (!hasOwnKey(DTYPE_BYTES, dtype)) throw new SafetensorsError(file, `unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`, name);
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(file, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[1] < offs[0]) {
      throw new SafetensorsError(file, `data_offsets ${JSON.stringify(offs)} are invalid`, name);
    }
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = numel * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(expected)) throw new SafetensorsError(file, `shape ${JSON.stringify(shape)} is too large to address`, name);
    if (offs[1] - offs[0] !== expected) {
      throw new SafetensorsError(file, `holds ${offs[1] - offs[0]} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`, name);
    }
    const begin = dataStart + offs[0];
    const end = dataStart + offs[1];
    if (fileSize !== undefined && end > fileSize) {
      throw new SafetensorsError(file, `data ends at byte ${end}, beyond the end of the file (${fileSize} bytes): truncated file?`, name);
    }
    tensors.set(name, { name, dtype, shape: shape as number[], begin, end });
    ranges.push([offs[0], offs[1], name]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) throw new SafetensorsError(file, `overlaps tensor "${ranges[i - 1][2]}"`, ranges[i][2]);
  }
  return { dataStart, tensors, metadata };
}

/** A whole file already in memory. */
export class SafetensorsFile {
  readonly header: SafetensorsHeader;

  constructor(
    readonly bytes: Uint8Array,
    readonly file: string = 'safetensors',
  ) {
    const n = headerLength(bytes, file);
    if (8 + n > bytes.byteLength) throw new SafetensorsError(file, `header of ${n} bytes runs past the end of the file (${bytes.byteLength} bytes)`);
    this.header = parseHeader(bytes.subarray(8, 8 + n), file, bytes.byteLength);
  }

  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) throw new SafetensorsError(this.file, 'no such tensor', name);
    return t;
  }

  /** The raw bytes of one tensor (a copy, so it is aligned for typed-array views). */
  raw(name: string): Uint8Array {
    const t = this.info(name);
    return this.bytes.slice(t.begin, t.end);
  }

  /** Any floating tensor as float32 (F16/BF16 widened exactly; F64 rounded). */
  f32(name: string): Float32Array {
    return toF32(this.info(name), this.raw(name), this.file);
  }

  /** Integer tensors (I64 narrowed to safe integers, I32, U8, BOOL) as numbers in an Int32Array-compatible array. */
  ints(name: string): Int32Array {
    const t = this.info(name);
    const raw = this.raw(name);
    switch (t.dtype) {
      case 'I64': {
        const big = new BigInt64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
        const out = new Int32Array(big.length);
        for (let i = 0; i < big.length; i++) {
          const v = big[i];
          if (v > 2147483647n || v < -2147483648n) throw new SafetensorsError(this.file, `value ${v} at index ${i} does not fit in 32 bits`, name);
          out[i] = Number(v);
        }
        return out;
      }
      case 'I32':
        return new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
      case 'U8':
      case 'BOOL':
      case 'I8':
        return Int32Array.from(t.dtype === 'I8' ? new Int8Array(raw.buffer) : raw);
      default:
        throw new SafetensorsError(this.file, `expected an integer tensor, found ${t.dtype}`, name);
    }
  }

  static async fromUrl(url: string, label = url): Promise<SafetensorsFile> {
    const res = await fetch(url);
    if (!res.ok) throw new SafetensorsError(label, `HTTP ${res.status} ${res.statusText}`);
    return new SafetensorsFile(new Uint8Array(await res.arrayBuffer()), label);
  }
}

export function toF32(t: TensorInfo, raw: Uint8Array, file: string): Float32Array {
  const aligned = raw.byteOffset % 8 === 0 ? raw : raw.slice();
  switch (t.dtype) {
    case 'F32':
      return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
    case 'F16':
      return f16ArrayToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    case 'BF16':
      return bf16ArrayToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    case 'F64':
      return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 8));
    default:
      throw new SafetensorsError(file, `expected a floating tensor, found ${t.dtype}`, t.name);
  }
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  data: ArrayBufferView;
}

/**
 * Writes a safetensors file: tensors sorted by descending element size then name, header
 * padded with spaces so every tensor starts aligned to 8 bytes.
 */
export function writeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const sorted = [...tensors].sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of sorted) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const bytes = numel * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) throw new Error(`writeSafetensors: "${t.name}" has ${t.data.byteLength} bytes, ${t.dtype}${JSON.stringify(t.shape)} needs ${bytes}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((8 + new TextEncoder().encode(json).byteLength) % 8)) % 8;
  json += ' '.repeat(pad);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerBytes.byteLength, true);
  view.setUint32(4, 0, true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.byteLength;
  for (const t of sorted) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}
