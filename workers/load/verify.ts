/**
 * SHA-256 of each hub file as its bytes go by, checked against the sha256 the hub reports for
 * it (the LFS oid) before its tensors are committed. The hash follows the file from byte 0:
 * pieces read in file order feed it, pieces it has seen are skipped, and a gap (a range the
 * loader never asked for) is read here. Its state is saved with the download's progress, so a
 * resumed download hashes on from where it stopped instead of reading the file again.
 */
import type { RangeFile } from './byte-source';
import type { FileProgress } from './cache';
import { Sha256 } from '../util/sha256';

export class ChecksumError extends Error {
  constructor(
    message: string,
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(message);
    this.name = 'ChecksumError';
  }
}

/** A file whose reads can say which sha256 the server reported (an `HttpFile` from the hub). */
interface ReportsSha256 {
  sha256(): string | null;
}

const reportsSha256 = (f: unknown): f is ReportsSha256 => typeof (f as ReportsSha256)?.sha256 === 'function';

export class FileHasher {
  private hash = new Sha256();
  /**
   * Reads feed the hash only once armed (when tensors start streaming): the speculative header
   * read runs past the header into tensor bytes that are read again later, and the hash must
   * cover the bytes that are used, not a first copy of them.
   */
  private armed = false;

  constructor(private readonly inner: RangeFile) {}

  get name(): string {
    return this.inner.name;
  }

  /** Bytes hashed: the file's first `position` bytes. */
  get position(): number {
    return this.hash.length;
  }

  /** Takes a saved state that is further along than this one (both hash a prefix of the file). */
  restore(progress: FileProgress | undefined): void {
    if (progress && progress.hash.length > this.hash.length) this.hash = new Sha256(progress.hash);
  }

  reset(): void {
    this.hash = new Sha256();
  }

  arm(): void {
    this.armed = true;
  }

  /** Bytes [begin, begin + piece.length) of the file went by. */
  feed(begin: number, piece: Uint8Array): void {
    if (!this.armed) return;
    const pos = this.hash.length;
    if (begin > pos || begin + piece.byteLength <= pos) return;
    this.hash.update(piece.subarray(pos - begin));
  }

  /** Reads and hashes whatever lies between the hashed prefix and `upTo`. Returns the bytes read. */
  async catchUp(upTo: number, signal?: AbortSignal): Promise<number> {
    const from = this.hash.length;
    if (from >= upTo) return 0;
    for await (const chunk of this.inner.stream(from, upTo, 1 << 20, signal)) this.hash.update(chunk);
    return upTo - from;
  }

  async progress(verified = false): Promise<FileProgress> {
    return { size: await this.inner.size(), hash: this.hash.save(), verified };
  }

  /** The sha256 the server reported for this file, if it did. */
  expected(): string | null {
    return reportsSha256(this.inner) ? this.inner.sha256() : null;
  }

  /** Hashes the rest of the file and compares; returns the digest, throws ChecksumError on a mismatch. */
  async verify(signal?: AbortSignal): Promise<{ actual: string; expected: string | null }> {
    await this.catchUp(await this.inner.size(), signal);
    const actual = this.hash.hex();
    const expected = this.expected();
    if (expected !== null && expected !== actual) {
      throw new ChecksumError(`${this.name}: its sha256 is ${actual} but the hub reports ${expected}; the file is corrupt (or was cut)`, this.name, expected, actual);
    }
    return { actual, expected };
  }
}

/** A file whose every read feeds its hasher. */
export function hashedFile(inner: RangeFile, hasher: FileHasher): RangeFile & ReportsSha256 {
  return {
    name: inner.name,
    size: () => inner.size(),
    sha256: () => (reportsSha256(inner) ? inner.sha256() : null),
    async *stream(begin, end, chunkBytes, signal) {
      let pos = begin;
      for await (const chunk of inner.stream(begin, end, chunkBytes, signal)) {
        hasher.feed(pos, chunk);
        pos += chunk.byteLength;
        yield chunk;
      }
    },
  };
}
