/**
 * Where base weights come from: a small interface so the model does not care whether tensors
 * sit in memory, come from the hub in ranges or from IndexedDB. The in-memory safetensors
 * implementation (one file or a sharded set with model.safetensors.index.json) lives here.
 */
import { SafetensorsFile, toF32, type DType } from '../formats/safetensors';
import { shardNameMessage, shardNameProblem } from '../formats/shard-name';
import type { Nf4Quantized } from '../nf4/reference';
import type { Nf4GpuWeight, Nf4Shaders } from '../nf4/gpu';
import type { Gpu } from '../gpu/runtime';

export interface WeightInfo {
  dtype: DType;
  shape: number[];
}

export interface WeightSource {
  /** Every tensor name the source holds. */
  names(): string[];
  info(name: string): WeightInfo | undefined;
  /** The tensor as float32 (F16/BF16 widened exactly). */
  readF32(name: string): Promise<Float32Array>;
  /** The tensor's stored bytes (little-endian), e.g. to upload 16-bit data as it is. */
  readRaw(name: string): Promise<Uint8Array>;
  /**
   * A linear weight the source already holds in NF4 (a cached model, a bitsandbytes checkpoint),
   * or null: QLoRA mode uploads it as it is instead of widening and requantizing it.
   */
  readNf4?(name: string): Promise<Nf4Quantized | null>;
  /**
   * A linear weight the source quantizes on the GPU itself (its stored bytes streamed chunk by
   * chunk into the GPU quantizer, never widened on the CPU), or null: QLoRA mode then falls
   * back to `readNf4`, then to `readF32`.
   */
  readNf4Gpu?(name: string, gpu: Gpu, shaders: Nf4Shaders, label: string): Promise<Nf4GpuWeight | null>;
  /** The stored bytes in pieces, in order (a large 16-bit table goes to the GPU without a whole CPU copy). */
  readRawChunks?(name: string): AsyncIterable<Uint8Array>;
  /**
   * The order reads are cheapest in (the order a stream or a cache holds the tensors): a model
   * built from the source asks in this order, so nothing waits in memory for its turn.
   */
  order?(): string[];
  /** Short description for error messages (file or repository). */
  readonly label: string;
}

export class WeightError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightError';
  }
}

/** One or more safetensors files held in memory; a tensor name must not appear in two files. */
export class SafetensorsSource implements WeightSource {
  private readonly byName = new Map<string, SafetensorsFile>();
  readonly label: string;

  constructor(files: SafetensorsFile[]) {
    for (const f of files) {
      for (const name of f.names) {
        const other = this.byName.get(name);
        if (other) throw new WeightError(`tensor "${name}" appears in both ${other.file} and ${f.file}`);
        this.byName.set(name, f);
      }
    }
    this.label = files.map((f) => f.file).join(', ');
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  info(name: string): WeightInfo | undefined {
    const f = this.byName.get(name);
    if (!f) return undefined;
    const t = f.info(name);
    return { dtype: t.dtype, shape: t.shape };
  }

  private file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new WeightError(`${this.label}: no tensor "${name}"`);
    return f;
  }

  async readF32(name: string): Promise<Float32Array> {
    const f = this.file(name);
    return toF32(f.info(name), f.raw(name), f.file);
  }

  async readRaw(name: string): Promise<Uint8Array> {
    return this.file(name).raw(name);
  }
}

/**
 * Opens a model folder's weights: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json` (its `weight_map`). `read` returns a file's bytes or null
 * when it does not exist.
 */
export async function openSafetensorsWeights(folder: string, read: (path: string) => Promise<Uint8Array | null>): Promise<SafetensorsSource> {
  const join = (name: string) => (folder.endsWith('/') || folder === '' ? folder + name : `${folder}/${name}`);
  const indexPath = join('model.safetensors.index.json');
  const index = await read(indexPath);
  if (index) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(new TextDecoder().decode(index)) as { weight_map: Record<string, string> }).weight_map;
    } catch (err) {
      throw new WeightError(`${indexPath}: not valid JSON (${(err as Error).message})`);
    }
    if (!map || typeof map !== 'object' || Array.isArray(map)) throw new WeightError(`${indexPath}: "weight_map" is missing`);
    for (const [tensor, shard] of Object.entries(map)) {
      const problem = shardNameProblem(shard);
      if (problem !== null) throw new WeightError(`${indexPath}: ${shardNameMessage(tensor, shard, problem)}`);
    }
    const shards = [...new Set(Object.values(map))].sort();
    const files: SafetensorsFile[] = [];
    for (const shard of shards) {
      const bytes = await read(join(shard));
      if (!bytes) throw new WeightError(`${indexPath}: shard "${shard}" is listed but missing`);
      files.push(new SafetensorsFile(bytes, join(shard)));
    }
    const source = new SafetensorsSource(files);
    for (const [name, shard] of Object.entries(map)) {
      if (!source.info(name)) throw new WeightError(`${indexPath}: "${name}" is mapped to ${shard} but that shard does not hold it`);
    }
    return source;
  }
  const single = join('model.safetensors');
  const bytes = await read(single);
  if (!bytes) throw new WeightError(`${folder}: neither model.safetensors nor model.safetensors.index.json exists`);
  return new SafetensorsSource([new SafetensorsFile(bytes, single)]);
}
