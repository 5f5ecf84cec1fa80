/**
 * A model folder the CLI was given, as the loader's `ModelFileSet`: small files read as text
 * through the runner, a shard read whole on first use (the runner serves whole files) and then
 * sliced. The studio's built-in presets are read over HTTP like the page reads them.
 */
import type { RangeFile } from '../load/byte-source';
import type { ModelFileSet } from '../load/sources';
import { joinPath, type CliIo } from './io';

class CliFile implements RangeFile {
  private bytes: Promise<Uint8Array> | null = null;

  constructor(
    private readonly io: CliIo,
    private readonly path: string,
    readonly name: string,
  ) {}

  private read(): Promise<Uint8Array> {
    this.bytes ??= this.io.readFile(this.path);
    return this.bytes;
  }

  async size(): Promise<number> {
    return (await this.read()).byteLength;
  }

  async *stream(begin: number, end: number, chunkBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const bytes = await this.read();
    if (begin < 0 || end > bytes.byteLength || begin > end) throw new RangeError(`${this.path}: bytes [${begin}, ${end}) lie outside the file (${bytes.byteLength} bytes)`);
    for (let pos = begin; pos < end; pos += chunkBytes) {
      signal?.throwIfAborted();
      yield bytes.slice(pos, Math.min(end, pos + chunkBytes));
    }
  }
}

export function cliFileSet(io: CliIo, dir: string): ModelFileSet {
  return {
    label: dir,
    async text(path) {
      const full = joinPath(dir, path);
      return (await io.exists(full)) ? io.readText(full) : null;
    },
    file: (path) => new CliFile(io, joinPath(dir, path), path),
    shardsWithoutIndex: () => ['model.safetensors'],
  };
}

const COMMIT = /^[0-9a-f]{40}$/;

/**
 * The hub commit a model folder holds, when it says so: a hub cache snapshot
 * (`…/snapshots/<commit>/`), or a `huggingface-cli download --local-dir` folder, whose
 * `.cache/huggingface/download/config.json.metadata` starts with the commit. Else null.
 */
export async function folderCommit(io: CliIo, dir: string): Promise<string | null> {
  const snapshot = /(?:^|[\\/])snapshots[\\/]([0-9a-f]{40})(?:[\\/]|$)/.exec(dir.replace(/[\\/]+$/, ''));
  if (snapshot) return snapshot[1];
  const metadata = joinPath(dir, '.cache/huggingface/download/config.json.metadata');
  if (!(await io.exists(metadata))) return null;
  const first = (await io.readText(metadata)).split(/\r?\n/)[0]?.trim() ?? '';
  return COMMIT.test(first) ? first : null;
}
