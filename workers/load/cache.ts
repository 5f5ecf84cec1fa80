/**
 * IndexedDB cache of loaded models (NF4, or unquantized), keyed by repo, commit and quantization settings, with
 * an alias (repo, revision name) → commit so a visit without network still finds the copy a
 * branch pointed at last. A model is written under a fresh write id (its blobs are invisible
 * until a manifest names that id), and the manifest is committed last: a crash or an error
 * mid-write leaves only orphan blobs, which `abort()` or the next `open()` deletes. Arrays are
 * written as their bytes arrive (parts of at most 16 MiB) and read part by part or whole; every
 * stored array carries its length and CRC-32, checked on read.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { crc32 } from '../util/crc32';
import type { Sha256State } from '../util/sha256';
import { acquireLock, SWEEP_LOCK, withLock, writeLockName, type Release } from './locks';
import type { HeldBytes } from './held';
import type { DType } from '../formats/safetensors';
import type { Nf4Dtype } from '../nf4/reference';
import type { LoadedTensor } from './quantize-on-load';
import type { HfConfig, QuantSettings } from './presets';

export const CACHE_DB_NAME = 'qlora-studio-models';
/**
 * Bump when the stored layout changes; databases older than schema 2 are dropped on upgrade
 * (their models are downloaded again). 2: keyed by commit, with revision aliases. 3: adds
 * `partials`, the downloads in progress (kept across failed attempts and page loads).
 */
export const CACHE_SCHEMA_VERSION = 3;
/** IndexedDB values above a few tens of MB are slow or refused: arrays are split into parts. */
export const CACHE_PART_BYTES = 16 * 1024 * 1024;

export interface CachedArray {
  field: string;
  /** Bytes of the whole array. */
  length: number;
  crc32: number;
  parts: number;
}

export interface CachedTensor {
  name: string;
  kind: 'nf4' | 'dense';
  /** Source dtype: a DType for dense tensors, the layer dtype for NF4. */
  dtype: string;
  shape: number[];
  /** NF4 double-quantization offset. */
  offset?: number;
  /** The source file it was read from (a download in progress drops a file's tensors when its sha256 is wrong). */
  file?: string;
  arrays: CachedArray[];
}

/** What a cached copy is: a repo at a commit (hub), or at a revision that names fixed files (the demo). */
export interface CacheIdentity {
  repo: string;
  /** The revision it was loaded by (`main`, a tag, or the commit itself). */
  revision: string;
  /** The commit the revision resolved to; null for files whose revision is their identity. */
  commit: string | null;
}

export interface CacheManifest extends CacheIdentity {
  key: string;
  schema: number;
  writeId: string;
  quant: QuantSettings;
  config: HfConfig;
  tensors: CachedTensor[];
  bytes: number;
  savedAt: number;
}

export interface CachedModelInfo extends CacheIdentity {
  key: string;
  quant: QuantSettings;
  bytes: number;
  tensors: number;
  savedAt: number;
}

/** (repo, revision name) → the commit its cached copy was made from. */
export interface RevisionAlias {
  key: string;
  repo: string;
  revision: string;
  commit: string;
  savedAt: number;
}

/** How far a source file has been read: the SHA-256 of its first `hash.length` bytes. */
export interface FileProgress {
  size: number;
  hash: Sha256State;
  /** Its sha256 was checked against the hub's. */
  verified: boolean;
}

/**
 * A download in progress: written before its first blob (so no sweep takes its blobs) and
 * after each finished tensor; the next attempt, in this page or after a reload, resumes from it.
 */
export interface PartialWrite extends CacheIdentity {
  key: string;
  writeId: string;
  quant: QuantSettings;
  tensors: CachedTensor[];
  files: Record<string, FileProgress>;
  bytes: number;
  updatedAt: number;
}

/** What reading a stored tensor needs: a committed manifest or a write in progress. */
export type StoredTensors = Pick<CacheManifest, 'key' | 'writeId' | 'tensors'>;

interface CacheDb extends DBSchema {
  manifests: { key: string; value: CacheManifest };
  blobs: { key: string; value: Uint8Array };
  aliases: { key: string; value: RevisionAlias };
  partials: { key: string; value: PartialWrite };
}

export class CacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheError';
  }
}

/** The key of a copy: the commit for hub repos, the revision for fixed files. */
export function cacheKey(repo: string, version: string, quant: QuantSettings): string {
  // An unquantized copy holds the checkpoint's own tensors: a key of its own, never an NF4 copy's.
  if (quant.type === 'none') return `${repo}@${version}#none`;
  const dq = quant.doubleQuant ? `dq${quant.nestedBlocksize}` : 'nodq';
  return `${repo}@${version}#${quant.type}-b${quant.blocksize}-${dq}`;
}

export const keyOf = (id: CacheIdentity, quant: QuantSettings): string => cacheKey(id.repo, id.commit ?? id.revision, quant);

const aliasKey = (repo: string, revision: string) => `${repo}@${revision}`;

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** A tensor's arrays by field name, as bytes: what the cache stores for it. */
export function arraysOf(t: LoadedTensor): [string, Uint8Array][] {
  if (t.kind === 'dense') return [['data', t.data]];
  const q = t.quant;
  const out: [string, Uint8Array][] = [['packed', q.packed], ['quantMap', bytesOf(q.quantMap)]];
  if (q.nested) out.push(['qabsmax', q.nested.qabsmax], ['nestedAbsmax', bytesOf(q.nested.nestedAbsmax)], ['nestedMap', bytesOf(q.nested.nestedMap)]);
  else if (q.absmax) out.push(['absmax', bytesOf(q.absmax)]);
  return out;
}

const blobKey = (writeId: string, tensor: number, field: string, part: number) => `${writeId}/${tensor}/${field}/${part}`;
const writeRange = (writeId: string) => IDBKeyRange.bound(`${writeId}/`, `${writeId}/\uffff`);
const tensorRange = (writeId: string, index: number) => IDBKeyRange.bound(`${writeId}/${index}/`, `${writeId}/${index}/\uffff`);
const newWriteId = () => `w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;

export class ModelCache {
  private readonly activeWrites = new Set<string>();

  private constructor(private readonly db: IDBPDatabase<CacheDb>) {}

  /** Opens (or creates) the cache and removes blobs a crashed write left behind. */
  static async open(name = CACHE_DB_NAME): Promise<ModelCache> {
    const db = await openDB<CacheDb>(name, CACHE_SCHEMA_VERSION, {
      upgrade(database, oldVersion) {
        // Layouts before schema 2 are not migrated: the models are re-downloaded.
        if (oldVersion < 2) {
          for (const store of [...database.objectStoreNames]) database.deleteObjectStore(store);
          database.createObjectStore('manifests', { keyPath: 'key' });
          database.createObjectStore('blobs');
          database.createObjectStore('aliases', { keyPath: 'key' });
        }
        if (oldVersion < 3) database.createObjectStore('partials', { keyPath: 'key' });
      },
    });
    const cache = new ModelCache(db);
    await cache.sweepOrphans();
    return cache;
  }

  close(): void {
    this.db.close();
  }

  async list(): Promise<CachedModelInfo[]> {
    const all = await this.db.getAll('manifests');
    return all.map((m) => ({ key: m.key, repo: m.repo, revision: m.revision, commit: m.commit, quant: m.quant, bytes: m.bytes, tensors: m.tensors.length, savedAt: m.savedAt }));
  }

  async manifest(key: string): Promise<CacheManifest | undefined> {
    const m = await this.db.get('manifests', key);
    return m && m.schema === CACHE_SCHEMA_VERSION ? m : undefined;
  }

  /** The commit `revision` of `repo` resolved to when its copy was cached, if any. */
  async alias(repo: string, revision: string): Promise<string | null> {
    return (await this.db.get('aliases', aliasKey(repo, revision)))?.commit ?? null;
  }

  async setAlias(repo: string, revision: string, commit: string): Promise<void> {
    await this.db.put('aliases', { key: aliasKey(repo, revision), repo, revision, commit, savedAt: Date.now() });
  }

  /** Deletes a cached copy, and the download in progress under the same key (its resume point). */
  async delete(key: string): Promise<void> {
    await withLock(writeLockName(key), async () => {
      const tx = this.db.transaction(['manifests', 'partials', 'blobs'], 'readwrite');
      const [m, p] = await Promise.all([tx.objectStore('manifests').get(key), tx.objectStore('partials').get(key)]);
      for (const w of [m?.writeId, p?.writeId]) if (w) await tx.objectStore('blobs').delete(writeRange(w));
      await tx.objectStore('manifests').delete(key);
      await tx.objectStore('partials').delete(key);
      await tx.done;
    });
  }

  /** Downloads in progress that a later load of the same model resumes. */
  async partials(): Promise<{ key: string; repo: string; revision: string; commit: string | null; tensors: number; bytes: number; updatedAt: number }[]> {
    const all = await this.db.getAll('partials');
    return all.map((p) => ({ key: p.key, repo: p.repo, revision: p.revision, commit: p.commit, tensors: p.tensors.length, bytes: p.bytes, updatedAt: p.updatedAt }));
  }

  /**
   * Deletes blobs that neither a manifest nor a download in progress names (left by a write
   * that never recorded itself). One transaction reads the names and deletes, so a write that
   * records itself meanwhile (in another tab) is seen: its record precedes its first blob.
   */
  async sweepOrphans(): Promise<number> {
    return withLock(SWEEP_LOCK, async () => {
      const tx = this.db.transaction(['manifests', 'partials', 'blobs'], 'readwrite');
      const live = new Set((await tx.objectStore('manifests').getAll()).map((m) => m.writeId));
      for (const p of await tx.objectStore('partials').getAll()) live.add(p.writeId);
      for (const w of this.activeWrites) live.add(w);
      const keys = await tx.objectStore('blobs').getAllKeys();
      const orphans = new Set<string>();
      for (const k of keys) {
        const writeId = k.slice(0, k.indexOf('/'));
        if (!live.has(writeId)) orphans.add(writeId);
      }
      for (const w of orphans) await tx.objectStore('blobs').delete(writeRange(w));
      await tx.done;
      return orphans.size;
    });
  }

  /**
   * Starts writing a model that no other tab or attempt knows about (tests); nothing is visible
   * until `commit`, and nothing survives a closed tab. `held` counts the part copies it makes.
   */
  beginWrite(key: string, meta: Omit<CacheIdentity, 'commit'> & { commit?: string | null; quant: QuantSettings }, held?: HeldBytes): CacheWriter {
    const writeId = newWriteId();
    this.activeWrites.add(writeId);
    return new CacheWriter(this.db, key, writeId, { ...meta, commit: meta.commit ?? null }, held ?? null, () => this.activeWrites.delete(writeId), null);
  }

  /**
   * Starts or resumes the download of `key`, holding its write lock (one writer per model
   * across tabs) until the writer commits, suspends or aborts. Resolves to null when the copy
   * was committed while this waited for the lock (another tab finished it): read that instead.
   */
  async openWrite(key: string, meta: CacheIdentity & { quant: QuantSettings }, held?: HeldBytes): Promise<CacheWriter | null> {
    const release: Release = await acquireLock(writeLockName(key));
    try {
      if (await this.manifest(key)) {
        release();
        return null;
      }
      let partial = await this.db.get('partials', key);
      if (partial && (partial.commit !== meta.commit || JSON.stringify(partial.quant) !== JSON.stringify(meta.quant))) {
        await this.db.delete('blobs', writeRange(partial.writeId));
        partial = undefined;
      }
      if (partial) {
        // Parts of the tensor that was being written when the last attempt stopped.
        await this.db.delete('blobs', tensorRange(partial.writeId, partial.tensors.length));
      } else {
        partial = { key, writeId: newWriteId(), ...meta, tensors: [], files: {}, bytes: 0, updatedAt: Date.now() };
        await this.db.put('partials', partial);
      }
      const writeId = partial.writeId;
      this.activeWrites.add(writeId);
      return new CacheWriter(this.db, key, writeId, meta, held ?? null, () => {
        this.activeWrites.delete(writeId);
        release();
      }, partial);
    } catch (err) {
      release();
      throw err;
    }
  }

  /** One array of a cached tensor, part by part as stored; its length and checksum are checked as it goes. */
  async *readParts(m: StoredTensors, index: number, field: string): AsyncIterable<Uint8Array> {
    const entry = m.tensors[index];
    const a = entry?.arrays.find((x) => x.field === field);
    if (!a) throw new CacheError(`${m.key}: tensor ${entry ? `"${entry.name}"` : `#${index}`} has no ${field} array`);
    let pos = 0;
    let crc = 0;
    for (let p = 0; p < a.parts; p++) {
      const part = await this.db.get('blobs', blobKey(m.writeId, index, a.field, p));
      if (!part) throw new CacheError(`${m.key}: tensor "${entry.name}" ${a.field} part ${p} is missing from the cache`);
      if (pos + part.byteLength > a.length) throw new CacheError(`${m.key}: tensor "${entry.name}" ${a.field} is longer than the ${a.length} bytes recorded`);
      crc = crc32(part, crc);
      pos += part.byteLength;
      if (p === a.parts - 1) {
        if (pos !== a.length) throw new CacheError(`${m.key}: tensor "${entry.name}" ${a.field} has ${pos} of ${a.length} bytes`);
        if (crc !== a.crc32) throw new CacheError(`${m.key}: tensor "${entry.name}" ${a.field} fails its checksum (stored data is corrupt)`);
      }
      yield part;
    }
    if (a.parts === 0 && a.length !== 0) throw new CacheError(`${m.key}: tensor "${entry.name}" ${a.field} has 0 of ${a.length} bytes`);
  }

  /** One cached tensor with every array whole (an NF4 state, a small dense tensor), checked; `held` counts its arrays. */
  async readTensor(m: StoredTensors, index: number, held?: HeldBytes): Promise<LoadedTensor> {
    const entry = m.tensors[index];
    const arrays = new Map<string, Uint8Array>();
    let holding = 0;
    try {
      for (const a of entry.arrays) {
        const out = new Uint8Array(a.length);
        held?.hold(out.byteLength);
        holding += out.byteLength;
        let pos = 0;
        for await (const part of this.readParts(m, index, a.field)) {
          out.set(part, pos);
          pos += part.byteLength;
        }
        arrays.set(a.field, out);
      }
    } catch (err) {
      held?.drop(holding);
      throw err;
    }
    return tensorFrom(entry, arrays);
  }

  /** Reads every tensor of a cached model in order, verifying lengths and checksums. */
  async read(key: string, onTensor: (t: LoadedTensor, index: number, count: number) => void | Promise<void>): Promise<CacheManifest> {
    const m = await this.manifest(key);
    if (!m) throw new CacheError(`${key} is not in the cache`);
    for (let i = 0; i < m.tensors.length; i++) await onTensor(await this.readTensor(m, i), i, m.tensors.length);
    return m;
  }
}

function f32(bytes: Uint8Array | undefined): Float32Array {
  if (!bytes) throw new CacheError('a cached NF4 tensor lacks an array');
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

function tensorFrom(entry: CachedTensor, arrays: Map<string, Uint8Array>): LoadedTensor {
  if (entry.kind === 'dense') return { kind: 'dense', name: entry.name, dtype: entry.dtype as DType, shape: entry.shape, data: arrays.get('data')! };
  const quant: LoadedTensor & { kind: 'nf4' } = {
    kind: 'nf4',
    name: entry.name,
    dtype: entry.dtype as Nf4Dtype,
    quant: { shape: entry.shape, packed: arrays.get('packed')!, quantMap: f32(arrays.get('quantMap')) },
  };
  if (arrays.has('qabsmax')) {
    quant.quant.nested = { qabsmax: arrays.get('qabsmax')!, nestedAbsmax: f32(arrays.get('nestedAbsmax')), nestedMap: f32(arrays.get('nestedMap')), offset: entry.offset ?? 0 };
  } else {
    quant.quant.absmax = f32(arrays.get('absmax'));
  }
  return quant;
}

/** Bytes of one array, pushed in order; each push is stored before the next is taken. */
export interface ArrayWriter {
  push(bytes: Uint8Array): Promise<void>;
  end(): void;
}

/** One tensor's entry: its arrays are written one after another, then `end` adds it to the model. */
export interface TensorEntryWriter {
  array(field: string): ArrayWriter;
  /** A whole array at once. */
  write(field: string, bytes: Uint8Array): Promise<void>;
  end(): void;
}

export type TensorMeta = Omit<CachedTensor, 'arrays'>;

export function tensorMeta(t: LoadedTensor): TensorMeta {
  const meta: TensorMeta = { name: t.name, kind: t.kind, dtype: t.dtype, shape: t.kind === 'dense' ? t.shape : t.quant.shape };
  if (t.kind === 'nf4' && t.quant.nested) meta.offset = t.quant.nested.offset;
  return meta;
}

export class CacheWriter {
  private tensors: CachedTensor[] = [];
  private readonly names = new Set<string>();
  private readonly files = new Map<string, FileProgress>();
  private bytes = 0;
  private finished = false;
  private open: string | null = null;
  /** Record writes run one after another; the first failure is reported by the next operation. */
  private saving: Promise<void> = Promise.resolve();
  private saveError: unknown = null;
  /** Tensors a previous attempt stored (what this write resumed from). */
  readonly resumedTensors: number;
  readonly resumedBytes: number;

  constructor(
    private readonly db: IDBPDatabase<CacheDb>,
    readonly key: string,
    readonly writeId: string,
    private readonly meta: CacheIdentity & { quant: QuantSettings },
    private readonly held: HeldBytes | null,
    private readonly onDone: () => void,
    /** The download's record (null: a write nobody resumes). */
    private readonly partial: PartialWrite | null,
  ) {
    if (partial) {
      this.tensors = partial.tensors.map((t) => ({ ...t }));
      for (const t of this.tensors) this.names.add(t.name);
      for (const [file, p] of Object.entries(partial.files)) this.files.set(file, p);
      this.bytes = partial.bytes;
    }
    this.resumedTensors = this.tensors.length;
    this.resumedBytes = this.bytes;
  }

  /** Whether a tensor of this name is stored already (a second read of it is not stored again). */
  has(name: string): boolean {
    return this.names.has(name);
  }

  /** The stored tensors, to read one back (a resumed download hands out what it already has). */
  get stored(): StoredTensors {
    return { key: this.key, writeId: this.writeId, tensors: this.tensors };
  }

  indexOf(name: string): number {
    return this.tensors.findIndex((t) => t.name === name);
  }

  /** How far `file` has been read and hashed, as last recorded. */
  fileProgress(file: string): FileProgress | undefined {
    return this.files.get(file);
  }

  /** Records how far `file` has been read (saved with the next record write). */
  setFileProgress(file: string, progress: FileProgress): void {
    this.files.set(file, progress);
    this.save();
  }

  /**
   * Drops every tensor from the first one read from `file` on (their blobs too) and forgets
   * how far `file` was hashed: they are fetched again. Tensors are stored in file order, so
   * what follows that file is dropped with it rather than leaving holes in the indices.
   */
  async dropFile(file: string): Promise<number> {
    const first = this.tensors.findIndex((t) => t.file === file);
    this.files.delete(file);
    if (first < 0) {
      this.save();
      await this.flush();
      return 0;
    }
    const dropped = this.tensors.splice(first);
    for (const t of dropped) {
      this.names.delete(t.name);
      for (const a of t.arrays) this.bytes -= a.length;
    }
    for (let i = first; i <= first + dropped.length; i++) await this.db.delete('blobs', tensorRange(this.writeId, i));
    this.save();
    await this.flush();
    return dropped.length;
  }

  /** Queues a write of the download's record as it stands now. */
  private save(): void {
    if (!this.partial) return;
    const record: PartialWrite = { ...this.partial, tensors: [...this.tensors], files: Object.fromEntries(this.files), bytes: this.bytes, updatedAt: Date.now() };
    this.saving = this.saving.then(async () => {
      if (this.saveError === null) await this.db.put('partials', record);
    }).catch((err) => {
      this.saveError ??= err;
    });
  }

  /** Waits for the record writes; throws the first that failed. */
  async flush(): Promise<void> {
    await this.saving;
    if (this.saveError !== null) throw this.saveError;
  }

  /** Starts the next tensor's entry. */
  tensor(meta: TensorMeta): TensorEntryWriter {
    if (this.finished) throw new CacheError(`${this.key}: write already finished`);
    if (this.open !== null) throw new CacheError(`${this.key}: tensor "${this.open}" is still being written`);
    if (this.names.has(meta.name)) throw new CacheError(`${this.key}: tensor "${meta.name}" is stored already`);
    this.open = meta.name;
    const index = this.tensors.length;
    const entry: CachedTensor = { ...meta, shape: [...meta.shape], arrays: [] };
    let arrayOpen = false;
    const array = (field: string): ArrayWriter => {
      if (arrayOpen) throw new CacheError(`${this.key}: tensor "${meta.name}" has an array still open`);
      arrayOpen = true;
      const record: CachedArray = { field, length: 0, crc32: 0, parts: 0 };
      return {
        push: async (data) => {
          if (this.saveError !== null) throw this.saveError;
          for (let start = 0; start < data.byteLength; start += CACHE_PART_BYTES) {
            const view = data.subarray(start, Math.min(data.byteLength, start + CACHE_PART_BYTES));
            // IndexedDB clones what it stores; a view into a larger buffer would clone all of it.
            const whole = view.byteOffset === 0 && view.byteLength === view.buffer.byteLength;
            const part = whole ? view : view.slice();
            if (!whole) this.held?.hold(part.byteLength);
            try {
              await this.db.put('blobs', part, blobKey(this.writeId, index, field, record.parts));
            } finally {
              if (!whole) this.held?.drop(part.byteLength);
            }
            record.parts++;
            record.length += view.byteLength;
            record.crc32 = crc32(view, record.crc32);
          }
        },
        end: () => {
          entry.arrays.push(record);
          this.bytes += record.length;
          arrayOpen = false;
        },
      };
    };
    return {
      array,
      write: async (field, bytes) => {
        const a = array(field);
        await a.push(bytes);
        a.end();
      },
      end: () => {
        if (arrayOpen) throw new CacheError(`${this.key}: tensor "${meta.name}" ended with an array still open`);
        this.tensors.push(entry);
        this.names.add(meta.name);
        this.open = null;
        this.save();
      },
    };
  }

  /** Stores one whole tensor. */
  async put(t: LoadedTensor): Promise<void> {
    const entry = this.tensor(tensorMeta(t));
    for (const [field, data] of arraysOf(t)) await entry.write(field, data);
    entry.end();
  }

  /**
   * Makes the model visible: the manifest goes in last, replacing (and freeing) an older copy
   * under the same key, and the revision's alias now names this commit.
   */
  async commit(config: HfConfig): Promise<CacheManifest> {
    if (this.finished) throw new CacheError(`${this.key}: write already finished`);
    if (this.open !== null) throw new CacheError(`${this.key}: tensor "${this.open}" is still being written`);
    await this.flush();
    const manifest: CacheManifest = {
      key: this.key,
      schema: CACHE_SCHEMA_VERSION,
      writeId: this.writeId,
      ...this.meta,
      config,
      tensors: this.tensors.map(({ file: _file, ...t }) => t),
      bytes: this.bytes,
      savedAt: Date.now(),
    };
    const tx = this.db.transaction(['manifests', 'blobs', 'aliases', 'partials'], 'readwrite');
    const previous = await tx.objectStore('manifests').get(this.key);
    if (previous && previous.writeId !== this.writeId) await tx.objectStore('blobs').delete(writeRange(previous.writeId));
    await tx.objectStore('manifests').put(manifest);
    if (this.partial) await tx.objectStore('partials').delete(this.key);
    const { repo, revision, commit } = this.meta;
    if (commit !== null) await tx.objectStore('aliases').put({ key: aliasKey(repo, revision), repo, revision, commit, savedAt: manifest.savedAt });
    await tx.done;
    this.finished = true;
    this.onDone();
    return manifest;
  }

  /**
   * Stops this attempt but keeps what finished: the tensors stored so far and how far each
   * file was hashed stay recorded for the next attempt (in this page or after a reload); only
   * the parts of the tensor in flight go. A write nobody resumes (`beginWrite`) is removed.
   */
  async suspend(): Promise<void> {
    if (this.finished) return;
    if (!this.partial) return this.abort();
    this.finished = true;
    try {
      await this.db.delete('blobs', tensorRange(this.writeId, this.tensors.length));
      await this.flush();
    } finally {
      this.onDone();
    }
  }

  /** Removes everything this write stored, and its record. */
  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    try {
      await this.saving;
      await this.db.delete('blobs', writeRange(this.writeId));
      if (this.partial) await this.db.delete('partials', this.key);
    } finally {
      this.onDone();
    }
  }

  get storedBytes(): number {
    return this.bytes;
  }
}
