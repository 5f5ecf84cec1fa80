/**
 * NF4 weights on the GPU: the layout, quantisation streamed in chunks, upload of a stored
 * state (e.g. a bnb-4bit checkpoint), dequantisation, readback and stored-size accounting.
 *
 * Layout of an `Nf4GpuWeight` (category 'weights'):
 * - packed codes as u32 words, split by rows into parts so no binding exceeds
 *   maxStorageBufferBindingSize / maxBufferSize (a part starts at the 64-block holding its
 *   first row, so neighbouring parts may share one block's 32 bytes);
 * - absmax as uint8 codes (4 per u32) + nested f32 absmax per 256 blocks + the f32 offset
 *   (double quant), or plain f32 absmax; kernels restore absmax' themselves;
 * - a 272-float table buffer (16 NF4 values, 256 nested-map values), shared by every weight
 *   that uses bitsandbytes' own tables.
 *
 * Quantisation on the GPU computes codes and plain absmax chunk by chunk (a chunk is a run of
 * whole blocks uploaded on its own, so a 590 MB tensor never needs one buffer). The absmax
 * vector (1/64 of the elements) is read back and double-quantised on the CPU with the
 * bit-exact reference: that keeps the stored state identical to what bitsandbytes writes, so
 * cached weights can be exported as Linear4bit state dicts, at a cost of 4 bytes per 64
 * elements of readback.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { DYNAMIC_MAP, NESTED_BLOCKSIZE, NF4_BLOCKSIZE, NF4_CODE } from './tables';
import { blockCount, meanOffset, numel, quantizeNested, type Nf4Quantized } from './reference';
import type { KernelShaders } from '../kernels/shaders';

export type Nf4Shaders = Pick<KernelShaders, 'nf4' | 'nf4Matmul'>;

export interface Nf4GpuPart {
  /** Rows [rowStart, rowEnd) of W this part serves. */
  rowStart: number;
  rowEnd: number;
  /** Flat index of the first element in `packed` (a multiple of 64). */
  elemBase: number;
  /** Elements held: [elemBase, elemBase + elemCount). */
  elemCount: number;
  packed: GpuBuffer;
}

export interface Nf4GpuWeight {
  /** [N, K] = [out, in] for a linear weight; any shape flattens the same way. */
  shape: number[];
  rows: number;
  cols: number;
  numel: number;
  blocks: number;
  parts: Nf4GpuPart[];
  doubleQuant: boolean;
  /** uint8 codes packed 4 per u32 (double quant), or f32 absmax. */
  absmax: GpuBuffer;
  /** f32 per 256 blocks (double quant); `gpu.dummy` otherwise. */
  nested: GpuBuffer;
  /** float32 mean offset (double quant), 0 otherwise. */
  offset: number;
  /** 16 NF4 values then 256 nested-map values (f32). */
  tables: GpuBuffer;
  /** False when `tables` is the shared default buffer (not released with the weight). */
  ownsTables: boolean;
}

export type HalfDtype = 'f16' | 'bf16';

/** Input data of a quantisation: f32, or raw 16-bit float bits. */
export type Nf4Source = Float32Array | { bits: Uint16Array; dtype: HalfDtype };

export interface QuantizeGpuOptions {
  /** bitsandbytes' compress_statistics (default true). */
  doubleQuant?: boolean;
  /** Blocks per uploaded chunk (default 16384 = 1 Mi elements). */
  chunkBlocks?: number;
  /** Largest packed part in bytes (default: the device's binding and buffer limits). */
  maxPartBytes?: number;
  label?: string;
}

const DEFAULT_CHUNK_BLOCKS = 16384;
const WG = 256;

const sharedTables = new WeakMap<Gpu, GpuBuffer>();

function tableData(quantMap: Float32Array, nestedMap: Float32Array): Float32Array {
  const t = new Float32Array(16 + 256);
  t.set(quantMap, 0);
  t.set(nestedMap, 16);
  return t;
}

const sameBits = (a: Float32Array, b: Float32Array) => {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
};

function tablesFor(gpu: Gpu, quantMap: Float32Array, nestedMap: Float32Array): { tables: GpuBuffer; ownsTables: boolean } {
  if (sameBits(quantMap, NF4_CODE) && sameBits(nestedMap, DYNAMIC_MAP)) {
    let t = sharedTables.get(gpu);
    if (!t) {
      t = gpu.upload(tableData(NF4_CODE, DYNAMIC_MAP), 'weights', 'nf4-tables');
      sharedTables.set(gpu, t);
    }
    return { tables: t, ownsTables: false };
  }
  return { tables: gpu.upload(tableData(quantMap, nestedMap), 'weights', 'nf4-tables'), ownsTables: true };
}

/** Row ranges of the parts: each part's packed bytes stay within `maxBytes`. */
export function planParts(rows: number, cols: number, maxBytes: number): { rowStart: number; rowEnd: number; elemBase: number; elemCount: number }[] {
  const n = rows * cols;
  // Bytes a part spanning rows [a, b) needs, including the partial blocks at its ends.
  const span = (a: number, b: number) => {
    const base = Math.floor((a * cols) / NF4_BLOCKSIZE) * NF4_BLOCKSIZE;
    const end = Math.min(n, Math.ceil((b * cols) / NF4_BLOCKSIZE) * NF4_BLOCKSIZE);
    return { elemBase: base, elemCount: end - base };
  };
  const bytes = (count: number) => Math.ceil(count / 8) * 4;
  const parts = [];
  let start = 0;
  while (start < rows) {
    let end = rows;
    if (bytes(span(start, end).elemCount) > maxBytes) {
      // Largest end that fits; at least one row (a row that alone exceeds the limit cannot be split by rows).
      let lo = start + 1;
      let hi = rows;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (bytes(span(start, mid).elemCount) <= maxBytes) lo = mid;
        else hi = mid - 1;
      }
      end = lo;
      if (bytes(span(start, end).elemCount) > maxBytes) {
        throw new RangeError(`NF4 weight row of ${cols} elements needs ${bytes(span(start, end).elemCount)} bytes, more than one binding allows (${maxBytes})`);
      }
    }
    parts.push({ rowStart: start, rowEnd: end, ...span(start, end) });
    start = end;
  }
  return parts;
}

function maxPartBytes(gpu: Gpu, override?: number): number {
  const limit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  return Math.floor(Math.min(limit, override ?? limit) / 16) * 16;
}

function matrixShape(shape: number[]): { rows: number; cols: number } {
  if (shape.length === 0 || !shape.every((d) => Number.isInteger(d) && d > 0)) throw new RangeError(`NF4 shape [${shape.join(', ')}] must be positive integers`);
  const cols = shape[shape.length - 1];
  return { rows: numel(shape) / cols, cols };
}

function allocParts(gpu: Gpu, rows: number, cols: number, maxBytes: number, label: string): Nf4GpuPart[] {
  return planParts(rows, cols, maxBytes).map((p, i) => ({
    ...p,
    packed: gpu.alloc(Math.ceil(p.elemCount / 8) * 4, 'weights', `${label}.packed${i}`),
  }));
}

function absmaxBuffers(gpu: Gpu, absmax: Float32Array, doubleQuant: boolean, offset: number | undefined, label: string) {
  if (!doubleQuant) return { absmax: gpu.upload(absmax, 'weights', `${label}.absmax`), nested: gpu.dummy, offset: 0, nestedState: null };
  const state = quantizeNested(absmax, offset ?? meanOffset(absmax));
  return {
    absmax: gpu.upload(state.qabsmax, 'weights', `${label}.qabsmax`),
    nested: gpu.upload(state.nestedAbsmax, 'weights', `${label}.nested`),
    offset: state.offset,
    nestedState: state,
  };
}

/**
 * Streams a tensor through the GPU quantiser. `readChunk(elemStart, elemCount)` returns that
 * range as f32 or raw 16-bit bits (elemStart is a multiple of 64, so 16-bit data stays word-aligned).
 */
export async function quantizeStreamToGpu(
  gpu: Gpu,
  shaders: Nf4Shaders,
  shape: number[],
  kind: 'f32' | HalfDtype,
  readChunk: (elemStart: number, elemCount: number) => Promise<ArrayBufferView> | ArrayBufferView,
  options: QuantizeGpuOptions = {},
): Promise<Nf4GpuWeight> {
  const { rows, cols } = matrixShape(shape);
  const n = rows * cols;
  const blocks = blockCount(n);
  const label = options.label ?? 'nf4';
  const chunkBlocks = Math.max(1, Math.floor(options.chunkBlocks ?? DEFAULT_CHUNK_BLOCKS));
  const parts = allocParts(gpu, rows, cols, maxPartBytes(gpu, options.maxPartBytes), label);
  const absmax = new Float32Array(blocks);
  const pipeline = gpu.pipeline(shaders.nf4, 'quantize', { INPUT_KIND: kind === 'f32' ? 0 : kind === 'f16' ? 1 : 2 });
  const elemBytes = kind === 'f32' ? 4 : 2;
  // A chunk that fails to arrive (a cut download) must not strand what is already allocated.
  let chunk: GpuBuffer[] = [];
  try {
    for (let b0 = 0; b0 < blocks; b0 += chunkBlocks) {
      const nb = Math.min(chunkBlocks, blocks - b0);
      const e0 = b0 * NF4_BLOCKSIZE;
      const count = Math.min(n - e0, nb * NF4_BLOCKSIZE);
      const data = await readChunk(e0, count);
      if (data.byteLength !== count * elemBytes) throw new RangeError(`${label}: chunk at element ${e0} has ${data.byteLength} bytes, expected ${count * elemBytes}`);
      const input = gpu.upload(data, 'scratch', `${label}.chunk`);
      const packedChunk = gpu.alloc(nb * 32, 'scratch', `${label}.chunk-packed`);
      const absChunk = gpu.alloc(nb * 4, 'scratch', `${label}.chunk-absmax`);
      chunk = [input, packedChunk, absChunk];
      gpu.dispatch({
        pipeline,
        bindings: [input, packedChunk, absChunk, gpu.uniform([count, nb])],
        workgroups: gpu.grid(Math.ceil(nb / 4)),
        label: 'nf4-quantize',
      });
      // Copy the chunk's words into every part that holds some of its blocks.
      const chunkEnd = e0 + nb * NF4_BLOCKSIZE;
      for (const part of parts) {
        const lo = Math.max(e0, part.elemBase);
        const hi = Math.min(chunkEnd, part.elemBase + part.elemCount);
        if (lo >= hi) continue;
        const bytes = Math.min(Math.ceil((hi - lo) / 8) * 4, part.packed.size - (lo - part.elemBase) / 2);
        gpu.copy(packedChunk, (lo - e0) / 2, part.packed, (lo - part.elemBase) / 2, bytes);
      }
      absmax.set(await gpu.readF32(absChunk, nb), b0);
      gpu.release(...chunk);
      chunk = [];
    }
  } catch (err) {
    gpu.release(...chunk, ...parts.map((p) => p.packed));
    throw err;
  }
  const doubleQuant = options.doubleQuant ?? true;
  const abs = absmaxBuffers(gpu, absmax, doubleQuant, undefined, label);
  return {
    shape: [...shape],
    rows,
    cols,
    numel: n,
    blocks,
    parts,
    doubleQuant,
    absmax: abs.absmax,
    nested: abs.nested,
    offset: abs.offset,
    ...tablesFor(gpu, NF4_CODE, DYNAMIC_MAP),
  };
}

/** Quantises in-memory f32 or 16-bit data on the GPU (chunked, see `quantizeStreamToGpu`). */
export function quantizeToGpu(gpu: Gpu, shaders: Nf4Shaders, data: Nf4Source, shape: number[], options: QuantizeGpuOptions = {}): Promise<Nf4GpuWeight> {
  const n = numel(shape);
  if (data instanceof Float32Array) {
    if (data.length !== n) throw new RangeError(`quantizeToGpu: ${data.length} values for shape [${shape.join(', ')}]`);
    return quantizeStreamToGpu(gpu, shaders, shape, 'f32', (s, c) => data.subarray(s, s + c), options);
  }
  if (data.bits.length !== n) throw new RangeError(`quantizeToGpu: ${data.bits.length} values for shape [${shape.join(', ')}]`);
  return quantizeStreamToGpu(gpu, shaders, shape, data.dtype, (s, c) => data.bits.subarray(s, s + c), options);
}

/** Uploads a stored NF4 state (e.g. from a Linear4bit state dict) without requantising. */
export function uploadNf4(gpu: Gpu, q: Nf4Quantized, options: { maxPartBytes?: number; label?: string } = {}): Nf4GpuWeight {
  const { rows, cols } = matrixShape(q.shape);
  const n = rows * cols;
  const label = options.label ?? 'nf4';
  const parts = allocParts(gpu, rows, cols, maxPartBytes(gpu, options.maxPartBytes), label);
  for (const part of parts) {
    const bytes = q.packed.subarray(part.elemBase / 2, Math.min(q.packed.length, (part.elemBase + part.elemCount + 1) / 2));
    gpu.write(part.packed, bytes);
  }
  const base = { shape: [...q.shape], rows, cols, numel: n, blocks: blockCount(n), parts };
  if (q.nested) {
    const codes = new Uint8Array(Math.ceil(q.nested.qabsmax.length / 4) * 4);
    codes.set(q.nested.qabsmax);
    return {
      ...base,
      doubleQuant: true,
      absmax: gpu.upload(codes, 'weights', `${label}.qabsmax`),
      nested: gpu.upload(q.nested.nestedAbsmax, 'weights', `${label}.nested`),
      offset: q.nested.offset,
      ...tablesFor(gpu, q.quantMap, q.nested.nestedMap),
    };
  }
  if (!q.absmax) throw new Error(`${label}: NF4 state has neither absmax nor nested absmax`);
  return { ...base, doubleQuant: false, absmax: gpu.upload(q.absmax, 'weights', `${label}.absmax`), nested: gpu.dummy, offset: 0, ...tablesFor(gpu, q.quantMap, DYNAMIC_MAP) };
}

/** Reads a GPU weight back into the CPU state form (for checks and for writing state dicts). */
export async function downloadNf4(gpu: Gpu, w: Nf4GpuWeight): Promise<Nf4Quantized> {
  const packed = new Uint8Array((w.numel + 1) >> 1);
  for (const part of w.parts) {
    const bytes = new Uint8Array(await gpu.read(part.packed, Math.ceil(part.elemCount / 8) * 4));
    const start = part.elemBase / 2;
    packed.set(bytes.subarray(0, Math.min(bytes.length, packed.length - start)), start);
  }
  const tables = await gpu.readF32(w.tables, 272);
  const quantMap = tables.slice(0, 16);
  if (!w.doubleQuant) return { shape: [...w.shape], packed, absmax: await gpu.readF32(w.absmax, w.blocks), quantMap };
  const qabsmax = new Uint8Array(await gpu.read(w.absmax, Math.ceil(w.blocks / 4) * 4)).slice(0, w.blocks);
  const nestedAbsmax = await gpu.readF32(w.nested, blockCount(w.blocks, NESTED_BLOCKSIZE));
  return { shape: [...w.shape], packed, quantMap, nested: { qabsmax, nestedAbsmax, offset: w.offset, nestedMap: tables.slice(16) } };
}

/** Dequantises the whole weight to f32 on the GPU into `out` (numel floats). */
export function dequantizeGpu(gpu: Gpu, shaders: Nf4Shaders, w: Nf4GpuWeight, out: GpuBuffer): void {
  const pipeline = gpu.pipeline(shaders.nf4, 'dequantize', { DOUBLE_QUANT: w.doubleQuant ? 1 : 0, WG });
  for (const part of w.parts) {
    const start = part.rowStart * w.cols;
    const count = (part.rowEnd - part.rowStart) * w.cols;
    gpu.dispatch({
      pipeline,
      bindings: [part.packed, w.absmax, w.nested, w.tables, out, gpu.uniform([count, start, part.elemBase, start, w.offset], 'uuuuf')],
      workgroups: gpu.grid(Math.ceil(count / WG)),
      label: 'nf4-dequantize',
    });
  }
}

/** Bytes the weight itself occupies on the GPU (packed parts, absmax codes, nested absmax, offset). */
export function nf4StoredBytes(w: Nf4GpuWeight): number {
  let bytes = 0;
  for (const part of w.parts) bytes += part.packed.size;
  bytes += w.absmax.size + (w.doubleQuant ? w.nested.size + 4 : 0);
  if (w.ownsTables) bytes += w.tables.size;
  return bytes;
}

/** Stored bits per parameter (4.127 with double quantisation for large tensors). */
export function nf4BitsPerParam(w: Nf4GpuWeight): number {
  return (nf4StoredBytes(w) * 8) / w.numel;
}

export function releaseNf4(gpu: Gpu, w: Nf4GpuWeight): void {
  for (const part of w.parts) gpu.release(part.packed);
  gpu.release(w.absmax);
  if (w.doubleQuant) gpu.release(w.nested);
  if (w.ownsTables) gpu.release(w.tables);
}
