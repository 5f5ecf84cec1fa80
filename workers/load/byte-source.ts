/**
 * A file the loader can read by byte range: a hub file over HTTP Range requests or a
 * dropped `File`. Everything above this layer (safetensors headers, tensor streaming,
 * quantize-on-load) is the same for both.
 */

export interface RangeFile {
  /** The file's name as the user knows it (`model-00001-of-00002.safetensors`). */
  readonly name: string;
  /** Total size in bytes. */
  size(): Promise<number>;
  /**
   * Bytes [begin, end) delivered in order as chunks of at most `chunkBytes` each; a consumer
   * that processes and drops each chunk holds only one at a time.
   */
  stream(begin: number, end: number, chunkBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array>;
}

/** All of [begin, end) in one array (headers, small tensors). */
export async function readRange(file: RangeFile, begin: number, end: number, signal?: AbortSignal): Promise<Uint8Array> {
  const out = new Uint8Array(end - begin);
  let pos = 0;
  for await (const chunk of file.stream(begin, end, Math.max(1, end - begin), signal)) {
    out.set(chunk, pos);
    pos += chunk.byteLength;
  }
  if (pos !== out.byteLength) throw new Error(`${file.name}: expected ${out.byteLength} bytes from ${begin}, got ${pos}`);
  return out;
}

/**
 * Regroups arbitrary pieces into chunks of exactly `chunkBytes` (the last may be shorter). With
 * `totalBytes` known, every chunk is its own exactly sized buffer (a short last chunk is not a
 * view into a full-size one), so a holder of a chunk holds only its bytes.
 */
export async function* rechunk(pieces: AsyncIterable<Uint8Array>, chunkBytes: number, totalBytes = Infinity): AsyncIterable<Uint8Array> {
  let emitted = 0;
  const next = () => new Uint8Array(Math.max(1, Math.min(chunkBytes, totalBytes - emitted)));
  let buffer = next();
  let filled = 0;
  for await (const piece of pieces) {
    let offset = 0;
    while (offset < piece.byteLength) {
      const take = Math.min(buffer.byteLength - filled, piece.byteLength - offset);
      buffer.set(piece.subarray(offset, offset + take), filled);
      filled += take;
      offset += take;
      if (filled === buffer.byteLength) {
        emitted += filled;
        yield buffer;
        buffer = next();
        filled = 0;
      }
    }
  }
  if (filled > 0) yield buffer.subarray(0, filled);
}

/** A dropped file (or any Blob): slices are read lazily, so nothing larger than a chunk is in memory. */
export class BlobFile implements RangeFile {
  constructor(
    private readonly blob: Blob,
    readonly name: string = (blob as File).name ?? 'blob',
  ) {}

  async size(): Promise<number> {
    return this.blob.size;
  }

  async *stream(begin: number, end: number, chunkBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    if (begin < 0 || end > this.blob.size || begin > end) {
      throw new RangeError(`${this.name}: bytes [${begin}, ${end}) lie outside the file (${this.blob.size} bytes)`);
    }
    for (let pos = begin; pos < end; pos += chunkBytes) {
      signal?.throwIfAborted();
      const stop = Math.min(end, pos + chunkBytes);
      yield new Uint8Array(await this.blob.slice(pos, stop).arrayBuffer());
    }
  }
}
