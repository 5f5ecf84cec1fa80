/**
 * Prepared datasets in the browser's storage (IndexedDB), so that a dataset of any size is
 * never held whole in memory: tokenized examples are written a chunk at a time as rows stream
 * in, and read back by index through a small LRU of chunks. A dataset is stored under its
 * content key (the file's bytes, how rows become text, the sequence length and the tokenizer:
 * `datasetKey`), which a run record keeps instead of a copy of its examples, so a reload
 * re-opens the same examples and loading the same file again finds them already prepared.
 *
 * Every write is awaited; a write the browser refuses for lack of room is a `storage-full`
 * EngineError, any other failure an `internal` one naming the dataset.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { EngineError } from '../errors';
import { Sha256 } from '../util/sha256';
import { BaseExampleList } from './example-list';
import type { Example, ExampleText, Preview, TokenStats } from './types';

/** Bumped when what is stored for a key changes (tokenization, layout): old entries are not found. */
export const PREPARATION_VERSION = 2;
/** A chunk ends at this many examples or tokens, whichever comes first (≤ 1 MiB of ids, 1 MiB of labels). */
export const CHUNK_EXAMPLES = 256;
export const CHUNK_TOKENS = 256 * 1024;
/** Chunks kept in memory while reading: a micro-batch touches up to one chunk per example. */
export const CACHED_CHUNKS = 8;
/** Prepared datasets kept besides those a run still needs; the oldest go first. */
export const KEPT_DATASETS = 4;

/** What a stored dataset is: everything its summary and its runs need, without the examples. */
export interface StoredDataset {
  key: string;
  /** Where its chunks are (a write in progress has no `StoredDataset` yet). */
  storeId: string;
  file: string;
  rows: number;
  columns: string[];
  /** Index of the first example of each chunk. */
  chunkStarts: Uint32Array;
  /** Per example: 1 when a learned token is left after the shift by one (it teaches something). */
  learns: Uint8Array;
  tokens: TokenStats;
  /** Previews of the first rows (the summary shows the first training row's). */
  previews: Preview[];
  warnings: string[];
  /** Bytes of examples stored. */
  bytes: number;
  savedAt: number;
}

interface Chunk {
  storeId: string;
  index: number;
  /** Example k is ids/labels [offsets[k], offsets[k+1]). */
  offsets: Uint32Array;
  ids: Int32Array;
  labels: Int32Array;
  /** Each example's row as text (a run bundle's data/*.jsonl); absent in chunks written before it was kept. */
  texts?: (ExampleText | null)[];
}

interface DatasetsDb extends DBSchema {
  datasets: { key: string; value: StoredDataset };
  chunks: { key: [string, number]; value: Chunk };
  /** Writes in progress (storeId → start time): a write left behind by a closed tab is swept later. */
  writes: { key: string; value: { storeId: string; startedAt: number } };
}

/** A write left unfinished this long ago belongs to a tab that is gone. */
const STALE_WRITE_MS = 60 * 60 * 1000;

function isQuotaExceeded(err: unknown): boolean {
  const e = err as { name?: string; code?: number };
  return e?.name === 'QuotaExceededError' || e?.code === 22;
}

/** An IndexedDB failure as the engine reports it. */
function storageError(err: unknown, file: string, doing: string): EngineError {
  if (err instanceof EngineError) return err;
  if (isQuotaExceeded(err)) {
    return new EngineError('storage-full', `Storage is full: ${file} could not be stored while ${doing}.`, {
      section: 'data',
      file,
      hint: 'Delete cached models you no longer need (Model section), or free disk space, then choose the dataset again.',
    });
  }
  return new EngineError('internal', `${file}: this browser's storage failed while ${doing}: ${(err as Error)?.message ?? String(err)}`, { section: 'data', file });
}

/**
 * The content key of a prepared dataset: the SHA-256 of the file's bytes (or of its rows, for a
 * hub dataset), with everything that shapes its examples.
 */
export function datasetKey(parts: { content: string; format: unknown; maxLength: number; tokenizer: string }): string {
  const text = JSON.stringify({ v: PREPARATION_VERSION, content: parts.content, format: parts.format, maxLength: parts.maxLength, tokenizer: parts.tokenizer });
  return `ds-${new Sha256().update(new TextEncoder().encode(text)).hex()}`;
}

export class ExampleStore {
  private constructor(
    private readonly db: IDBPDatabase<DatasetsDb>,
    readonly dbName: string,
  ) {}

  static async open(dbName = 'qlora-studio-datasets'): Promise<ExampleStore> {
    try {
      const db = await openDB<DatasetsDb>(dbName, 1, {
        upgrade(d) {
          d.createObjectStore('datasets', { keyPath: 'key' });
          d.createObjectStore('chunks', { keyPath: ['storeId', 'index'] });
          d.createObjectStore('writes', { keyPath: 'storeId' });
        },
      });
      return new ExampleStore(db, dbName);
    } catch (err) {
      throw storageError(err, 'datasets', 'opening the dataset store');
    }
  }

  /** The stored dataset with this key, or undefined (never stored, deleted, or cleared by the browser). */
  find(key: string): Promise<StoredDataset | undefined> {
    return this.db.get('datasets', key);
  }

  async list(): Promise<StoredDataset[]> {
    return (await this.db.getAll('datasets')).sort((a, b) => b.savedAt - a.savedAt);
  }

  /** Starts writing a dataset's examples; `finish` makes it findable under its key. */
  async writer(file: string): Promise<ExampleWriter> {
    const storeId = `w-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    try {
      await this.sweep();
      await this.db.put('writes', { storeId, startedAt: Date.now() });
    } catch (err) {
      throw storageError(err, file, 'starting to store it');
    }
    return new ExampleWriter(this, storeId, file);
  }

  /** The examples of a stored dataset, read by index (file order). */
  examples(dataset: StoredDataset, cachedChunks = CACHED_CHUNKS): StoredExamples {
    return new StoredExamples(this, dataset, cachedChunks);
  }

  async delete(key: string): Promise<void> {
    const dataset = await this.find(key);
    if (!dataset) return;
    await this.db.delete('datasets', key);
    await this.deleteChunks(dataset.storeId);
  }

  /** Deletes the oldest datasets beyond `kept`, except those in `needed` (runs that may resume). */
  async prune(needed: ReadonlySet<string>, kept = KEPT_DATASETS): Promise<void> {
    const others = (await this.list()).filter((d) => !needed.has(d.key));
    for (const d of others.slice(kept)) await this.delete(d.key);
  }

  /** @internal */
  async putChunk(chunk: Chunk): Promise<void> {
    await this.db.put('chunks', chunk);
  }

  /** @internal */
  getChunk(storeId: string, index: number): Promise<Chunk | undefined> {
    return this.db.get('chunks', [storeId, index]);
  }

  /** @internal A finished write: findable under its key (a copy another tab finished first wins). */
  async commit(dataset: StoredDataset): Promise<StoredDataset> {
    const tx = this.db.transaction(['datasets', 'writes'], 'readwrite');
    const existing = await tx.objectStore('datasets').get(dataset.key);
    if (!existing) await tx.objectStore('datasets').put(dataset);
    await tx.objectStore('writes').delete(dataset.storeId);
    await tx.done;
    if (existing) await this.deleteChunks(dataset.storeId);
    return existing ?? dataset;
  }

  /** @internal */
  async abandon(storeId: string): Promise<void> {
    await this.deleteChunks(storeId);
    await this.db.delete('writes', storeId);
  }

  private async deleteChunks(storeId: string): Promise<void> {
    await this.db.delete('chunks', IDBKeyRange.bound([storeId, 0], [storeId, Infinity]));
  }

  /** Chunks no dataset and no recent write owns (a tab closed mid-write). */
  private async sweep(): Promise<void> {
    const owned = new Set((await this.db.getAll('datasets')).map((d) => d.storeId));
    const now = Date.now();
    for (const w of await this.db.getAll('writes')) {
      if (now - w.startedAt < STALE_WRITE_MS) owned.add(w.storeId);
      else await this.db.delete('writes', w.storeId);
    }
    const orphans = new Set<string>();
    for (const [storeId] of await this.db.getAllKeys('chunks')) if (!owned.has(storeId)) orphans.add(storeId);
    for (const storeId of orphans) await this.deleteChunks(storeId);
  }
}

/** Collects examples into chunks and writes each one as it fills, awaiting the write. */
export class ExampleWriter {
  private ids: Int32Array[] = [];
  private labels: Int32Array[] = [];
  private texts: (ExampleText | null)[] = [];
  private tokens = 0;
  private count = 0;
  private readonly starts: number[] = [];
  private bytes = 0;

  constructor(
    private readonly store: ExampleStore,
    readonly storeId: string,
    readonly file: string,
  ) {}

  /** Examples added so far. */
  get examples(): number {
    return this.count;
  }

  async add(example: Example): Promise<void> {
    this.ids.push(example.inputIds);
    this.labels.push(example.labels);
    this.texts.push(example.text ?? null);
    this.tokens += example.inputIds.length;
    this.count++;
    if (this.ids.length >= CHUNK_EXAMPLES || this.tokens >= CHUNK_TOKENS) await this.flush();
  }

  /** Writes the last chunk and makes the dataset findable under `key`. */
  async finish(meta: Omit<StoredDataset, 'storeId' | 'chunkStarts' | 'bytes' | 'savedAt' | 'file'>): Promise<StoredDataset> {
    if (meta.rows !== this.count || meta.learns.length !== this.count) throw new Error(`${this.file}: ${this.count} examples written, ${meta.rows} rows described`);
    await this.flush();
    try {
      return await this.store.commit({ ...meta, file: this.file, storeId: this.storeId, chunkStarts: Uint32Array.from(this.starts), bytes: this.bytes, savedAt: Date.now() });
    } catch (err) {
      throw storageError(err, this.file, 'finishing it');
    }
  }

  /** Drops what was written (a failed preparation). */
  async abort(): Promise<void> {
    await this.store.abandon(this.storeId).catch(() => {});
  }

  private async flush(): Promise<void> {
    if (!this.ids.length) return;
    const offsets = new Uint32Array(this.ids.length + 1);
    for (let k = 0; k < this.ids.length; k++) offsets[k + 1] = offsets[k] + this.ids[k].length;
    const ids = new Int32Array(offsets[this.ids.length]);
    const labels = new Int32Array(ids.length);
    for (let k = 0; k < this.ids.length; k++) {
      ids.set(this.ids[k], offsets[k]);
      labels.set(this.labels[k], offsets[k]);
    }
    const index = this.starts.length;
    this.starts.push(this.count - this.ids.length);
    const texts = this.texts;
    this.ids = [];
    this.labels = [];
    this.texts = [];
    this.tokens = 0;
    try {
      await this.store.putChunk({ storeId: this.storeId, index, offsets, ids, labels, texts });
    } catch (err) {
      throw storageError(err, this.file, `writing examples ${this.starts[index] + 1}–${this.count}`);
    }
    this.bytes += offsets.byteLength + ids.byteLength + labels.byteLength;
  }
}

/** A stored dataset's examples, read a chunk at a time through an LRU of chunks. */
export class StoredExamples extends BaseExampleList {
  /** Chunk index → chunk, most recently used last. */
  private readonly cache = new Map<number, Promise<Chunk>>();
  /** Chunks read from storage (a measure of the LRU's hit rate). */
  chunkReads = 0;

  constructor(
    private readonly store: ExampleStore,
    readonly dataset: StoredDataset,
    private readonly cachedChunks: number,
  ) {
    super();
  }

  get count(): number {
    return this.dataset.rows;
  }

  protected async fetch(indices: readonly number[]): Promise<Example[]> {
    const out: Example[] = new Array(indices.length);
    // Example by example, so at most `cachedChunks` chunks are held however scattered the indices.
    for (let k = 0; k < indices.length; k++) {
      const c = this.chunkOf(indices[k]);
      const chunk = await this.chunk(c);
      const at = indices[k] - this.dataset.chunkStarts[c];
      const from = chunk.offsets[at];
      const to = chunk.offsets[at + 1];
      const text = chunk.texts?.[at];
      out[k] = { inputIds: chunk.ids.slice(from, to), labels: chunk.labels.slice(from, to), ...(text ? { text } : {}) };
    }
    return out;
  }

  private chunkOf(index: number): number {
    const starts = this.dataset.chunkStarts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private chunk(index: number): Promise<Chunk> {
    const cached = this.cache.get(index);
    if (cached) {
      this.cache.delete(index);
      this.cache.set(index, cached);
      return cached;
    }
    this.chunkReads++;
    const loading = this.store.getChunk(this.dataset.storeId, index).then((chunk) => {
      if (!chunk) {
        throw new EngineError('not-ready', `${this.dataset.file} is no longer stored in this browser (its storage was cleared): choose the same file again in the Data section.`, {
          section: 'data',
          file: this.dataset.file,
        });
      }
      return chunk;
    });
    loading.catch(() => this.cache.delete(index));
    this.cache.set(index, loading);
    while (this.cache.size > this.cachedChunks) this.cache.delete(this.cache.keys().next().value as number);
    return loading;
  }
}
