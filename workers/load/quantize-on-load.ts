/**
 * Quantize on load: every tensor streams from its file in chunks into a `LoadTarget`. The
 * blocks' linear weights go to an NF4 quantizer chunk by chunk (chunks hold whole 64-element
 * blocks), everything else (embeddings, lm_head, norms, biases) stays in its 16-bit (or f32)
 * form. Pre-quantized bitsandbytes Linear4bit layers are taken as they are. With quantization
 * `{ type: 'none' }` (plain LoRA) the linear weights stay as stored too.
 *
 * Memory bound on the CPU side: the loader holds one source chunk (`chunkBytes`, default
 * 4 MiB) at a time, plus the safetensors headers; the CPU target adds that chunk's float32
 * widening (2× a 16-bit chunk), the GPU target uploads it as it is. Where the outputs
 * accumulate is the target's business (GPU buffers, the cache). The full 16-bit model is
 * never held anywhere.
 */
import { DTYPE_BYTES, SafetensorsError, SafetensorsFile, writeSafetensors, type DType, type TensorToWrite } from '../formats/safetensors';
import { bf16ArrayToF32, f16ArrayToF32 } from '../formats/float16';
import { NF4_BLOCKSIZE, NF4_CODE } from '../nf4/tables';
import { castToDtype, dequantizeNF4, meanOffset, nf4Codes, numel, packCodes, quantizeNested, type Nf4Dtype, type Nf4Quantized } from '../nf4/reference';
import { QUANT_STATE_SUFFIX, readLinear4bit } from '../nf4/state-dict';
import { ownEntry } from '../util/own';
import { isQuantizedLinear, type ArchShape } from './arch';
import { isNf4, type QuantSettings } from './presets';
import type { ModelWeights } from './weights';

/** Receives one tensor's data in order, then builds the result. */
export interface TensorWriter<In, Out> {
  push(chunk: In): void | Promise<void>;
  finish(): Out | Promise<Out>;
}

export interface Nf4Tensor {
  kind: 'nf4';
  /** `<module path>.weight`. */
  name: string;
  /** The layer's dtype in the source files (what dequantisation returns). */
  dtype: Nf4Dtype;
  quant: Nf4Quantized;
}

export interface DenseTensor {
  kind: 'dense';
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export type LoadedTensor = Nf4Tensor | DenseTensor;

/** A loaded tensor's values as the checkpoint stored them: the dense bytes, or the NF4 state dequantized to its layer's dtype (exact mode). */
export function storedBytes(t: LoadedTensor): Uint8Array {
  if (t.kind === 'dense') return t.data;
  const v = castToDtype(dequantizeNF4(t.quant), t.dtype);
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * A linear weight's stored bytes in order, in chunks of exactly `chunkElems` elements (only the
 * last may be shorter); `chunkElems` is a multiple of 64, so chunks hold whole NF4 blocks.
 */
export interface WeightChunks {
  dtype: 'F32' | 'F16' | 'BF16';
  chunkElems: number;
  chunks: AsyncIterable<Uint8Array>;
}

/** Where loaded tensors go: CPU arrays (cache, tests) or GPU buffers (the engine). */
export interface LoadTarget<T> {
  /** A tensor kept as stored: raw little-endian bytes arrive in order. */
  dense(name: string, dtype: DType, shape: number[]): TensorWriter<Uint8Array, T>;
  /** A linear weight to quantize, read chunk by chunk. */
  nf4(name: string, dtype: Nf4Dtype, shape: number[], doubleQuant: boolean, source: WeightChunks): Promise<T>;
  /** A layer that is NF4 already (bitsandbytes checkpoint). */
  prequantized(tensor: Nf4Tensor): T | Promise<T>;
}

/** CPU NF4 of a streamed weight: each chunk is widened to f32 and quantized, then dropped. */
export async function cpuNf4FromChunks(name: string, dtype: Nf4Dtype, shape: number[], doubleQuant: boolean, source: WeightChunks): Promise<Nf4Tensor> {
  const writer = cpuNf4Writer(name, dtype, shape, doubleQuant);
  for await (const chunk of source.chunks) writer.push(chunkToF32(chunk, source.dtype, name, name));
  return writer.finish();
}

/** NF4 on the CPU, block by block as chunks arrive: bit-exact with the whole-tensor reference. */
export function cpuNf4Writer(name: string, dtype: Nf4Dtype, shape: number[], doubleQuant: boolean): TensorWriter<Float32Array, Nf4Tensor> & { finish(): Nf4Tensor } {
  const n = numel(shape);
  const packed = new Uint8Array((n + 1) >> 1);
  const absmax = new Float32Array(Math.ceil(n / NF4_BLOCKSIZE));
  let seen = 0;
  return {
    push(values) {
      if (seen % NF4_BLOCKSIZE !== 0) throw new Error(`${name}: a chunk after a partial block`);
      if (seen + values.length > n) throw new Error(`${name}: more values than shape [${shape.join(', ')}] holds`);
      const { codes, absmax: blockMax } = nf4Codes(values);
      packed.set(packCodes(codes), seen >> 1);
      absmax.set(blockMax, seen / NF4_BLOCKSIZE);
      seen += values.length;
    },
    finish() {
      if (seen !== n) throw new Error(`${name}: got ${seen} of ${n} values`);
      const quant: Nf4Quantized = { shape: [...shape], packed, quantMap: NF4_CODE };
      if (doubleQuant) quant.nested = quantizeNested(absmax, meanOffset(absmax));
      else quant.absmax = absmax;
      return { kind: 'nf4', name, dtype, quant };
    },
  };
}

export function cpuDenseWriter(name: string, dtype: DType, shape: number[]): TensorWriter<Uint8Array, DenseTensor> {
  const data = new Uint8Array(numel(shape) * DTYPE_BYTES[dtype]);
  let pos = 0;
  return {
    push(chunk) {
      data.set(chunk, pos);
      pos += chunk.byteLength;
    },
    finish: () => ({ kind: 'dense', name, dtype, shape: [...shape], data }),
  };
}

/** Everything in CPU memory: what the cache stores and what Node tests inspect. */
export const cpuTarget: LoadTarget<LoadedTensor> = {
  dense: cpuDenseWriter,
  nf4: cpuNf4FromChunks,
  prequantized: (t) => t,
};

export interface LoadOptions<T> {
  arch: ArchShape;
  quant: QuantSettings;
  target: LoadTarget<T>;
  /** Source bytes per read (rounded to whole 64-element blocks for linear weights). */
  chunkBytes?: number;
  signal?: AbortSignal;
  /** Each finished tensor, in file order; the loader keeps no reference to it. */
  onTensor: (name: string, result: T) => void | Promise<void>;
  onTensorStart?: (name: string, index: number, count: number) => void;
}

export interface LoadStats {
  tensors: number;
  quantized: number;
  prequantized: number;
  dense: number;
  /** Tensor bytes read from the files. */
  sourceBytes: number;
  /** Most source bytes the loader held at once (one chunk; a CPU target adds its float32 widening). */
  peakHeldBytes: number;
  /** Bytes of the safetensors headers parsed (held while loading). */
  headerBytes: number;
}

const NF4_DTYPES: Partial<Record<DType, Nf4Dtype>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
/** The safetensors dtype of a layer an NF4 state was quantized from (the inverse of NF4_DTYPES). */
export const LAYER_DTYPE: Record<Nf4Dtype, DType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** Widens a chunk of a floating tensor to float32. */
export function chunkToF32(bytes: Uint8Array, dtype: DType, file: string, tensor: string): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
    case 'F16':
      return f16ArrayToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    case 'BF16':
      return bf16ArrayToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    default:
      throw new SafetensorsError(file, `dtype ${dtype} cannot be quantized (expected F32, F16 or BF16)`, tensor);
  }
}

/** Tensor names of the Linear4bit layers in the files, by their `<prefix>`. */
function prequantizedPrefixes(weights: ModelWeights): Set<string> {
  return new Set(weights.names().filter((n) => n.endsWith(QUANT_STATE_SUFFIX)).map((n) => n.slice(0, -QUANT_STATE_SUFFIX.length)));
}

const LINEAR4BIT_PARTS = ['weight', 'weight.absmax', 'weight.quant_map', 'weight.nested_absmax', 'weight.nested_quant_map', QUANT_STATE_SUFFIX];

/** How one tensor of the files loads. */
export type TensorPlan =
  /** A bitsandbytes Linear4bit layer (`<prefix>weight` and its state parts), taken as it is. */
  | { kind: 'prequantized'; prefix: string }
  /** A linear weight of the blocks, quantized to NF4. */
  | { kind: 'nf4'; dtype: Nf4Dtype }
  /** Everything else (and every linear weight when the base is not quantized), kept as stored. */
  | { kind: 'dense' };

/**
 * Every tensor the loader delivers, in file order, with how it loads; the parts of a
 * Linear4bit layer other than its `weight` travel with it and are not listed. An unquantized
 * load refuses a pre-quantized checkpoint: its NF4 values are not the base's own.
 */
export function loadPlan(weights: ModelWeights, arch: ArchShape, quant: QuantSettings): Map<string, TensorPlan> {
  const prequant = prequantizedPrefixes(weights);
  if (!isNf4(quant) && prequant.size > 0) {
    const [first] = prequant;
    const name = first + 'weight';
    throw new SafetensorsError(weights.info(name).file.name, 'holds bitsandbytes 4-bit layers: an unquantized (plain LoRA) load needs the 16-bit or f32 checkpoint; quantize the base to NF4 to load this one', name);
  }
  const partOf = (name: string) => {
    for (const p of prequant) if (name.startsWith(p) && LINEAR4BIT_PARTS.includes(name.slice(p.length))) return p;
    return null;
  };
  const plan = new Map<string, TensorPlan>();
  for (const name of weights.names()) {
    const prefix = partOf(name);
    if (prefix !== null) {
      if (name === prefix + 'weight') plan.set(name, { kind: 'prequantized', prefix });
      continue;
    }
    const info = weights.info(name);
    if (isNf4(quant) && isQuantizedLinear(arch, name)) {
      const dtype = ownEntry(NF4_DTYPES, info.dtype);
      if (!dtype) throw new SafetensorsError(info.file.name, `dtype ${info.dtype} is not supported for a linear weight (F32, F16 or BF16)`, name);
      if (info.shape.length !== 2) throw new SafetensorsError(info.file.name, `a linear weight must be 2-D, found shape [${info.shape.join(', ')}]`, name);
      plan.set(name, { kind: 'nf4', dtype });
    } else {
      if (!['F32', 'F16', 'BF16'].includes(info.dtype)) throw new SafetensorsError(info.file.name, `unsupported dtype ${info.dtype} for a model weight`, name);
      plan.set(name, { kind: 'dense' });
    }
  }
  return plan;
}

/** A Linear4bit layer's parts, gathered into one state. */
export async function readPrequantized(weights: ModelWeights, prefix: string, signal?: AbortSignal): Promise<{ tensor: Nf4Tensor; bytes: number }> {
  const parts: TensorToWrite[] = [];
  let bytes = 0;
  for (const part of LINEAR4BIT_PARTS) {
    const name = prefix + part;
    if (!weights.has(name)) continue;
    const info = weights.info(name);
    const data = await weights.read(name, signal);
    bytes += data.byteLength;
    parts.push({ name, dtype: info.dtype, shape: info.shape, data });
  }
  // The state-dict reader works on one file: gather the layer's (small, 4-bit) parts into one.
  const file = new SafetensorsFile(writeSafetensors(parts), weights.info(prefix + 'weight').file.name);
  const state = readLinear4bit(file, prefix);
  return { tensor: { kind: 'nf4', name: prefix + 'weight', dtype: state.dtype, quant: state.quant }, bytes };
}

/** The logical shape and dtype of a Linear4bit layer, from its (tiny) quant state alone. */
export async function prequantizedInfo(weights: ModelWeights, prefix: string, signal?: AbortSignal): Promise<{ shape: number[]; dtype: Nf4Dtype }> {
  const name = prefix + QUANT_STATE_SUFFIX;
  let fields: { shape?: unknown; dtype?: unknown };
  try {
    fields = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await weights.read(name, signal))) as typeof fields;
  } catch (err) {
    if (err instanceof SafetensorsError) throw err;
    throw new SafetensorsError(weights.info(name).file.name, `quant state is not UTF-8 JSON: ${(err as Error).message}`, name);
  }
  const { shape, dtype } = fields;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d > 0) || !['float32', 'float16', 'bfloat16'].includes(dtype as string)) {
    throw new SafetensorsError(weights.info(name).file.name, `quant state has shape ${JSON.stringify(shape)} and dtype ${JSON.stringify(dtype)}`, name);
  }
  return { shape: shape as number[], dtype: dtype as Nf4Dtype };
}

/**
 * A linear weight's bytes in chunks of whole 64-element blocks (`chunkBytes` rounded down, at
 * least one block); `onChunk` sees each chunk as it arrives.
 */
export function linearChunks(weights: ModelWeights, name: string, chunkBytes: number, onChunk: (chunk: Uint8Array) => void, signal?: AbortSignal): WeightChunks {
  const info = weights.info(name);
  const elemBytes = DTYPE_BYTES[info.dtype];
  const chunkElems = Math.max(NF4_BLOCKSIZE, Math.floor(chunkBytes / elemBytes / NF4_BLOCKSIZE) * NF4_BLOCKSIZE);
  const pieces = weights.stream(name, chunkElems * elemBytes, NF4_BLOCKSIZE, signal);
  const counted = async function* () {
    for await (const chunk of pieces) {
      onChunk(chunk);
      yield chunk;
    }
  };
  return { dtype: info.dtype as WeightChunks['dtype'], chunkElems, chunks: counted() };
}

export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** Streams every tensor of `weights` into `target`. */
export async function quantizeOnLoad<T>(weights: ModelWeights, options: LoadOptions<T>): Promise<LoadStats> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const { arch, target, signal } = options;
  const stats: LoadStats = { tensors: 0, quantized: 0, prequantized: 0, dense: 0, sourceBytes: 0, peakHeldBytes: 0, headerBytes: 0 };
  for (const shard of weights.shards) stats.headerBytes += shard.headerBytes;
  const held = (bytes: number) => (stats.peakHeldBytes = Math.max(stats.peakHeldBytes, bytes));
  const seen = (chunk: Uint8Array) => {
    held(chunk.byteLength);
    stats.sourceBytes += chunk.byteLength;
  };

  const { quant } = options;
  const work = [...loadPlan(weights, arch, quant)];
  for (let i = 0; i < work.length; i++) {
    signal?.throwIfAborted();
    const [name, plan] = work[i];
    options.onTensorStart?.(name, i, work.length);
    const info = weights.info(name);
    let result: T;
    if (plan.kind === 'prequantized') {
      const { tensor, bytes } = await readPrequantized(weights, plan.prefix, signal);
      stats.sourceBytes += bytes;
      held(bytes);
      result = await target.prequantized(tensor);
      stats.prequantized++;
    } else if (plan.kind === 'nf4') {
      result = await target.nf4(name, plan.dtype, info.shape, isNf4(quant) && quant.doubleQuant, linearChunks(weights, name, chunkBytes, seen, signal));
      stats.quantized++;
    } else {
      const writer = target.dense(name, info.dtype, info.shape);
      for await (const chunk of weights.stream(name, chunkBytes, 1, signal)) {
        seen(chunk);
        await writer.push(chunk);
      }
      result = await writer.finish();
      stats.dense++;
    }
    stats.tensors++;
    await options.onTensor(name, result);
  }
  return stats;
}
