/**
 * A model's weights spread over one or more safetensors files, read by range: headers are
 * parsed first (a few KB each), then every tensor can be streamed on its own. The same code
 * serves hub files and dropped files.
 */
import { headerLength, parseHeader, SafetensorsError, DTYPE_BYTES, type TensorInfo } from '../formats/safetensors';
import { readRange, type RangeFile } from './byte-source';
import { shardNameMessage, shardNameProblem } from '../formats/shard-name';

/** A tensor with the file it lives in. */
export interface SourcedTensor extends TensorInfo {
  file: RangeFile;
}

/** First read of a file: usually covers the whole header, so one request does. */
const SPECULATIVE_HEADER_BYTES = 64 * 1024;

export interface ShardHeader {
  file: RangeFile;
  size: number;
  /** Header bytes (8 + JSON), what the loader held to parse it. */
  headerBytes: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** Reads and validates one safetensors header by range. */
export async function readShardHeader(file: RangeFile, signal?: AbortSignal): Promise<ShardHeader> {
  // The first read also teaches an HTTP file its size (Content-Range), so size() is free after it.
  let prefix: Uint8Array;
  try {
    const first = Math.min(SPECULATIVE_HEADER_BYTES, await file.size());
    prefix = await readRange(file, 0, first, signal);
  } catch (err) {
    if (err instanceof RangeError) throw new SafetensorsError(file.name, err.message);
    throw err;
  }
  const size = await file.size();
  const n = headerLength(prefix, file.name);
  if (8 + n > size) throw new SafetensorsError(file.name, `header of ${n} bytes runs past the end of the file (${size} bytes): truncated file?`);
  const json = 8 + n <= prefix.byteLength ? prefix.subarray(8, 8 + n) : await readRange(file, 8, 8 + n, signal);
  const header = parseHeader(json, file.name, size);
  return { file, size, headerBytes: 8 + n, tensors: header.tensors, metadata: header.metadata };
}

/** `model.safetensors.index.json`: tensor name → shard file name. */
export function parseShardIndex(text: string, file = 'model.safetensors.index.json'): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(file, `not valid JSON: ${(err as Error).message}`);
  }
  const weightMap = (json as { weight_map?: unknown })?.weight_map;
  if (!weightMap || typeof weightMap !== 'object' || Array.isArray(weightMap)) throw new SafetensorsError(file, 'has no "weight_map" object');
  const out = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    const problem = shardNameProblem(shard);
    if (problem !== null) throw new SafetensorsError(file, shardNameMessage(tensor, shard, problem));
    out.set(tensor, shard as string);
  }
  return out;
}

/** Every tensor of a model, by name, with where it lives. */
export class ModelWeights {
  private constructor(
    readonly shards: ShardHeader[],
    private readonly tensors: Map<string, SourcedTensor>,
  ) {}

  /**
   * Opens the shards. With an index, every tensor it lists must be in the shard it names, and
   * every shard it names must be available (`openShard` returns null for a missing one).
   */
  static async open(
    shardNames: string[],
    openShard: (name: string) => RangeFile | null,
    index: Map<string, string> | null,
    signal?: AbortSignal,
  ): Promise<ModelWeights> {
    const names = index ? [...new Set(index.values())] : shardNames;
    const shards: ShardHeader[] = [];
    for (const name of names) {
      const file = openShard(name);
      if (!file) {
        const example = index ? [...index].find(([, s]) => s === name)?.[0] : undefined;
        throw new SafetensorsError(name, 'shard listed in model.safetensors.index.json is missing', example);
      }
      try {
        shards.push(await readShardHeader(file, signal));
      } catch (err) {
        // A hub file that answers 404 is a shard that is not there.
        if ((err as { status?: number }).status !== 404) throw err;
        const example = index ? [...index].find(([, s]) => s === name)?.[0] : undefined;
        throw new SafetensorsError(name, index ? 'shard listed in model.safetensors.index.json is missing' : 'file is missing', example);
      }
    }
    const tensors = new Map<string, SourcedTensor>();
    for (const shard of shards) {
      for (const info of shard.tensors.values()) {
        if (tensors.has(info.name)) throw new SafetensorsError(shard.file.name, `tensor also appears in ${tensors.get(info.name)!.file.name}`, info.name);
        tensors.set(info.name, { ...info, file: shard.file });
      }
    }
    if (index) {
      for (const [tensor, shard] of index) {
        const found = tensors.get(tensor);
        if (!found) throw new SafetensorsError(shard, 'tensor listed in model.safetensors.index.json is not in the shard', tensor);
        if (found.file.name !== shard) throw new SafetensorsError(shard, `index places the tensor here but it is in ${found.file.name}`, tensor);
      }
    }
    return new ModelWeights(shards, tensors);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): SourcedTensor {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.shards.map((s) => s.file.name).join(', ') || 'model', 'no such tensor in the model files', name);
    return t;
  }

  /** Total bytes of tensor data (what a full download reads). */
  get dataBytes(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.end - t.begin;
    return n;
  }

  /**
   * The tensor's bytes in chunks of `chunkBytes` rounded down to whole elements; with
   * `alignElements`, to a multiple of that many elements (64 for NF4 blocks).
   */
  stream(name: string, chunkBytes: number, alignElements = 1, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const t = this.info(name);
    const unit = DTYPE_BYTES[t.dtype] * alignElements;
    const chunk = Math.max(unit, Math.floor(chunkBytes / unit) * unit);
    return this.wrapErrors(t, t.file.stream(t.begin, t.end, chunk, signal));
  }

  /** The whole tensor (small tensors: norms, biases). */
  async read(name: string, signal?: AbortSignal): Promise<Uint8Array> {
    const t = this.info(name);
    const out = new Uint8Array(t.end - t.begin);
    let pos = 0;
    for await (const piece of this.wrapErrors(t, t.file.stream(t.begin, t.end, out.byteLength || 1, signal))) {
      out.set(piece, pos);
      pos += piece.byteLength;
    }
    return out;
  }

  private async *wrapErrors(t: SourcedTensor, pieces: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
    let received = 0;
    try {
      for await (const piece of pieces) {
        received += piece.byteLength;
        yield piece;
      }
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      // A lost connection stays a network error (what finished is kept; the page offers to resume), not a broken file.
      if ((err as Error).name === 'HubError' || (err as Error).name === 'TypeError') throw err;
      throw new SafetensorsError(t.file.name, `reading bytes [${t.begin}, ${t.end}) failed after ${received}: ${(err as Error).message}`, t.name);
    }
    if (received !== t.end - t.begin) throw new SafetensorsError(t.file.name, `got ${received} of ${t.end - t.begin} bytes: truncated file?`, t.name);
  }
}
