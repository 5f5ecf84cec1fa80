/**
 * The engine's `WeightSource` for loading a model lean: tensors are read one at a time, in the
 * order their files (or the cache) store them (`order()`), and each is handed over once. A read
 * keeps only what it returns, and only until the next read: the CPU holds about one tensor
 * (an NF4 state, or a chunk of a 16-bit table on its way to the GPU) plus one read chunk.
 *
 * - `DownloadSource`: safetensors by range → NF4 (the GPU quantizer when asked, else the CPU
 *   reference; linear weights as stored when the base is not quantized) → the engine, each
 *   tensor stored in the cache on its way.
 * - `CachedSource`: a cached copy, tensor by tensor (16-bit tables part by part).
 *
 * `HeldBytes` measures what they hold (chunks, NF4 states, f32 widening, readback windows).
 */
import { toF32, type DType } from '../formats/safetensors';
import type { Gpu } from '../gpu/runtime';
import type { WeightInfo, WeightSource } from '../model/weights';
import { releaseNf4, type Nf4GpuWeight, type Nf4Shaders } from '../nf4/gpu';
import { blockCount, numel, type Nf4Dtype, type Nf4Quantized } from '../nf4/reference';
import { NESTED_BLOCKSIZE } from '../nf4/tables';
import type { ArchShape } from './arch';
import { arraysOf, tensorMeta, CacheError, type CacheManifest, type CacheWriter, type ModelCache } from './cache';
import { gpuNf4FromChunks, readBackNf4 } from './gpu-target';
import type { HeldBytes } from './held';
import { isNf4, type QuantSettings } from './presets';
import {
  DEFAULT_CHUNK_BYTES, LAYER_DTYPE, chunkToF32, cpuDenseWriter, cpuNf4Writer, linearChunks, loadPlan, prequantizedInfo, readPrequantized, storedBytes,
  type LoadStats, type LoadedTensor, type Nf4Tensor, type TensorPlan,
} from './quantize-on-load';
import type { ModelWeights } from './weights';
import type { FileHasher } from './verify';

/** A source read tensor by tensor in its own order, with the CPU form for callers without a GPU. */
export interface StreamedSource extends WeightSource {
  order(): string[];
  /** NF4 state for a quantized linear weight, stored bytes for the rest (cache drains, Node tests). */
  readTensor(name: string): Promise<LoadedTensor>;
  /** Names not read yet. */
  unread(): string[];
  /** Drops what the last read returned (the caller is done with it). */
  release(): void;
}

export type Quantizer = 'gpu' | 'cpu';


/** Bytes of a tensor's arrays, as the cache stores them. */
const tensorBytes = (t: LoadedTensor) => arraysOf(t).reduce((n, [, a]) => n + a.byteLength, 0);

/** What every streamed source shares: read bookkeeping and the "held until the next read" rule. */
abstract class Streamed implements StreamedSource {
  private readonly read = new Set<string>();
  /** Bytes of the value the last read returned. */
  private last = 0;

  protected constructor(
    readonly label: string,
    protected readonly held: HeldBytes,
    private readonly onTensor?: (name: string, index: number, count: number) => void,
  ) {}

  abstract order(): string[];
  abstract names(): string[];
  abstract info(name: string): WeightInfo | undefined;
  abstract readTensor(name: string): Promise<LoadedTensor>;

  unread(): string[] {
    return this.order().filter((n) => !this.read.has(n));
  }

  release(): void {
    this.held.drop(this.last);
    this.last = 0;
  }

  /** A read starts: the previous value is the caller's now. */
  protected begin(name: string): void {
    this.release();
    if (!this.info(name)) throw new Error(`${this.label}: no tensor "${name}"`);
  }

  /** A read ends, handing over `bytes` (already counted as held) until the next read. */
  protected delivered(name: string, bytes: number): void {
    this.last = bytes;
    if (!this.read.has(name)) {
      this.read.add(name);
      this.onTensor?.(name, this.read.size, this.names().length);
    }
  }

  async readNf4(name: string): Promise<Nf4Quantized | null> {
    if (this.isDense(name)) return null;
    const t = await this.readTensor(name);
    return t.kind === 'nf4' ? t.quant : null;
  }

  protected abstract isDense(name: string): boolean;

  async readF32(name: string): Promise<Float32Array> {
    const info = this.info(name);
    if (!info) throw new Error(`${this.label}: no tensor "${name}"`);
    const raw = await this.readRaw(name);
    return toF32({ name, dtype: info.dtype, shape: info.shape, begin: 0, end: raw.byteLength }, raw, this.label);
  }

  abstract readRaw(name: string): Promise<Uint8Array>;
}

export interface DownloadSourceOptions {
  weights: ModelWeights;
  arch: ArchShape;
  quant: QuantSettings;
  label: string;
  /** Who quantizes linear weights when the engine offers a GPU (`readNf4Gpu`). */
  quantizer: Quantizer;
  /** The cache copy being written (null: nothing is cached); tensors it holds already (a resumed download) are read back from it. */
  writer: CacheWriter | null;
  /** The cache the writer writes to (reads back what a previous attempt stored). */
  cache?: ModelCache | null;
  /** Per source file, its running sha256 (hub files): checked when its last tensor is done. */
  hashers?: Map<string, FileHasher> | null;
  /** What the user should hear about: a file refused for its sha256, a file verified. */
  onNotice?: (message: string) => void;
  held: HeldBytes;
  chunkBytes?: number;
  signal?: AbortSignal;
  onTensor?: (name: string, index: number, count: number) => void;
}

/** Safetensors files read by range, quantized as they stream, each tensor cached on its way. */
export class DownloadSource extends Streamed {
  private readonly counts: Omit<LoadStats, 'peakHeldBytes'>;
  private readonly chunkBytes: number;
  private readonly stored: string[];
  /** NF4 double quantization (only NF4-planned tensors ask). */
  private readonly doubleQuant: boolean;

  private constructor(
    private readonly o: DownloadSourceOptions,
    private readonly plan: Map<string, TensorPlan>,
    private readonly prequant: Map<string, { shape: number[]; dtype: Nf4Dtype }>,
  ) {
    super(o.label, o.held, o.onTensor);
    this.chunkBytes = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.doubleQuant = isNf4(o.quant) && o.quant.doubleQuant;
    this.counts = { tensors: 0, quantized: 0, prequantized: 0, dense: 0, sourceBytes: 0, headerBytes: 0 };
    for (const shard of o.weights.shards) this.counts.headerBytes += shard.headerBytes;
    const shardIndex = new Map(o.weights.shards.map((s, i) => [s.file, i]));
    const at = (n: string) => {
      const t = o.weights.info(n);
      return [shardIndex.get(t.file) ?? 0, t.begin] as const;
    };
    this.stored = [...plan.keys()].sort((a, b) => {
      const [sa, ba] = at(a);
      const [sb, bb] = at(b);
      return sa - sb || ba - bb;
    });
    for (const name of this.stored) this.lastOfFile.set(o.weights.info(name).file.name, name);
    for (const [file, hasher] of o.hashers ?? []) {
      hasher.restore(o.writer?.fileProgress(file));
      hasher.arm();
    }
  }

  /**
   * Checks every hashed file not checked yet (its last tensor was stored by an earlier attempt
   * that stopped before checking it): called before the copy is committed.
   */
  async verifyRemaining(): Promise<void> {
    for (const [file, name] of this.lastOfFile) {
      if (!this.o.hashers?.has(file) || this.o.writer?.fileProgress(file)?.verified) continue;
      await this.afterTensor(name);
    }
  }

  /** A tensor a previous attempt stored fails its checks: its file's stored tensors are dropped, so the next attempt fetches them. */
  private async storedCorrupt(name: string, err: unknown): Promise<never> {
    if (err instanceof CacheError) {
      const file = this.o.weights.info(name).file.name;
      this.o.hashers?.get(file)?.reset();
      await this.o.writer!.dropFile(file);
      err.message += `; the stored part of ${file} was dropped and is downloaded again`;
      this.o.onNotice?.(err.message);
    }
    throw err;
  }

  /** Per file, the last tensor in stored order (its end is where the file is checked). */
  private readonly lastOfFile = new Map<string, string>();

  /** Whether a previous attempt stored this tensor: it is read back from the cache, not downloaded. */
  private resumed(name: string): number {
    const w = this.o.writer;
    if (!w || !this.o.cache || !w.has(name) || this.plan.get(name)?.kind === 'prequantized') return -1;
    return w.indexOf(name);
  }

  /** Before a tensor is downloaded: hash any bytes of its file before it that were never read (so it feeds the hash as it streams). */
  private async beforeDownload(name: string): Promise<void> {
    const info = this.o.weights.info(name);
    await this.o.hashers?.get(info.file.name)?.catchUp(info.begin, this.o.signal);
  }

  /**
   * After a tensor: records how far its file was hashed; after the file's last tensor, hashes
   * its rest and checks it against the hub's sha256. A mismatch drops the file's stored
   * tensors (they are fetched again by the next attempt) and throws ChecksumError.
   */
  private async afterTensor(name: string): Promise<void> {
    const file = this.o.weights.info(name).file.name;
    const hasher = this.o.hashers?.get(file);
    if (!hasher) return;
    const writer = this.o.writer;
    if (this.lastOfFile.get(file) !== name) {
      writer?.setFileProgress(file, await hasher.progress());
      return;
    }
    try {
      const { actual, expected } = await hasher.verify(this.o.signal);
      this.o.onNotice?.(expected === null ? `${file}: the hub reported no sha256; not verified (sha256 ${actual})` : `${file}: sha256 verified`);
      writer?.setFileProgress(file, await hasher.progress(expected !== null));
    } catch (err) {
      if ((err as Error).name !== 'ChecksumError') throw err;
      hasher.reset();
      const dropped = (await writer?.dropFile(file)) ?? 0;
      const message = `${(err as Error).message}: it was refused${dropped ? `, its ${dropped} stored tensors dropped from the cache,` : ''} and is downloaded again`;
      this.o.onNotice?.(message);
      (err as Error).message = message;
      throw err;
    }
  }

  /** Plans every tensor (a Linear4bit layer's shape comes from its tiny quant state). */
  static async open(o: DownloadSourceOptions): Promise<DownloadSource> {
    const plan = loadPlan(o.weights, o.arch, o.quant);
    const prequant = new Map<string, { shape: number[]; dtype: Nf4Dtype }>();
    for (const [name, p] of plan) if (p.kind === 'prequantized') prequant.set(name, await prequantizedInfo(o.weights, p.prefix, o.signal));
    return new DownloadSource(o, plan, prequant);
  }

  order(): string[] {
    return this.stored;
  }

  names(): string[] {
    return [...this.plan.keys()];
  }

  info(name: string): WeightInfo | undefined {
    const p = this.plan.get(name);
    if (!p) return undefined;
    const pq = this.prequant.get(name);
    if (pq) return { dtype: LAYER_DTYPE[pq.dtype], shape: pq.shape };
    const t = this.o.weights.info(name);
    return { dtype: t.dtype, shape: t.shape };
  }

  protected isDense(name: string): boolean {
    return this.plan.get(name)?.kind === 'dense';
  }

  /** What was read so far; `peakHeldBytes` is the meter's peak. */
  get stats(): LoadStats {
    return { ...this.counts, peakHeldBytes: this.held.peak };
  }

  private seen = (chunk: Uint8Array) => {
    this.counts.sourceBytes += chunk.byteLength;
  };

  private caching(name: string): CacheWriter | null {
    const w = this.o.writer;
    return w && !w.has(name) ? w : null;
  }

  /** The GPU quantizer's result for a linear weight; its state streams back into the cache window by window. */
  async readNf4Gpu(name: string, gpu: Gpu, shaders: Nf4Shaders, label: string): Promise<Nf4GpuWeight | null> {
    const p = this.plan.get(name);
    // A tensor a previous attempt stored comes back from the cache through readNf4.
    if (this.o.quantizer !== 'gpu' || p?.kind !== 'nf4' || this.resumed(name) >= 0) return null;
    this.begin(name);
    await this.beforeDownload(name);
    const info = this.o.weights.info(name);
    // Each chunk is held from its arrival until the next one is asked for (it is on the GPU by then).
    let inFlight = 0;
    const source = linearChunks(this.o.weights, name, this.chunkBytes, (chunk) => {
      this.held.drop(inFlight);
      this.seen(chunk);
      this.held.hold((inFlight = chunk.byteLength));
    }, this.o.signal);
    // The quantizer itself keeps every block's f32 absmax on the CPU, then double-quantizes it there.
    const blocks = blockCount(numel(info.shape));
    const absmax = 4 * blocks + (this.doubleQuant ? blocks + 4 * blockCount(blocks, NESTED_BLOCKSIZE) : 0);
    this.held.hold(absmax);
    let weight: Nf4GpuWeight;
    try {
      weight = await gpuNf4FromChunks(gpu, shaders, name, info.shape, this.doubleQuant, source, label);
    } finally {
      this.held.drop(inFlight + absmax);
    }
    const writer = this.caching(name);
    if (writer) {
      // A failed cache write must not strand the weight: nobody else holds it yet.
      try {
        const entry = writer.tensor({ name, kind: 'nf4', dtype: p.dtype, shape: info.shape, file: info.file.name, ...(weight.doubleQuant ? { offset: weight.offset } : {}) });
        await readBackNf4(gpu, weight, entry, this.chunkBytes, this.held);
        entry.end();
      } catch (err) {
        releaseNf4(gpu, weight);
        throw err;
      }
    }
    try {
      await this.afterTensor(name);
    } catch (err) {
      releaseNf4(gpu, weight);
      throw err;
    }
    this.count('quantized');
    this.delivered(name, 0);
    return weight;
  }

  private count(kind: 'quantized' | 'prequantized' | 'dense'): void {
    this.counts[kind]++;
    this.counts.tensors++;
  }

  /** A dense tensor's stored bytes chunk by chunk, each stored in the cache before it is passed on. */
  async *readRawChunks(name: string): AsyncIterable<Uint8Array> {
    if (!this.isDense(name)) {
      yield await this.readRaw(name);
      return;
    }
    this.begin(name);
    const info = this.o.weights.info(name);
    const index = this.resumed(name);
    if (index >= 0) {
      const parts = this.o.cache!.readParts(this.o.writer!.stored, index, 'data')[Symbol.asyncIterator]();
      for (;;) {
        const next = await parts.next().catch((err) => this.storedCorrupt(name, err));
        if (next.done) break;
        this.held.hold(next.value.byteLength);
        try {
          yield next.value;
        } finally {
          this.held.drop(next.value.byteLength);
        }
      }
      this.count('dense');
      this.delivered(name, 0);
      return;
    }
    await this.beforeDownload(name);
    const writer = this.caching(name);
    const entry = writer?.tensor({ name, kind: 'dense', dtype: info.dtype, shape: info.shape, file: info.file.name }) ?? null;
    const data = entry?.array('data') ?? null;
    for await (const chunk of this.o.weights.stream(name, this.chunkBytes, 1, this.o.signal)) {
      this.seen(chunk);
      this.held.hold(chunk.byteLength);
      try {
        await data?.push(chunk);
        yield chunk;
      } finally {
        this.held.drop(chunk.byteLength);
      }
    }
    data?.end();
    entry?.end();
    await this.afterTensor(name);
    this.count('dense');
    this.delivered(name, 0);
  }

  async readRaw(name: string): Promise<Uint8Array> {
    const p = this.plan.get(name);
    if (!p) throw new Error(`${this.label}: no tensor "${name}"`);
    if (p.kind !== 'nf4') return storedBytes(await this.readTensor(name));
    // A linear weight wanted unquantized (exact mode): as stored, with its NF4 state cached.
    this.begin(name);
    await this.beforeDownload(name);
    const bytes = await this.o.weights.read(name, this.o.signal);
    this.seen(bytes);
    this.held.hold(bytes.byteLength);
    const writer = this.caching(name);
    if (writer) {
      const info = this.o.weights.info(name);
      const q = cpuNf4Writer(name, p.dtype, info.shape, this.doubleQuant);
      q.push(chunkToF32(bytes, info.dtype, info.file.name, name));
      await this.store(writer, await q.finish(), info.file.name);
    }
    await this.afterTensor(name);
    this.count('quantized');
    this.delivered(name, bytes.byteLength);
    return bytes;
  }

  async readTensor(name: string): Promise<LoadedTensor> {
    const p = this.plan.get(name);
    if (!p) throw new Error(`${this.label}: no tensor "${name}"`);
    this.begin(name);
    const info = this.o.weights.info(name);
    const index = this.resumed(name);
    if (index >= 0) {
      const t = await this.o.cache!.readTensor(this.o.writer!.stored, index, this.held).catch((err) => this.storedCorrupt(name, err));
      this.count(p.kind === 'nf4' ? 'quantized' : 'dense');
      this.delivered(name, tensorBytes(t));
      return t;
    }
    await this.beforeDownload(name);
    let t: LoadedTensor;
    if (p.kind === 'prequantized') {
      const { tensor, bytes } = await readPrequantized(this.o.weights, p.prefix, this.o.signal);
      this.counts.sourceBytes += bytes;
      t = tensor;
      // The parts, then one file gathered from them that the state's arrays view.
      this.held.hold(2 * bytes);
      this.held.drop(2 * bytes - tensorBytes(t));
      this.count('prequantized');
    } else if (p.kind === 'nf4') {
      t = await this.cpuNf4(name, p.dtype, info.shape);
      this.count('quantized');
    } else {
      const writer = cpuDenseWriter(name, info.dtype, info.shape);
      this.held.hold(info.end - info.begin);
      for await (const chunk of this.o.weights.stream(name, this.chunkBytes, 1, this.o.signal)) {
        this.seen(chunk);
        writer.push(chunk);
      }
      t = await writer.finish();
      this.count('dense');
    }
    try {
      const writer = this.caching(name);
      if (writer) await this.store(writer, t, info.file.name);
      await this.afterTensor(name);
    } catch (err) {
      this.held.drop(tensorBytes(t));
      throw err;
    }
    this.delivered(name, tensorBytes(t));
    return t;
  }

  /** Stores a whole tensor, noting the file it came from. */
  private async store(writer: CacheWriter, t: LoadedTensor, file: string): Promise<void> {
    const entry = writer.tensor({ ...tensorMeta(t), file });
    for (const [field, data] of arraysOf(t)) await entry.write(field, data);
    entry.end();
  }

  /** CPU NF4, chunk by chunk: holds the growing state, one chunk and its f32 widening. */
  private async cpuNf4(name: string, dtype: Nf4Dtype, shape: number[]): Promise<Nf4Tensor> {
    const info = this.o.weights.info(name);
    const n = numel(shape);
    const absmaxBytes = 4 * blockCount(n);
    const building = ((n + 1) >> 1) + absmaxBytes;
    const writer = cpuNf4Writer(name, dtype, shape, this.doubleQuant);
    this.held.hold(building);
    let t: Nf4Tensor;
    try {
      for await (const chunk of linearChunks(this.o.weights, name, this.chunkBytes, this.seen, this.o.signal).chunks) {
        const values = chunkToF32(chunk, info.dtype, info.file.name, name);
        const widened = values.buffer === chunk.buffer ? 0 : values.byteLength;
        this.held.hold(chunk.byteLength + widened);
        writer.push(values);
        this.held.drop(chunk.byteLength + widened);
      }
      t = await writer.finish();
    } catch (err) {
      this.held.drop(building);
      throw err;
    }
    // The packed codes stay; the f32 absmax gives way to the double-quantized state.
    this.held.hold(tensorBytes(t) - t.quant.packed.byteLength);
    this.held.drop(absmaxBytes);
    return t;
  }
}

/** A cached copy read tensor by tensor (16-bit tables part by part), in the order it was stored. */
export class CachedSource extends Streamed {
  private readonly index = new Map<string, number>();

  constructor(
    private readonly cache: ModelCache,
    private readonly manifest: CacheManifest,
    label: string,
    held: HeldBytes,
    onTensor?: (name: string, index: number, count: number) => void,
  ) {
    super(label, held, onTensor);
    manifest.tensors.forEach((t, i) => this.index.set(t.name, i));
  }

  order(): string[] {
    return this.manifest.tensors.map((t) => t.name);
  }

  names(): string[] {
    return this.order();
  }

  private entry(name: string) {
    const i = this.index.get(name);
    if (i === undefined) throw new Error(`${this.label}: no tensor "${name}"`);
    return { i, entry: this.manifest.tensors[i] };
  }

  info(name: string): WeightInfo | undefined {
    const i = this.index.get(name);
    if (i === undefined) return undefined;
    const t = this.manifest.tensors[i];
    return { dtype: t.kind === 'nf4' ? LAYER_DTYPE[t.dtype as Nf4Dtype] : (t.dtype as DType), shape: t.shape };
  }

  protected isDense(name: string): boolean {
    return this.entry(name).entry.kind === 'dense';
  }

  async readTensor(name: string): Promise<LoadedTensor> {
    this.begin(name);
    const t = await this.cache.readTensor(this.manifest, this.entry(name).i, this.held).catch((err) => this.corrupt(err));
    this.delivered(name, tensorBytes(t));
    return t;
  }

  /** A stored copy that fails its checks is removed, so the next load downloads it again. */
  private async corrupt(err: unknown): Promise<never> {
    if (err instanceof CacheError) {
      await this.cache.delete(this.manifest.key);
      err.message += '; the cached copy was removed and is downloaded again';
      this.onCorrupt?.(err.message);
    }
    throw err;
  }

  /** Told when a stored copy failed its checks and was removed. */
  onCorrupt?: (message: string) => void;

  async *readRawChunks(name: string): AsyncIterable<Uint8Array> {
    const { i, entry } = this.entry(name);
    if (entry.kind !== 'dense') {
      yield await this.readRaw(name);
      return;
    }
    this.begin(name);
    const parts = this.cache.readParts(this.manifest, i, 'data')[Symbol.asyncIterator]();
    for (;;) {
      const next = await parts.next().catch((err) => this.corrupt(err));
      if (next.done) break;
      const part = next.value;
      this.held.hold(part.byteLength);
      try {
        yield part;
      } finally {
        this.held.drop(part.byteLength);
      }
    }
    this.delivered(name, 0);
  }

  async readRaw(name: string): Promise<Uint8Array> {
    // Exact mode: an unquantized copy's stored bytes; from a cached NF4 copy, the dequantized values in the layer's dtype.
    return storedBytes(await this.readTensor(name));
  }
}
