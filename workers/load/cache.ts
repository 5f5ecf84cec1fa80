/**
 * IndexedDB cache of quantized models, keyed by repo, revision and quantization settings.
 * A model is written under a fresh write id (its blobs are invisible until a manifest names
 * that id), and the manifest is committed last: a crash or an error mid-write leaves only
 * orphan blobs, which `abort()` or the next `open()` deletes. Every stored array carries its
 * length and CRC-32, checked on read.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { crc32 } from './checksum';
import type { DType } from '../formats/safetensors';
import type { Nf4Dtype } from '../nf4/reference';
import type { LoadedTensor } from './quantize-on-load';
import type { HfConfig, QuantSettings } from './presets';

export const CACHE_DB_NAME = 'qlora-studio-models';
/** Bump when the stored layout changes; older databases are dropped on upgrade. */
export const CACHE_SCHEMA_VERSION = 1;
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

export interface CacheManifest {
  key: string;
  schema: number;
  writeId: string;
  repo: string;
  revision: string;
  quant: QuantSettings;
  config: HfConfig;
  tensors: CachedTensor[];
  bytes: number;
  savedAt: number;
}

export interface CachedModelInfo {
  key: string;
  repo: string;
  revision: string;
  quant: QuantSettings;
  bytes: number;
  tensors: number;
  savedAt: number;
}

interface CacheDb extends DBSchema {
  manifests: { key: string; value: CacheManifest };
  blobs: { key: string; value: Uint8Array };
}

export class CacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheError';
  }
}

export function cacheKey(repo: string, revision: string, quant: QuantSettings): string {
  const dq = quant.doubleQuant ? `dq${quant.nestedBlocksize}` : 'nodq';
  return `${repo}@${revision}#${quant.type}-b${quant.blocksize}-${dq}`;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** The arrays a tensor is stored as. */
function arraysOf(t: LoadedTensor): [string, Uint8Array][] {
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
    return all.map((m) => ({ key: m.key, repo: m.repo, revision: m.revision, quant: m.quant, bytes: m.bytes, tensors: m.tensors.length, savedAt: m.savedAt }));
  }

  async manifest(key: string): Promise<CacheManifest | undefined> {
    const m = await this.db.get('manifests', key);
    return m && m.schema === CACHE_SCHEMA_VERSION ? m : undefined;
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

  /** Starts writing a model; nothing is visible until `commit`. */
  beginWrite(key: string, meta: { repo: string; revision: string; quant: QuantSettings }): CacheWriter {
    const writeId = `w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
    this.activeWrites.add(writeId);
    return new CacheWriter(this.db, key, writeId, meta, () => this.activeWrites.delete(writeId));
  }

  /** Reads every tensor of a cached model in order, verifying lengths and checksums. */
  async read(key: string, onTensor: (t: LoadedTensor, index: number, count: number) => void | Promise<void>): Promise<CacheManifest> {
    const m = await this.manifest(key);
    if (!m) throw new CacheError(`${key} is not in the cache`);
    for (let i = 0; i < m.tensors.length; i++) {
      const entry = m.tensors[i];
      const arrays = new Map<string, Uint8Array>();
      for (const a of entry.arrays) {
        const out = new Uint8Array(a.length);
        let pos = 0;
        let crc = 0;
        for (let p = 0; p < a.parts; p++) {
          const part = await this.db.get('blobs', blobKey(m.writeId, i, a.field, p));
          if (!part) throw new CacheError(`${key}: tensor "${entry.name}" ${a.field} part ${p} is missing from the cache`);
          if (pos + part.byteLength > a.length) throw new CacheError(`${key}: tensor "${entry.name}" ${a.field} is longer than the ${a.length} bytes recorded`);
          out.set(part, pos);
          crc = crc32(part, crc);
          pos += part.byteLength;
        }
        if (pos !== a.length) throw new CacheError(`${key}: tensor "${entry.name}" ${a.field} has ${pos} of ${a.length} bytes`);
        if (crc !== a.crc32) throw new CacheError(`${key}: tensor "${entry.name}" ${a.field} fails its checksum (stored data is corrupt)`);
        arrays.set(a.field, out);
      }
      await onTensor(tensorFrom(entry, arrays), i, m.tensors.length);
    }
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

export class CacheWriter {
  private readonly tensors: CachedTensor[] = [];
  private bytes = 0;
  private finished = false;

  constructor(
    private readonly db: IDBPDatabase<CacheDb>,
    readonly key: string,
    readonly writeId: string,
    private readonly meta: { repo: string; revision: string; quant: QuantSettings },
    private readonly onDone: () => void,
  ) {}

  /** Stores one tensor's arrays (in parts) under this write's id. */
  async put(t: LoadedTensor): Promise<void> {
    if (this.finished) throw new CacheError(`${this.key}: write already finished`);
    const index = this.tensors.length;
    const entry: CachedTensor = {
      name: t.name,
      kind: t.kind,
      dtype: t.dtype,
      shape: t.kind === 'dense' ? t.shape : t.quant.shape,
      arrays: [],
    };
    if (t.kind === 'nf4' && t.quant.nested) entry.offset = t.quant.nested.offset;
    for (const [field, data] of arraysOf(t)) {
      const parts = Math.max(1, Math.ceil(data.byteLength / CACHE_PART_BYTES));
      const tx = this.db.transaction('blobs', 'readwrite');
      for (let p = 0; p < parts; p++) {
        // A copy: the stored value must not alias a buffer the caller keeps using.
        const part = data.slice(p * CACHE_PART_BYTES, Math.min(data.byteLength, (p + 1) * CACHE_PART_BYTES));
        void tx.store.put(part, blobKey(this.writeId, index, field, p));
      }
      await tx.done;
      entry.arrays.push({ field, length: data.byteLength, crc32: crc32(data), parts });
      this.bytes += data.byteLength;
    }
    this.tensors.push(entry);
  }

  /** Makes the model visible: the manifest goes in last, replacing (and freeing) an older copy. */
  async commit(config: HfConfig): Promise<CacheManifest> {
    if (this.finished) throw new CacheError(`${this.key}: write already finished`);
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
    const tx = this.db.transaction(['manifests', 'blobs'], 'readwrite');
    const previous = await tx.objectStore('manifests').get(this.key);
    if (previous && previous.writeId !== this.writeId) await tx.objectStore('blobs').delete(writeRange(previous.writeId));
    await tx.objectStore('manifests').put(manifest);
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
