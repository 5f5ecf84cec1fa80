/**
 * IndexedDB cache of quantized models, keyed by repo, commit and quantization settings, with
 * an alias (repo, revision name) → commit so a visit without network still finds the copy a
 * branch pointed at last. A model is written under a fresh write id (its blobs are invisible
 * until a manifest names that id), and the manifest is committed last: a crash or an error
 * mid-write leaves only orphan blobs, which `abort()` or the next `open()` deletes. Arrays are
 * written as their bytes arrive (parts of at most 16 MiB) and read part by part or whole; every
 * stored array carries its length and CRC-32, checked on read.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { crc32 } from '../util/crc32';
import type { HeldBytes } from './held';
import type { DType } from '../formats/safetensors';
import type { Nf4Dtype } from '../nf4/reference';
import type { LoadedTensor } from './quantize-on-load';
import type { HfConfig, QuantSettings } from './presets';

export const CACHE_DB_NAME = 'qlora-studio-models';
/**
 * Bump when the stored layout changes; older databases are dropped on upgrade (their models
 * are downloaded again). 2: keyed by commit, with revision aliases.
 */
export const CACHE_SCHEMA_VERSION = 2;
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

interface CacheDb extends DBSchema {
  manifests: { key: string; value: CacheManifest };
  blobs: { key: string; value: Uint8Array };
  aliases: { key: string; value: RevisionAlias };
}

export class CacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheError';
  }
}

/** The key of a copy: the commit for hub repos, the revision for fixed files. */
export function cacheKey(repo: string, version: string, quant: QuantSettings): string {
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

export class ModelCache {
  private readonly activeWrites = new Set<string>();

  private constructor(private readonly db: IDBPDatabase<CacheDb>) {}

  /** Opens (or creates) the cache and removes blobs a crashed write left behind. */
  static async open(name = CACHE_DB_NAME): Promise<ModelCache> {
    const db = await openDB<CacheDb>(name, CACHE_SCHEMA_VERSION, {
      upgrade(database, oldVersion) {
        // Older layouts are not migrated: the models are re-downloaded.
        for (const store of [...database.objectStoreNames]) if (oldVersion < CACHE_SCHEMA_VERSION) database.deleteObjectStore(store);
        database.createObjectStore('manifests', { keyPath: 'key' });
        database.createObjectStore('blobs');
        database.createObjectStore('aliases', { keyPath: 'key' });
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

  async delete(key: string): Promise<void> {
    const m = await this.db.get('manifests', key);
    if (!m) return;
    const tx = this.db.transaction(['manifests', 'blobs'], 'readwrite');
    await Promise.all([tx.objectStore('manifests').delete(key), tx.objectStore('blobs').delete(writeRange(m.writeId)), tx.done]);
  }

  /** Deletes blobs no manifest refers to (left by a write that never committed). */
  async sweepOrphans(): Promise<number> {
    const live = new Set((await this.db.getAll('manifests')).map((m) => m.writeId));
    for (const w of this.activeWrites) live.add(w);
    const keys = await this.db.getAllKeys('blobs');
    const orphans = new Set<string>();
    for (const k of keys) {
      const writeId = k.slice(0, k.indexOf('/'));
      if (!live.has(writeId)) orphans.add(writeId);
    }
    for (const w of orphans) await this.db.delete('blobs', writeRange(w));
    return orphans.size;
  }

  /** Starts writing a model; nothing is visible until `commit`. `held` counts the part copies it makes. */
  beginWrite(key: string, meta: Omit<CacheIdentity, 'commit'> & { commit?: string | null; quant: QuantSettings }, held?: HeldBytes): CacheWriter {
    const writeId = `w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
    this.activeWrites.add(writeId);
    return new CacheWriter(this.db, key, writeId, { ...meta, commit: meta.commit ?? null }, held ?? null, () => this.activeWrites.delete(writeId));
  }

  /** One array of a cached tensor, part by part as stored; its length and checksum are checked as it goes. */
  async *readParts(m: CacheManifest, index: number, field: string): AsyncIterable<Uint8Array> {
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
  async readTensor(m: CacheManifest, index: number, held?: HeldBytes): Promise<LoadedTensor> {
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
  private readonly tensors: CachedTensor[] = [];
  private readonly names = new Set<string>();
  private bytes = 0;
  private finished = false;
  private open: string | null = null;

  constructor(
    private readonly db: IDBPDatabase<CacheDb>,
    readonly key: string,
    readonly writeId: string,
    private readonly meta: CacheIdentity & { quant: QuantSettings },
    private readonly held: HeldBytes | null,
    private readonly onDone: () => void,
  ) {}

  /** Whether a tensor of this name is stored already (a second read of it is not stored again). */
  has(name: string): boolean {
    return this.names.has(name);
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
    const manifest: CacheManifest = {
      key: this.key,
      schema: CACHE_SCHEMA_VERSION,
      writeId: this.writeId,
      ...this.meta,
      config,
      tensors: this.tensors,
      bytes: this.bytes,
      savedAt: Date.now(),
    };
    const tx = this.db.transaction(['manifests', 'blobs', 'aliases'], 'readwrite');
    const previous = await tx.objectStore('manifests').get(this.key);
    if (previous && previous.writeId !== this.writeId) await tx.objectStore('blobs').delete(writeRange(previous.writeId));
    await tx.objectStore('manifests').put(manifest);
    const { repo, revision, commit } = this.meta;
    if (commit !== null) await tx.objectStore('aliases').put({ key: aliasKey(repo, revision), repo, revision, commit, savedAt: manifest.savedAt });
    await tx.done;
    this.finished = true;
    this.onDone();
    return manifest;
  }

  /** Removes everything this write stored. */
  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.db.delete('blobs', writeRange(this.writeId));
    this.onDone();
  }

  get storedBytes(): number {
    return this.bytes;
  }
}
