/**
 * Training checkpoints in IndexedDB. A checkpoint is a JSON record (settings, step, cursor,
 * RNG seeds, histories, the tensor table with a CRC-32 per tensor) plus its tensor bytes in
 * chunks. Saving is atomic in the sense that matters: the chunks and the record are written
 * first, and only then does the run's pointer list name the new checkpoint, so a crash
 * mid-write leaves the previous checkpoint in charge. Loading verifies every checksum and
 * falls back to the previous checkpoint, with a message, when the newest is damaged.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { CheckpointReason, CheckpointSink, TrainerSnapshot } from './trainer';
import { crc32 } from '../util/crc32';

/** The browser refused a write for lack of room (IndexedDB reports `QuotaExceededError`). */
export function isQuotaExceeded(err: unknown): boolean {
  const e = err as { name?: string; code?: number; inner?: unknown };
  return e?.name === 'QuotaExceededError' || e?.code === 22;
}

/** A checkpoint that did not fit: what it needed, what the site uses, and what can be deleted. */
export class StorageFullError extends Error {
  constructor(
    message: string,
    readonly needed: number,
    readonly usage: number | null,
    readonly quota: number | null,
  ) {
    super(message);
    // The engine's error mapping (workers/errors.ts) shows this as "storage-full".
    this.name = 'QuotaError';
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

const DB_VERSION = 1;
export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;

interface TensorEntry {
  name: string;
  byteOffset: number;
  byteLength: number;
  crc: number;
}

export interface CheckpointRecord {
  id: string;
  runId: string;
  step: number;
  reason: CheckpointReason;
  createdAt: number;
  /** The snapshot without its tensors, as JSON. */
  meta: string;
  metaCrc: number;
  tensors: TensorEntry[];
  totalBytes: number;
  chunkBytes: number;
  chunkCount: number;
}

interface RunPointer {
  runId: string;
  /** Valid checkpoints, newest first. */
  ids: string[];
}

interface CheckpointDb extends DBSchema {
  chunks: { key: [string, number]; value: ArrayBuffer };
  checkpoints: { key: string; value: CheckpointRecord };
  runs: { key: string; value: RunPointer };
}

export interface CheckpointInfo {
  id: string;
  runId: string;
  step: number;
  reason: CheckpointReason;
  createdAt: number;
  totalBytes: number;
}

export interface LoadedCheckpoint {
  snapshot: TrainerSnapshot;
  info: CheckpointInfo;
  /** One line per newer checkpoint that was skipped because it is damaged. */
  warnings: string[];
}

/**
 * The newest checkpoint whose record and chunks are all there, opened without reading its
 * tensors: each is read (and its checksum checked) when asked for, so a reader holds one tensor
 * and one chunk at a time instead of the whole checkpoint.
 */
export interface OpenedCheckpoint {
  info: CheckpointInfo;
  warnings: string[];
  /** The snapshot without its tensors: settings, step, cursor, histories, the LoRA table, the optimizer's step and keys. */
  meta: SnapshotMeta;
  /** `lora/<key>`, `exp_avg/<key>` or `exp_avg_sq/<key>`. */
  tensor(name: string): Promise<Float32Array>;
  /** Bytes of chunk data held while a tensor is read (for a caller's accounting): called with +n then −n. */
  onChunk?: (delta: number) => void;
}

export interface CheckpointStoreOptions {
  dbName?: string;
  /** Free room checked before each checkpoint, and the sizes a "storage is full" message gives (navigator.storage in the browser). */
  storage?: { estimate(): Promise<{ usage?: number; quota?: number }> } | null;
  /** Checkpoints kept per run (≥ 2, so a damaged newest one has a fallback). */
  keep?: number;
  chunkBytes?: number;
}

export class CheckpointStore {
  private constructor(
    private readonly db: IDBPDatabase<CheckpointDb>,
    private readonly keep: number,
    private readonly chunkBytes: number,
    private readonly storage: CheckpointStoreOptions['storage'],
  ) {}

  static async open(o: CheckpointStoreOptions = {}): Promise<CheckpointStore> {
    const db = await openDB<CheckpointDb>(o.dbName ?? 'qlora-checkpoints', DB_VERSION, {
      upgrade(d) {
        d.createObjectStore('chunks');
        d.createObjectStore('checkpoints');
        d.createObjectStore('runs');
      },
    });
    const chunk = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (chunk % 4 !== 0 || chunk <= 0) throw new RangeError(`chunkBytes must be a positive multiple of 4, got ${chunk}`);
    return new CheckpointStore(db, Math.max(2, o.keep ?? 2), chunk, o.storage ?? null);
  }

  close(): void {
    this.db.close();
  }

  /** A sink for Trainer that saves into run `runId`. */
  sink(runId: string): CheckpointSink {
    return { save: async (snap, reason) => void (await this.save(runId, snap, reason)) };
  }

  async save(runId: string, snap: TrainerSnapshot, reason: CheckpointReason = 'interval'): Promise<CheckpointInfo> {
    const { meta, tensors } = splitSnapshot(snap);
    const createdAt = Date.now();
    const id = `${runId}#${snap.step}#${createdAt}#${Math.random().toString(36).slice(2, 8)}`;
    const entries: TensorEntry[] = [];
    let offset = 0;
    for (const t of tensors) {
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      entries.push({ name: t.name, byteOffset: offset, byteLength: bytes.byteLength, crc: crc32(bytes) });
      offset += bytes.byteLength;
    }
    const totalBytes = offset;
    const chunkCount = Math.ceil(totalBytes / this.chunkBytes);
    // The new checkpoint is written before the previous one goes, so two must fit at once:
    // refuse before the first byte rather than fail half-way through.
    const space = await this.estimate();
    if (space && space.quota - space.usage < 2 * totalBytes) {
      throw await this.storageFull(runId, snap.step, totalBytes, { free: Math.max(0, space.quota - space.usage) }, space);
    }
    const progress = { written: 0 };
    let dropped: string[];
    let info: CheckpointInfo;
    try {
      await this.writeChunks(id, tensors, totalBytes, chunkCount, progress);
      // 2. the record.
      const metaText = JSON.stringify(meta);
      const record: CheckpointRecord = { id, runId, step: snap.step, reason, createdAt, meta: metaText, metaCrc: crc32(new TextEncoder().encode(metaText)), tensors: entries, totalBytes, chunkBytes: this.chunkBytes, chunkCount };
      await this.db.put('checkpoints', record, id);
      dropped = await this.point(runId, id);
      info = infoOf(record);
    } catch (err) {
      // The partial checkpoint goes; the previous one stays in charge (the pointer never moved).
      const cleaned = await this.deleteCheckpoint(id, chunkCount).then(() => true, () => false);
      if (!isQuotaExceeded(err)) throw err;
      throw await this.storageFull(runId, snap.step, totalBytes, { written: progress.written, cleaned }, await this.estimate());
    }
    // The new checkpoint counts now; the ones it pushes out go.
    for (const old of dropped) await this.deleteCheckpoint(old);
    return info;
  }

  /** Usage and quota from the storage API; null when there is none, it throws, or it leaves a field out. */
  private async estimate(): Promise<{ usage: number; quota: number } | null> {
    try {
      const e = await this.storage?.estimate();
      const { usage, quota } = e ?? {};
      return Number.isFinite(usage) && Number.isFinite(quota) ? { usage: usage!, quota: quota! } : null;
    } catch {
      return null;
    }
  }

  /**
   * The "storage is full" error: sizes, the checkpoint kept, and what can be deleted. `outcome` says
   * whether the write was refused before it started (too little free room) or by the browser part-way.
   */
  private async storageFull(
    runId: string,
    step: number,
    needed: number,
    outcome: { free: number } | { written: number; cleaned: boolean },
    space: { usage: number; quota: number } | null,
  ): Promise<StorageFullError> {
    const kept = (await this.list(runId))[0];
    const others: string[] = [];
    for (const other of await this.runs()) {
      if (other === runId) continue;
      const bytes = (await this.list(other)).reduce((n, c) => n + c.totalBytes, 0);
      others.push(`run ${other} (${mb(bytes)})`);
    }
    const parts = [
      'free' in outcome
        ? `storage is full: the checkpoint of step ${step} needs ${mb(needed)} and room for two (${mb(2 * needed)}) while the previous one is kept, but only ${mb(outcome.free)} is free, so it was not written`
        : `storage is full: the checkpoint of step ${step} needs ${mb(needed)} and the browser refused it after ${mb(outcome.written)}`,
      space ? `this site uses ${mb(space.usage)} of ${mb(space.quota)}` : null,
      kept ? `the checkpoint of step ${kept.step} is kept` : 'no earlier checkpoint of this run exists',
      'free' in outcome ? null : outcome.cleaned ? 'the partial one was removed' : 'the partial one could not be removed yet (it is swept on the next start)',
      `to make room, delete cached models in the Model section${others.length ? ` or earlier runs' checkpoints: ${others.join(', ')}` : ''}`,
    ].filter(Boolean);
    return new StorageFullError(`${parts.join('; ')}.`, needed, space?.usage ?? null, space?.quota ?? null);
  }

  /** Writes the tensor bytes, one transaction per chunk (bounded memory per transaction), counting what got in. */
  private async writeChunks(id: string, tensors: { name: string; data: Float32Array }[], totalBytes: number, chunkCount: number, progress: { written: number }): Promise<void> {
    let ti = 0;
    let inTensor = 0;
    for (let c = 0; c < chunkCount; c++) {
      const size = Math.min(this.chunkBytes, totalBytes - c * this.chunkBytes);
      const chunk = new Uint8Array(size);
      let filled = 0;
      while (filled < size) {
        const t = tensors[ti].data;
        const src = new Uint8Array(t.buffer, t.byteOffset + inTensor, Math.min(t.byteLength - inTensor, size - filled));
        chunk.set(src, filled);
        filled += src.byteLength;
        inTensor += src.byteLength;
        if (inTensor === t.byteLength) {
          ti++;
          inTensor = 0;
        }
      }
      await this.db.put('chunks', chunk.buffer, [id, c]);
      progress.written += size;
    }
  }

  /** 3. the pointer: only now does the new checkpoint count. */
  private async point(runId: string, id: string): Promise<string[]> {
    const tx = this.db.transaction('runs', 'readwrite');
    const pointer = (await tx.store.get(runId)) ?? { runId, ids: [] };
    const ids = [id, ...pointer.ids.filter((x) => x !== id)];
    const dropped = ids.slice(this.keep);
    await tx.store.put({ runId, ids: ids.slice(0, this.keep) }, runId);
    await tx.done;
    return dropped;
  }

  async list(runId: string): Promise<CheckpointInfo[]> {
    const pointer = await this.db.get('runs', runId);
    const out: CheckpointInfo[] = [];
    for (const id of pointer?.ids ?? []) {
      const r = await this.db.get('checkpoints', id);
      if (r) out.push(infoOf(r));
    }
    return out;
  }

  /** The newest valid checkpoint of a run; null when it has none; throws (with the reasons) when all are damaged. */
  async loadLatest(runId: string): Promise<LoadedCheckpoint | null> {
    return this.newestUsable(runId, async (record, warnings) => {
      const problem = await this.verify(record);
      return typeof problem === 'string' ? problem : { snapshot: problem, info: infoOf(record), warnings };
    });
  }

  /** The newest checkpoint of a run with every chunk present, its tensors read on demand; null when it has none. */
  async openLatest(runId: string): Promise<OpenedCheckpoint | null> {
    return this.newestUsable(runId, async (record, warnings) => {
      if (crc32(new TextEncoder().encode(record.meta)) !== record.metaCrc) return 'settings/metadata checksum mismatch';
      const present = await this.db.getAllKeys('chunks', IDBKeyRange.bound([record.id, 0], [record.id, record.chunkCount]));
      if (present.length !== record.chunkCount) return `${record.chunkCount - present.length} of ${record.chunkCount} chunks missing`;
      return this.opened(record, warnings);
    });
  }

  /**
   * The first of a run's checkpoints, newest first, that `accept` takes (it returns why not as a
   * string); each one passed over becomes a warning. Null when the run has none; throws with the
   * reasons when every one is damaged.
   */
  private async newestUsable<T>(runId: string, accept: (record: CheckpointRecord, warnings: string[]) => Promise<T | string>): Promise<T | null> {
    const pointer = await this.db.get('runs', runId);
    const warnings: string[] = [];
    for (const id of pointer?.ids ?? []) {
      const record = await this.db.get('checkpoints', id);
      if (!record) {
        warnings.push(`checkpoint ${id} of run "${runId}" is missing its record; falling back to the previous checkpoint`);
        continue;
      }
      const used = await accept(record, warnings);
      if (typeof used !== 'string') return used;
      warnings.push(`checkpoint at step ${record.step} of run "${runId}" is damaged (${used}); falling back to the previous checkpoint`);
    }
    if (warnings.length) throw new Error(`${warnings.join('; ')}; run "${runId}" has no usable checkpoint left`);
    return null;
  }

  private opened(record: CheckpointRecord, warnings: string[]): OpenedCheckpoint {
    const entries = new Map(record.tensors.map((t) => [t.name, t]));
    const db = this.db;
    const opened: OpenedCheckpoint = {
      info: infoOf(record),
      warnings,
      meta: JSON.parse(record.meta) as SnapshotMeta,
      async tensor(name) {
        const t = entries.get(name);
        if (!t) throw new Error(`checkpoint at step ${record.step}: no tensor "${name}"`);
        const bytes = new Uint8Array(t.byteLength);
        const first = Math.floor(t.byteOffset / record.chunkBytes);
        const last = Math.floor((t.byteOffset + t.byteLength - 1) / record.chunkBytes);
        for (let c = first; c <= last && t.byteLength > 0; c++) {
          const chunk = await db.get('chunks', [record.id, c]);
          if (!chunk) throw new Error(`checkpoint at step ${record.step}: chunk ${c + 1} of ${record.chunkCount} is missing (tensor "${name}")`);
          opened.onChunk?.(chunk.byteLength);
          const chunkStart = c * record.chunkBytes;
          const from = Math.max(t.byteOffset, chunkStart);
          const to = Math.min(t.byteOffset + t.byteLength, chunkStart + chunk.byteLength);
          bytes.set(new Uint8Array(chunk, from - chunkStart, to - from), from - t.byteOffset);
          opened.onChunk?.(-chunk.byteLength);
        }
        if (crc32(bytes) !== t.crc) throw new Error(`checkpoint at step ${record.step}: checksum mismatch in tensor "${name}"`);
        return new Float32Array(bytes.buffer, 0, t.byteLength / 4);
      },
    };
    return opened;
  }

  async deleteRun(runId: string): Promise<void> {
    const pointer = await this.db.get('runs', runId);
    for (const id of pointer?.ids ?? []) await this.deleteCheckpoint(id);
    await this.db.delete('runs', runId);
  }

  async runs(): Promise<string[]> {
    return (await this.db.getAllKeys('runs')).map(String);
  }

  /** The snapshot if every chunk is present and every checksum matches, else the problem. */
  private async verify(record: CheckpointRecord): Promise<TrainerSnapshot | string> {
    if (crc32(new TextEncoder().encode(record.meta)) !== record.metaCrc) return 'settings/metadata checksum mismatch';
    const bytes = new Uint8Array(record.totalBytes);
    for (let c = 0; c < record.chunkCount; c++) {
      const chunk = await this.db.get('chunks', [record.id, c]);
      const want = Math.min(record.chunkBytes, record.totalBytes - c * record.chunkBytes);
      if (!chunk) return `chunk ${c + 1} of ${record.chunkCount} is missing (truncated write)`;
      if (chunk.byteLength !== want) return `chunk ${c + 1} of ${record.chunkCount} holds ${chunk.byteLength} bytes, expected ${want} (truncated)`;
      bytes.set(new Uint8Array(chunk), c * record.chunkBytes);
    }
    const arrays = new Map<string, Float32Array>();
    for (const t of record.tensors) {
      const view = bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength);
      if (crc32(view) !== t.crc) return `checksum mismatch in tensor "${t.name}"`;
      arrays.set(t.name, new Float32Array(bytes.buffer, t.byteOffset, t.byteLength / 4));
    }
    try {
      return joinSnapshot(JSON.parse(record.meta) as SnapshotMeta, arrays);
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** Deletes a checkpoint's chunks and record; `chunkCount` when it has no record yet (a write that failed). */
  private async deleteCheckpoint(id: string, chunkCount?: number): Promise<void> {
    const record = await this.db.get('checkpoints', id);
    const count = record?.chunkCount ?? chunkCount ?? 0;
    const tx = this.db.transaction(['chunks', 'checkpoints'], 'readwrite');
    for (let c = 0; c < count; c++) await tx.objectStore('chunks').delete([id, c]);
    await tx.objectStore('checkpoints').delete(id);
    await tx.done;
  }
}

export type SnapshotMeta = Omit<TrainerSnapshot, 'lora' | 'optimizer'> & {
  lora: { key: string; shape: [number, number] }[];
  optimizer: { step: number; keys: string[] };
};

function splitSnapshot(snap: TrainerSnapshot): { meta: SnapshotMeta; tensors: { name: string; data: Float32Array }[] } {
  const tensors: { name: string; data: Float32Array }[] = [];
  for (const l of snap.lora) tensors.push({ name: `lora/${l.key}`, data: l.data });
  for (const t of snap.optimizer.tensors) tensors.push({ name: `exp_avg/${t.key}`, data: t.expAvg }, { name: `exp_avg_sq/${t.key}`, data: t.expAvgSq });
  const meta: SnapshotMeta = {
    ...snap,
    lora: snap.lora.map((l) => ({ key: l.key, shape: l.shape })),
    optimizer: { step: snap.optimizer.step, keys: snap.optimizer.tensors.map((t) => t.key) },
  };
  return { meta, tensors };
}

function joinSnapshot(meta: SnapshotMeta, arrays: Map<string, Float32Array>): TrainerSnapshot {
  const get = (name: string) => {
    const a = arrays.get(name);
    if (!a) throw new Error(`tensor "${name}" is missing`);
    return a;
  };
  return {
    ...meta,
    lora: meta.lora.map((l) => ({ key: l.key, shape: l.shape, data: get(`lora/${l.key}`) })),
    optimizer: { step: meta.optimizer.step, tensors: meta.optimizer.keys.map((key) => ({ key, expAvg: get(`exp_avg/${key}`), expAvgSq: get(`exp_avg_sq/${key}`) })) },
  };
}

function infoOf(r: CheckpointRecord): CheckpointInfo {
  return { id: r.id, runId: r.runId, step: r.step, reason: r.reason, createdAt: r.createdAt, totalBytes: r.totalBytes };
}
