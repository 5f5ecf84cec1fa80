/**
 * GGUF version 3, little-endian, as ggml's `docs/gguf.md` and gguf-py's `gguf_writer.py`
 * lay it out:
 *
 *   magic "GGUF" · u32 version (3) · u64 tensor count · u64 key/value count
 *   key/values: string key (u64 byte length + UTF-8) · u32 value type · value
 *   tensor infos: string name · u32 n_dims · u64 ne[n_dims] (innermost first) · u32 ggml type · u64 offset
 *   zero padding to the alignment · tensor data, each tensor zero-padded to the alignment
 *
 * Tensor offsets are relative to the start of the data section and multiples of the alignment
 * (`general.alignment`, 32 by default). The file is produced as a sequence of chunks (the
 * header, then one chunk per tensor), each tensor's values asked for only when its turn comes,
 * so a large file never sits in memory whole.
 */
import { f32ArrayToF16 } from '../formats/float16';

/** GGUF metadata value types (gguf-py constants.py `GGUFValueType`). */
export const GGUF_VALUE_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** ggml tensor types this writer stores (ggml.h `enum ggml_type`). */
export const GGML_TYPE = { F32: 0, F16: 1 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;

export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL. */
const MAX_TENSOR_NAME_BYTES = 63;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;

type Scalar =
  | { type: 'string'; value: string }
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'u64'; value: bigint }
  | { type: 'f32'; value: number }
  | { type: 'f64'; value: number }
  | { type: 'bool'; value: boolean };

export type GgufValue =
  | Scalar
  | { type: 'array'; itemType: 'string'; value: string[] }
  | { type: 'array'; itemType: 'u32' | 'i32' | 'f32'; value: number[] }
  | { type: 'array'; itemType: 'bool'; value: boolean[] };

export interface GgufKeyValue {
  key: string;
  value: GgufValue;
}

export interface GgufTensor {
  name: string;
  type: GgmlTypeName;
  /** Row-major (PyTorch) shape; the file stores it reversed (ggml's ne[0] is the innermost). */
  shape: number[];
  /** The values in row-major order, asked for when the tensor is written. */
  values(): Float32Array | Promise<Float32Array>;
}

export class GgufError extends Error {
  constructor(message: string) {
    super(`GGUF: ${message}`);
    this.name = 'GgufError';
  }
}

const SCALAR_CODE: Record<Scalar['type'], number> = {
  string: GGUF_VALUE_TYPE.STRING,
  u32: GGUF_VALUE_TYPE.UINT32,
  i32: GGUF_VALUE_TYPE.INT32,
  u64: GGUF_VALUE_TYPE.UINT64,
  f32: GGUF_VALUE_TYPE.FLOAT32,
  f64: GGUF_VALUE_TYPE.FLOAT64,
  bool: GGUF_VALUE_TYPE.BOOL,
};

const TYPE_BYTES: Record<GgmlTypeName, number> = { F32: 4, F16: 2 };

const encoder = new TextEncoder();
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Grows as values are appended; little-endian throughout. */
class ByteWriter {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  u32(v: number) {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number) {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number | bigint) {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  f32(v: number) {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number) {
    this.reserve(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  bytes(b: Uint8Array) {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  string(s: string) {
    const b = encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  zeros(n: number) {
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

const padTo = (n: number, alignment: number) => (alignment - (n % alignment)) % alignment;

function checkInteger(key: string, v: number, lo: number, hi: number, what: string): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new GgufError(`key "${key}": ${v} is not a ${what}`);
}

function writeScalar(w: ByteWriter, key: string, v: Scalar): void {
  switch (v.type) {
    case 'string':
      if (typeof v.value !== 'string') throw new GgufError(`key "${key}": string value expected`);
      return w.string(v.value);
    case 'u32':
      checkInteger(key, v.value, 0, 0xffffffff, 'u32');
      return w.u32(v.value);
    case 'i32':
      checkInteger(key, v.value, -0x80000000, 0x7fffffff, 'i32');
      return w.i32(v.value);
    case 'u64':
      if (typeof v.value !== 'bigint' || v.value < 0n || v.value >= 1n << 64n) throw new GgufError(`key "${key}": ${v.value} is not a u64`);
      return w.u64(v.value);
    case 'f32':
    case 'f64':
      if (typeof v.value !== 'number') throw new GgufError(`key "${key}": number expected`);
      return v.type === 'f32' ? w.f32(v.value) : w.f64(v.value);
    case 'bool':
      if (typeof v.value !== 'boolean') throw new GgufError(`key "${key}": boolean expected`);
      return w.u8(v.value ? 1 : 0);
    default:
      throw new GgufError(`key "${key}": unknown value type ${JSON.stringify((v as { type: unknown }).type)}`);
  }
}

function writeKeyValue(w: ByteWriter, kv: GgufKeyValue): void {
  w.string(kv.key);
  const v = kv.value;
  if (v.type === 'array') {
    const code = SCALAR_CODE[v.itemType as Scalar['type']];
    if (code === undefined) throw new GgufError(`key "${kv.key}": unknown array item type ${JSON.stringify(v.itemType)}`);
    if (!Array.isArray(v.value)) throw new GgufError(`key "${kv.key}": array value expected`);
    w.u32(GGUF_VALUE_TYPE.ARRAY);
    w.u32(code);
    w.u64(v.value.length);
    for (const item of v.value) writeScalar(w, kv.key, { type: v.itemType, value: item } as Scalar);
    return;
  }
  const code = SCALAR_CODE[v.type];
  if (code === undefined) throw new GgufError(`key "${kv.key}": unknown value type ${JSON.stringify(v.type)}`);
  w.u32(code);
  writeScalar(w, kv.key, v);
}

export interface GgufLayout {
  /** Magic through tensor infos, padded to the alignment: the first chunk. */
  header: Uint8Array;
  /** Per tensor: offset in the data section and its byte size before padding. */
  tensors: { name: string; offset: number; bytes: number }[];
  /** Size of the whole file. */
  totalBytes: number;
  alignment: number;
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * The header and the byte layout of a GGUF file, from the metadata and the tensors' names, types
 * and shapes (no tensor data needed): the size is known before anything is written.
 */
export function ggufLayout(kvs: GgufKeyValue[], tensors: Omit<GgufTensor, 'values'>[], alignment = GGUF_DEFAULT_ALIGNMENT): GgufLayout {
  if (!Number.isInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) throw new GgufError(`alignment ${alignment} is not a power of two`);
  const keys = new Set<string>();
  for (const kv of kvs) {
    if (!kv.key) throw new GgufError('empty metadata key');
    if (keys.has(kv.key)) throw new GgufError(`key "${kv.key}" appears twice`);
    keys.add(kv.key);
  }
  const declared = kvs.find((kv) => kv.key === 'general.alignment');
  if (declared && !(declared.value.type === 'u32' && declared.value.value === alignment)) {
    throw new GgufError(`general.alignment must be a u32 equal to the layout's alignment ${alignment}`);
  }
  if (!declared && alignment !== GGUF_DEFAULT_ALIGNMENT) throw new GgufError(`alignment ${alignment} needs a general.alignment key`);

  const w = new ByteWriter();
  w.bytes(encoder.encode('GGUF'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kvs.length);
  for (const kv of kvs) writeKeyValue(w, kv);

  const names = new Set<string>();
  const placed: GgufLayout['tensors'] = [];
  let offset = 0;
  for (const t of tensors) {
    const nameBytes = encoder.encode(t.name).length;
    if (nameBytes === 0 || nameBytes > MAX_TENSOR_NAME_BYTES) throw new GgufError(`tensor name "${t.name}" must have 1 to ${MAX_TENSOR_NAME_BYTES} bytes`);
    if (names.has(t.name)) throw new GgufError(`tensor "${t.name}" appears twice`);
    names.add(t.name);
    if (!(t.type in GGML_TYPE)) throw new GgufError(`tensor "${t.name}": type ${JSON.stringify(t.type)} is not written (F32, F16)`);
    if (t.shape.length < 1 || t.shape.length > MAX_DIMS || !t.shape.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new GgufError(`tensor "${t.name}": shape [${t.shape.join(', ')}] must have 1 to ${MAX_DIMS} positive dimensions`);
    }
    w.string(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]);
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    const bytes = numel(t.shape) * TYPE_BYTES[t.type];
    placed.push({ name: t.name, offset, bytes });
    offset += bytes + padTo(bytes, alignment);
  }
  w.zeros(padTo(w.length, alignment));
  const header = w.result();
  return { header, tensors: placed, totalBytes: header.length + offset, alignment };
}

/** One tensor's stored bytes (F32 as is, F16 rounded to nearest even), padded to the alignment. */
function tensorBytes(t: GgufTensor, values: Float32Array, alignment: number): Uint8Array {
  const n = numel(t.shape);
  if (!(values instanceof Float32Array) || values.length !== n) {
    throw new GgufError(`tensor "${t.name}": ${values?.length} values given, shape [${t.shape.join(', ')}] needs ${n}`);
  }
  // Typed arrays are in the platform's byte order; GGUF here is little-endian.
  if (!LITTLE_ENDIAN) throw new GgufError('big-endian platforms are not supported');
  const raw = t.type === 'F32' ? values : f32ArrayToF16(values);
  const out = new Uint8Array(raw.byteLength + padTo(raw.byteLength, alignment));
  out.set(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
  return out;
}

/**
 * The file as chunks: the header first, then each tensor's data (values asked for one tensor at
 * a time). Concatenated, the chunks are `layout.totalBytes` long.
 */
export async function* ggufChunks(kvs: GgufKeyValue[], tensors: GgufTensor[], alignment = GGUF_DEFAULT_ALIGNMENT): AsyncGenerator<Uint8Array> {
  const layout = ggufLayout(kvs, tensors, alignment);
  yield layout.header;
  for (const t of tensors) yield tensorBytes(t, await t.values(), alignment);
}

/** The whole file in one buffer: for small files and tests. */
export async function ggufBytes(kvs: GgufKeyValue[], tensors: GgufTensor[], alignment = GGUF_DEFAULT_ALIGNMENT): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of ggufChunks(kvs, tensors, alignment)) parts.push(c);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
