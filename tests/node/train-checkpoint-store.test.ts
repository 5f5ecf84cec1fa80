import 'fake-indexeddb/auto';
import { openDB } from 'idb';
import { describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../workers/train/checkpoint-store';
import { crc32 } from '../../workers/util/crc32';
import { DEFAULT_TRAIN_SETTINGS, type TrainerSnapshot } from '../../workers/train/trainer';

function snapshot(step: number, seed = step): TrainerSnapshot {
  const f = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 13 + k * 7 + i) / (i + 1));
  return {
    settings: { ...DEFAULT_TRAIN_SETTINGS, maxSteps: 10 },
    step,
    totalSteps: 10,
    cursor: { epoch: 0, microBatch: step * 2 },
    rng: { seed: 42, dropoutSeed: 42 },
    history: Array.from({ length: step }, (_, s) => ({ step: s, epoch: 0, loss: 5 - s * 0.1, lr: 1e-3, gradNorm: 0.5, clipped: false, micro: [{ lossSum: 10, tokens: 2 }] })),
    evals: [{ step, loss: 4.5, tokens: 30 }],
    lora: [
      { key: 'a.lora_A.weight', shape: [3, 7], data: f(21, 1) },
      { key: 'a.lora_B.weight', shape: [5, 3], data: f(15, 2) },
    ],
    optimizer: {
      step,
      tensors: [
        { key: 'a.lora_A.weight', expAvg: f(21, 3), expAvgSq: f(21, 4) },
        { key: 'a.lora_B.weight', expAvg: f(15, 5), expAvgSq: f(15, 6) },
      ],
    },
  };
}

let dbCounter = 0;
const open = () => CheckpointStore.open({ dbName: `ckpt-test-${dbCounter++}`, chunkBytes: 64 });

describe('checkpoint store (IndexedDB)', () => {
  it('crc32 matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });

  it('round-trips a snapshot bit for bit across many chunks', async () => {
    const store = await open();
    const snap = snapshot(3);
    const info = await store.save('run', snap, 'interval');
    expect(info.totalBytes).toBe((21 * 3 + 15 * 3) * 4);
    const loaded = await store.loadLatest('run');
    expect(loaded!.warnings).toEqual([]);
    expect(loaded!.snapshot).toEqual(snap);
    expect(loaded!.info.step).toBe(3);
    store.close();
  });

  it('keeps the newest two checkpoints and drops older ones with their chunks', async () => {
    const store = await open();
    for (const s of [1, 2, 3]) await store.save('run', snapshot(s));
    expect((await store.list('run')).map((c) => c.step)).toEqual([3, 2]);
    expect((await store.loadLatest('run'))!.snapshot.step).toBe(3);
    expect(await store.loadLatest('other')).toBeNull();
    store.close();
  });

  async function damage(dbName: string, how: 'flip' | 'truncate' | 'drop') {
    const db = await openDB(dbName, 1);
    const pointer = await db.get('runs', 'run');
    const newest = await db.get('checkpoints', pointer.ids[0]);
    const key = [newest.id, 1];
    const chunk = new Uint8Array(await db.get('chunks', key));
    if (how === 'flip') {
      chunk[5] ^= 0x10;
      await db.put('chunks', chunk.buffer, key);
    } else if (how === 'truncate') await db.put('chunks', chunk.slice(0, 10).buffer, key);
    else await db.delete('chunks', key);
    db.close();
  }

  for (const how of ['flip', 'truncate', 'drop'] as const) {
    it(`falls back to the previous checkpoint when the newest is damaged (${how})`, async () => {
      const dbName = `ckpt-test-${dbCounter++}`;
      const store = await CheckpointStore.open({ dbName, chunkBytes: 64 });
      await store.save('run', snapshot(4));
      await store.save('run', snapshot(6));
      await damage(dbName, how);
      const loaded = await store.loadLatest('run');
      expect(loaded!.snapshot).toEqual(snapshot(4));
      expect(loaded!.warnings).toHaveLength(1);
      const reason = { flip: /checksum mismatch in tensor "lora\/a.lora_A.weight"/, truncate: /chunk 2 of \d+ holds 10 bytes.*truncated/, drop: /chunk 2 of \d+ is missing/ }[how];
      expect(loaded!.warnings[0]).toMatch(/checkpoint at step 6 of run "run" is damaged/);
      expect(loaded!.warnings[0]).toMatch(reason);
      expect(loaded!.warnings[0]).toMatch(/falling back to the previous checkpoint/);
      store.close();
    });
  }

  it('a write that never reached the pointer leaves the previous checkpoint in charge', async () => {
    const dbName = `ckpt-test-${dbCounter++}`;
    const store = await CheckpointStore.open({ dbName, chunkBytes: 64 });
    await store.save('run', snapshot(2));
    // Simulate a crash after the chunks and record of step 5 were written, before the pointer.
    const db = await openDB(dbName, 1);
    const before = await db.get('runs', 'run');
    await store.save('run', snapshot(5));
    await db.put('runs', before, 'run');
    db.close();
    expect((await store.loadLatest('run'))!.snapshot.step).toBe(2);
    store.close();
  });

  it('says so when every checkpoint is damaged', async () => {
    const dbName = `ckpt-test-${dbCounter++}`;
    const store = await CheckpointStore.open({ dbName, chunkBytes: 64 });
    await store.save('run', snapshot(1));
    await damage(dbName, 'drop');
    await expect(store.loadLatest('run')).rejects.toThrow(/step 1 .*damaged.*no usable checkpoint left/);
    store.close();
  });
});

describe('a full disk during a checkpoint', () => {
  it('keeps the previous checkpoint, removes the partial one and says "storage is full" with sizes and what can be deleted', async () => {
    const dbName = `ckpt-test-${dbCounter++}`;
    const storage = { estimate: async () => ({ usage: 49_900_000, quota: 50_000_000 }) };
    const store = await CheckpointStore.open({ dbName, chunkBytes: 64, storage });
    await store.save('other-run', snapshot(1));
    await store.save('run', snapshot(2));
    const db = await openDB(dbName, 1);
    const chunksBefore = await db.count('chunks');
    // The browser refuses the third chunk of the next checkpoint.
    const idb = (store as unknown as { db: { put: (...a: unknown[]) => Promise<unknown> } }).db;
    const put = idb.put.bind(idb);
    let chunkPuts = 0;
    idb.put = async (storeName: unknown, ...rest: unknown[]) => {
      if (storeName === 'chunks' && ++chunkPuts === 3) throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      return put(storeName, ...rest);
    };
    const err = await store.save('run', snapshot(5)).catch((e) => e);
    idb.put = put;
    expect(err.name).toBe('QuotaError'); // shown as "storage-full" by workers/errors.ts
    expect(err.message).toMatch(/^storage is full: the checkpoint of step 5 needs [\d.]+ MB and the browser refused it after 0\.0 MB; this site uses 49\.9 MB of 50\.0 MB; the checkpoint of step 2 is kept; the partial one was removed; to make room, delete cached models in the Model section or earlier runs' checkpoints: run other-run \([\d.]+ MB\)\.$/);
    expect(await db.count('chunks')).toBe(chunksBefore);
    expect((await store.loadLatest('run'))!.snapshot.step).toBe(2);
    // Another error is not dressed as a full disk, and still leaves no partial chunks.
    chunkPuts = 0;
    idb.put = async (storeName: unknown, ...rest: unknown[]) => {
      if (storeName === 'chunks' && ++chunkPuts === 2) throw new Error('disk on fire');
      return put(storeName, ...rest);
    };
    await expect(store.save('run', snapshot(6))).rejects.toThrow('disk on fire');
    idb.put = put;
    expect(await db.count('chunks')).toBe(chunksBefore);
    db.close();
    store.close();
  });
});

describe('free room checked before a checkpoint', () => {
  /** A storage API with a small quota whose usage the test sets. */
  function smallStorage(quota: number) {
    const s = { usage: 0, calls: 0, estimate: async () => (s.calls++, { usage: s.usage, quota }) };
    return s;
  }
  const ckptBytes = (21 * 3 + 15 * 3) * 4;

  it('writes when there is room for two checkpoints', async () => {
    const storage = smallStorage(10_000);
    const store = await CheckpointStore.open({ dbName: `ckpt-test-${dbCounter++}`, chunkBytes: 64, storage });
    storage.usage = 10_000 - 2 * ckptBytes; // exactly room for two
    await store.save('run', snapshot(3));
    expect(storage.calls).toBe(1);
    expect((await store.loadLatest('run'))!.snapshot).toEqual(snapshot(3));
    store.close();
  });

  it('refuses before writing when less than twice the checkpoint is free, keeping the previous one', async () => {
    const dbName = `ckpt-test-${dbCounter++}`;
    const storage = smallStorage(10_000);
    const store = await CheckpointStore.open({ dbName, chunkBytes: 64, storage });
    await store.save('other-run', snapshot(1));
    await store.save('run', snapshot(2));
    const db = await openDB(dbName, 1);
    const chunksBefore = await db.count('chunks');
    const recordsBefore = await db.count('checkpoints');
    const idb = (store as unknown as { db: { put: (...a: unknown[]) => Promise<unknown> } }).db;
    const put = idb.put.bind(idb);
    let puts = 0;
    idb.put = async (...a: unknown[]) => (puts++, put(...a));
    storage.usage = 10_000 - 2 * ckptBytes + 1; // one byte short of room for two
    const err = await store.save('run', snapshot(5)).catch((e) => e);
    idb.put = put;
    expect(err.name).toBe('QuotaError'); // the same "storage-full" code as a refused write
    expect(err.needed).toBe(ckptBytes);
    expect(err.usage).toBe(storage.usage);
    expect(err.quota).toBe(10_000);
    expect(err.message).toMatch(/^storage is full: the checkpoint of step 5 needs [\d.]+ MB and room for two \([\d.]+ MB\) while the previous one is kept, but only [\d.]+ MB is free, so it was not written; this site uses [\d.]+ MB of 0\.0 MB; the checkpoint of step 2 is kept; to make room, delete cached models in the Model section or earlier runs' checkpoints: run other-run \([\d.]+ MB\)\.$/);
    expect(err.message).not.toMatch(/partial/);
    expect(puts).toBe(0);
    expect(await db.count('chunks')).toBe(chunksBefore);
    expect(await db.count('checkpoints')).toBe(recordsBefore);
    expect((await store.list('run')).map((c) => c.step)).toEqual([2]);
    expect((await store.loadLatest('run'))!.snapshot).toEqual(snapshot(2));
    db.close();
    store.close();
  });

  it('writes as before when the estimate throws or leaves out a field', async () => {
    for (const estimate of [async () => Promise.reject(new Error('no estimate')), async () => ({ usage: 9_999 })]) {
      const store = await CheckpointStore.open({ dbName: `ckpt-test-${dbCounter++}`, chunkBytes: 64, storage: { estimate } });
      await store.save('run', snapshot(4));
      expect((await store.loadLatest('run'))!.snapshot.step).toBe(4);
      store.close();
    }
  });
});
