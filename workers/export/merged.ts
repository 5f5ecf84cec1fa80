/**
 * The base model with the LoRA adapter merged in, W' = W + scale · B·A (scale = alpha / r, or
 * alpha / √r with rsLoRA), in 16-bit, in the hub's layout: sharded safetensors
 * (`model-00001-of-00003.safetensors`, …) with `model.safetensors.index.json`
 * (`{"metadata": {"total_size"}, "weight_map": {tensor: shard}}`), as transformers'
 * save_pretrained writes them, plus the config with its `torch_dtype` set.
 *
 * Written tensor by tensor and, within a tensor, in blocks of rows: a block of the base weight is
 * read (raw little-endian bytes of its elements), widened to f32, the delta rows
 * scale · B[rows]·A added in f32, and the sum rounded once to the output dtype, as PEFT's
 * merge adds the f32 delta to the weight. Tensors without an adapter are copied block by block
 * (rounded when the output dtype differs). The bytes held at once are a block, its output and the
 * current adapter's A and B, counted in `MergeStats`.
 */
import { DTYPE_BYTES, type DType } from '../formats/safetensors';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from '../formats/float16';
import type { AdapterTensors } from './gguf-lora';
import type { ExportFile } from './bundle';

export type MergedDType = 'F16' | 'BF16' | 'F32';

/** The base model's weights, read a range of elements at a time (Range requests, File.slice). */
export interface BaseWeights {
  /** Every tensor, in the order they are written. */
  tensors: { name: string; dtype: DType; shape: number[] }[];
  /** Raw little-endian bytes of elements [start, end) of a tensor (row-major). */
  read(name: string, start: number, end: number): Promise<Uint8Array>;
}

export interface MergeOptions {
  /** The adapter's alpha, rank and rsLoRA flag (adapter_config.json). */
  alpha: number;
  r: number;
  useRslora?: boolean;
  dtype: MergedDType;
  /** Largest shard in bytes (transformers' default max_shard_size is 5 GB). */
  maxShardBytes?: number;
  /** Elements per block of rows read at once (at least one row). */
  blockElements?: number;
}

export interface MergeStats {
  /** Most bytes of model data held at once: a block read, its f32 form, its output, A and B. */
  peakHeldBytes: number;
  /** The largest tensor's size in the output dtype, for comparison. */
  largestTensorBytes: number;
  mergedTensors: number;
  copiedTensors: number;
}

interface Planned {
  name: string;
  dtype: DType;
  shape: number[];
  /** PEFT keys of the adapter on this weight, if any. */
  lora: { a: string; b: string } | null;
  outDtype: DType;
  bytes: number;
}

export interface MergePlan {
  shards: { name: string; tensors: Planned[]; header: Uint8Array; bytes: number }[];
  index: { metadata: { total_size: number }; weight_map: Record<string, string> };
  totalBytes: number;
}

const FLOAT: ReadonlySet<DType> = new Set(['F32', 'F16', 'BF16']);
const LORA_KEY = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/;

export class MergeError extends Error {
  constructor(message: string) {
    super(`merge: ${message}`);
    this.name = 'MergeError';
  }
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Which base tensor each adapter pair merges into, checked against the shapes. */
function pairAdapters(base: BaseWeights, adapter: AdapterTensors): Map<string, { a: string; b: string }> {
  const pairs = new Map<string, { a?: string; b?: string }>();
  for (const key of adapter.names) {
    const m = LORA_KEY.exec(key);
    if (!m) throw new MergeError(`adapter tensor "${key}" is not a lora_A / lora_B weight; only LoRA pairs on linear layers are merged`);
    const p = pairs.get(m[1]) ?? {};
    if (m[2] === 'A') p.a = key;
    else p.b = key;
    pairs.set(m[1], p);
  }
  const shapes = new Map(base.tensors.map((t) => [t.name, t.shape]));
  const out = new Map<string, { a: string; b: string }>();
  for (const [module, p] of pairs) {
    if (!p.a || !p.b) throw new MergeError(`module "${module}" has only one of lora_A and lora_B`);
    const weight = `${module}.weight`;
    const shape = shapes.get(weight);
    if (!shape) throw new MergeError(`the base model has no tensor "${weight}" for the adapter's "${module}" (a tied lm_head or an embedding?)`);
    const sa = adapter.info(p.a).shape;
    const sb = adapter.info(p.b).shape;
    if (shape.length !== 2 || sa.length !== 2 || sb.length !== 2 || sb[1] !== sa[0] || sb[0] !== shape[0] || sa[1] !== shape[1]) {
      throw new MergeError(`"${weight}" [${shape.join(', ')}] does not match lora_B [${sb.join(', ')}] · lora_A [${sa.join(', ')}]`);
    }
    out.set(weight, { a: p.a, b: p.b });
  }
  return out;
}

function safetensorsHeader(tensors: Planned[]): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.outDtype, shape: t.shape, data_offsets: [offset, offset + t.bytes] };
    offset += t.bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const body = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  return out;
}

/** Shards, headers, sizes and the index, from shapes alone: known before any weight is read. */
export function planMerge(base: BaseWeights, adapter: AdapterTensors, options: MergeOptions): MergePlan {
  const maxShard = options.maxShardBytes ?? 5_000_000_000;
  const merges = pairAdapters(base, adapter);
  const planned: Planned[] = base.tensors.map((t) => {
    const outDtype = FLOAT.has(t.dtype) ? options.dtype : t.dtype;
    return { name: t.name, dtype: t.dtype, shape: t.shape, lora: merges.get(t.name) ?? null, outDtype, bytes: numel(t.shape) * DTYPE_BYTES[outDtype] };
  });
  // Fill shards in order; a tensor larger than a shard gets one of its own (as transformers does).
  const groups: Planned[][] = [];
  let size = 0;
  for (const t of planned) {
    if (!groups.length || (size + t.bytes > maxShard && size > 0)) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(t);
    size += t.bytes;
  }
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const shards = groups.map((tensors, i) => {
    const name = n === 1 ? 'model.safetensors' : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    const header = safetensorsHeader(tensors);
    return { name, tensors, header, bytes: header.length + tensors.reduce((a, t) => a + t.bytes, 0) };
  });
  const weightMap: Record<string, string> = {};
  for (const s of shards) for (const t of s.tensors) weightMap[t.name] = s.name;
  const totalSize = planned.reduce((a, t) => a + t.bytes, 0);
  return { shards, index: { metadata: { total_size: totalSize }, weight_map: weightMap }, totalBytes: shards.reduce((a, s) => a + s.bytes, 0) };
}

function widen(raw: Uint8Array, dtype: DType): Float32Array {
  const buf = raw.byteOffset % 4 === 0 ? raw : raw.slice();
  if (dtype === 'F32') return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const u16 = new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
  return dtype === 'F16' ? f16ArrayToF32(u16) : bf16ArrayToF32(u16);
}

function narrow(values: Float32Array, dtype: DType): Uint8Array {
  const out = dtype === 'F32' ? values : dtype === 'F16' ? f32ArrayToF16(values) : f32ArrayToBf16(values);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Tracks the bytes of model data held at once. */
class Held {
  now = 0;
  peak = 0;
  take(n: number) {
    this.now += n;
    this.peak = Math.max(this.peak, this.now);
  }
  drop(n: number) {
    this.now -= n;
  }
}

/**
 * The merged folder's files: config.json (torch_dtype set), the shards, the index (only when
 * there is more than one shard, as transformers does) and any files passed through as they are
 * (generation_config.json, tokenizer files, the model card). `stats` fills in as the shards are
 * written.
 */
export function mergedFiles(
  base: BaseWeights,
  adapter: AdapterTensors,
  baseConfig: Record<string, unknown>,
  options: MergeOptions,
  passThrough: { name: string; data: Uint8Array }[] = [],
): { files: ExportFile[]; plan: MergePlan; stats: MergeStats } {
  const plan = planMerge(base, adapter, options);
  const scale = options.useRslora ? options.alpha / Math.sqrt(options.r) : options.alpha / options.r;
  const blockElements = options.blockElements ?? 1 << 22;
  const held = new Held();
  const stats: MergeStats = { peakHeldBytes: 0, largestTensorBytes: Math.max(0, ...plan.shards.flatMap((s) => s.tensors.map((t) => t.bytes))), mergedTensors: 0, copiedTensors: 0 };

  async function* tensorChunks(t: Planned): AsyncGenerator<Uint8Array> {
    const rows = t.shape.length ? t.shape[0] : 1;
    const cols = rows ? numel(t.shape) / rows : 0;
    const rowsPerBlock = Math.max(1, Math.floor(blockElements / Math.max(1, cols)));
    let a: Float32Array | null = null;
    let b: Float32Array | null = null;
    if (t.lora) {
      a = await adapter.f32(t.lora.a);
      b = await adapter.f32(t.lora.b);
      held.take(a.byteLength + b.byteLength);
    }
    const r = a && cols ? a.length / cols : 0;
    try {
      for (let row = 0; row < rows; row += rowsPerBlock) {
        const end = Math.min(rows, row + rowsPerBlock);
        const raw = await base.read(t.name, row * cols, end * cols);
        const want = (end - row) * cols * DTYPE_BYTES[t.dtype];
        if (raw.length !== want) throw new MergeError(`"${t.name}": read ${raw.length} bytes of rows ${row}..${end}, expected ${want}`);
        held.take(raw.length);
        if (!t.lora && t.dtype === t.outDtype) {
          // Copied as it is.
          yield raw;
          held.drop(raw.length);
          continue;
        }
        // A copy in f32 (widening F16/BF16 makes one; F32 is copied so the read block can go).
        const values = t.dtype === 'F32' ? widen(raw.slice(), 'F32') : widen(raw, t.dtype);
        held.take(values.byteLength);
        if (a && b) {
          // values[i, j] += scale · Σ_k B[row + i, k] · A[k, j]: the delta summed in an f32
          // accumulator (torch's B @ A in f32), scaled, added to the f32 weight.
          const acc = new Float32Array(cols);
          held.take(acc.byteLength);
          for (let i = 0; i < end - row; i++) {
            acc.fill(0);
            for (let k = 0; k < r; k++) {
              const bik = b[(row + i) * r + k];
              if (bik === 0) continue;
              const ak = a.subarray(k * cols, (k + 1) * cols);
              for (let j = 0; j < cols; j++) acc[j] += bik * ak[j];
            }
            const out = values.subarray(i * cols, (i + 1) * cols);
            for (let j = 0; j < cols; j++) out[j] += Math.fround(acc[j] * scale);
          }
          held.drop(acc.byteLength);
        }
        const bytes = narrow(values, t.outDtype);
        if (bytes.buffer !== values.buffer) held.take(bytes.byteLength);
        yield bytes;
        if (bytes.buffer !== values.buffer) held.drop(bytes.byteLength);
        held.drop(values.byteLength + raw.length);
      }
      if (t.lora) stats.mergedTensors++;
      else stats.copiedTensors++;
    } finally {
      if (a && b) held.drop(a.byteLength + b.byteLength);
      stats.peakHeldBytes = held.peak;
    }
  }

  const files: ExportFile[] = [];
  const dtypeName = { F16: 'float16', BF16: 'bfloat16', F32: 'float32' }[options.dtype];
  const config = { ...baseConfig, torch_dtype: dtypeName };
  const text = (name: string, value: unknown): ExportFile => {
    const bytes = new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n');
    return { name, bytes: bytes.length, chunks: async function* () { yield bytes; } };
  };
  files.push(text('config.json', config));
  for (const shard of plan.shards) {
    files.push({
      name: shard.name,
      bytes: shard.bytes,
      chunks: async function* () {
        yield shard.header;
        for (const t of shard.tensors) yield* tensorChunks(t);
      },
    });
  }
  if (plan.shards.length > 1) files.push(text('model.safetensors.index.json', plan.index));
  for (const p of passThrough) {
    if (files.some((f) => f.name === p.name)) throw new MergeError(`"${p.name}" is written by the merge itself`);
    files.push({ name: p.name, bytes: p.data.length, chunks: async function* () { yield p.data; } });
  }
  return { files, plan, stats };
}
