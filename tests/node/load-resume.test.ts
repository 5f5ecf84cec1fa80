/**
 * Downloads that survive: a connection cut after ~40% of a three-shard model fails the load,
 * and the next attempt — in the same page, or after a reload (a new cache over the same
 * IndexedDB) — asks the hub for about the remaining 60% only. Each shard is checked against the
 * sha256 the hub reports; a file corrupted in transit is refused and fetched again; a cached
 * copy that fails its checks is removed and downloaded again; two loaders racing for the same
 * model over one database both end with the complete copy.
 */
import 'fake-indexeddb/auto';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { openDB } from 'idb';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient, retryAfterMs } from '../../workers/load/hub';
import { hubFileSet } from '../../workers/load/sources';
import { loadModel, type LoadedModel } from '../../workers/load/load-model';
import { ModelCache, cacheKey, CACHE_SCHEMA_VERSION } from '../../workers/load/cache';
import { DEFAULT_QUANT } from '../../workers/load/presets';
import type { LoadedTensor } from '../../workers/load/quantize-on-load';
import { crc32 } from '../../workers/util/crc32';

const REPO = 'test-org/resumable-phi';
const hub = new MockHub();
const config = tinyPhiConfig({ hidden_size: 256, intermediate_size: 1024, num_attention_heads: 8, num_key_value_heads: 8, num_hidden_layers: 4, vocab_size: 512 });
const tensors = tinyModelTensors(config, 'F16', 3);
const files = tinyModelFiles(config, tensors, 3);
const shards = [...files.keys()].filter((f) => f.endsWith('.safetensors')).sort();
const shardBytes = shards.map((f) => (files.get(f) as Uint8Array).byteLength);
const modelBytes = shardBytes.reduce((a, b) => a + b, 0);
const largestTensor = Math.max(...tensors.map((t) => t.data.byteLength));
let dbCount = 0;
let reference: Map<string, LoadedTensor>;
// Each test downloads a 6.85 MB model two or three times with the CPU quantizer: seconds on a shared machine.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const client = (retries = 5) => new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1, retries });
const cacheId = { repo: REPO, revision: 'main' };
const shardServed = () => shards.reduce((n, f) => n + hub.bytesServed(f), 0);

function digest(t: LoadedTensor): number {
  if (t.kind === 'dense') return crc32(t.data);
  const q = t.quant;
  return crc32(q.nested!.qabsmax, crc32(q.packed));
}

function expectReference(got: LoadedModel) {
  expect([...got.tensors.keys()].sort()).toEqual([...reference.keys()].sort());
  for (const [name, t] of reference) expect(digest(got.tensors.get(name)!), name).toBe(digest(t));
}

/** Where the cut goes: the byte at `fraction` of all shard bytes, as (shard, offset in it). */
function cutAt(fraction: number): { file: string; atByte: number; before: number } {
  let target = Math.floor(modelBytes * fraction);
  for (let i = 0; i < shards.length; i++) {
    if (target < shardBytes[i]) return { file: shards[i], atByte: target, before: Math.floor(modelBytes * fraction) };
    target -= shardBytes[i];
  }
  throw new Error('fraction past the end');
}

beforeAll(async () => {
  await hub.start();
  for (const [path, data] of files) hub.addFile(REPO, path, data);
  reference = (await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT })).tensors;
});
afterAll(() => hub.stop());
beforeEach(() => hub.clearLog());

/** Attempt 1 with no retries left: the cut at 40% fails it. Returns what the hub served. */
async function failAtFortyPercent(cache: ModelCache, notices: string[] = []): Promise<number> {
  const cut = cutAt(0.4);
  hub.cutOnce(cut);
  await expect(loadModel({ files: hubFileSet(client(0), REPO), quant: DEFAULT_QUANT, cache, cacheId, onNotice: (m) => void notices.push(m) })).rejects.toThrow(/network error/);
  const served = shardServed();
  hub.clearLog();
  return served;
}

describe('downloads resume', () => {
  it('the next attempt in the same page fetches only what the cut attempt did not store (about 60%)', async () => {
    const cache = await ModelCache.open(`resume-${++dbCount}`);
    const notices: string[] = [];
    const first = await failAtFortyPercent(cache, notices);
    expect(first).toBeGreaterThan(0.38 * modelBytes);
    expect(first).toBeLessThan(0.45 * modelBytes);
    const [partial] = await cache.partials();
    expect(partial.tensors).toBeGreaterThan(0);
    const second = await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache, cacheId, onNotice: (m) => void notices.push(m) });
    const served = shardServed();
    console.log(`same page: model ${modelBytes} B; attempt 1 served ${first} B (${(100 * first / modelBytes).toFixed(1)}%), attempt 2 served ${served} B (${(100 * served / modelBytes).toFixed(1)}%); re-fetched ${first + served - modelBytes} B`);
    // The remaining 60%, plus at most the tensor in flight at the cut and the headers read again.
    expect(served).toBeGreaterThan(0.55 * modelBytes);
    expect(served).toBeLessThan(0.6 * modelBytes + largestTensor + shards.length * 2 * 64 * 1024);
    expect(first + served - modelBytes).toBeLessThan(largestTensor + shards.length * 2 * 64 * 1024);
    expect(notices.some((n) => /resuming the download: \d+ tensors/.test(n))).toBe(true);
    // Each shard verified once, across both attempts (the first shard in attempt 1).
    expect(notices.filter((n) => /sha256 verified/.test(n))).toHaveLength(shards.length);
    expectReference(second);
    expect(await cache.partials()).toEqual([]);
    expect((await cache.list()).map((m) => m.key)).toEqual([cacheKey(REPO, hub.commit(REPO)!, DEFAULT_QUANT)]);
    cache.close();
  });

  it('after a reload (a new cache over the same IndexedDB) the download resumes from the same point', async () => {
    const name = `resume-${++dbCount}`;
    const page1 = await ModelCache.open(name);
    const first = await failAtFortyPercent(page1);
    page1.close();
    const page2 = await ModelCache.open(name); // its sweep must keep the download in progress
    const second = await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache: page2, cacheId });
    const served = shardServed();
    console.log(`after reload: attempt 1 served ${first} B, attempt 2 served ${served} B (${(100 * served / modelBytes).toFixed(1)}%)`);
    expect(served).toBeGreaterThan(0.55 * modelBytes);
    expect(served).toBeLessThan(0.6 * modelBytes + largestTensor + shards.length * 2 * 64 * 1024);
    expectReference(second);
    // The committed copy is complete: a third load reads it all from the cache.
    hub.clearLog();
    const third = await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache: page2, cacheId });
    expect(third.fromCache).toBe(true);
    expect(shardServed()).toBe(0);
    expectReference(third);
    page2.close();
  });
});

describe('downloads are verified', () => {
  it('a stored tensor of a download in progress that fails its CRC is dropped with its file and fetched again', async () => {
    const name = `resume-${++dbCount}`;
    const cache = await ModelCache.open(name);
    await failAtFortyPercent(cache);
    const db = await openDB(name, CACHE_SCHEMA_VERSION);
    const victim = ((await db.getAllKeys('blobs')) as string[]).find((k) => k.includes('/packed/'))!;
    const bytes = (await db.get('blobs', victim)) as Uint8Array;
    bytes[0] ^= 0xff;
    await db.put('blobs', bytes, victim);
    const notices: string[] = [];
    const got = await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache, cacheId, onNotice: (m) => void notices.push(m) });
    expect(notices.some((n) => /fails its checksum .*the stored part of model-0000\d-of-00003\.safetensors was dropped and is downloaded again/.test(n))).toBe(true);
    expectReference(got);
    await cache.read((await cache.list())[0].key, () => {});
    db.close();
    cache.close();
  });

  it('a shard corrupted in transit fails its sha256, is refused (the user is told) and fetched again', async () => {
    const cache = await ModelCache.open(`resume-${++dbCount}`);
    const victim = shards[1];
    hub.corruptNext(victim, 1, 64 * 1024);
    const notices: string[] = [];
    const got = await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache, cacheId, onNotice: (m) => void notices.push(m) });
    const refused = notices.filter((n) => n.includes('refused'));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(new RegExp(`^${victim.replace(/\./g, '\\.')}: its sha256 is [0-9a-f]{64} but the hub reports [0-9a-f]{64}; .*refused, its \\d+ stored tensors dropped from the cache, and is downloaded again`));
    // The victim and what follows it were fetched twice; the shard before it once.
    console.log(`sha256 refusal: served ${shardServed()} B for a ${modelBytes} B model`);
    expect(hub.bytesServed(shards[0])).toBeLessThan(shardBytes[0] + 3 * 64 * 1024);
    expect(hub.bytesServed(victim)).toBeGreaterThan(2 * shardBytes[1] - 64 * 1024);
    expectReference(got);
    cache.close();
  });

  it('the hub reports each shard sha256 in X-Linked-Etag on resolve and as the ETag of the bytes', async () => {
    const res = await fetch(`${hub.endpoint}/${REPO}/resolve/main/${shards[0]}`, { redirect: 'manual' });
    const { createHash } = await import('node:crypto');
    const sha = createHash('sha256').update(files.get(shards[0]) as Uint8Array).digest('hex');
    expect(res.status).toBe(302);
    expect(res.headers.get('X-Linked-Etag')).toBe(`"${sha}"`);
    const file = client().file(REPO, 'main', shards[0]);
    await file.size();
    expect(file.sha256()).toBe(sha);
  });

  it('a cached copy that fails its CRC on read is removed and downloaded again', async () => {
    const name = `resume-${++dbCount}`;
    const cache = await ModelCache.open(name);
    await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache, cacheId });
    const db = await openDB(name, CACHE_SCHEMA_VERSION);
    const victim = ((await db.getAllKeys('blobs')) as string[]).find((k) => k.includes('/packed/'))!;
    const bytes = (await db.get('blobs', victim)) as Uint8Array;
    bytes[3] ^= 0xff;
    await db.put('blobs', bytes, victim);
    hub.clearLog();
    const notices: string[] = [];
    const again = await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache, cacheId, onNotice: (m) => void notices.push(m) });
    expect(notices.some((n) => /fails its checksum .*the cached copy was removed and is downloaded again/.test(n))).toBe(true);
    expect(again.fromCache).toBe(false);
    expect(shardServed()).toBeGreaterThanOrEqual(modelBytes);
    expectReference(again);
    expect(await db.get('blobs', victim)).toBeUndefined();
    db.close();
    cache.close();
  });
});

describe('one writer at a time', () => {
  it('two pages loading the same model at once over one IndexedDB both end with the complete copy, downloaded once', async () => {
    const name = `resume-${++dbCount}`;
    const [a, b] = await Promise.all([ModelCache.open(name), ModelCache.open(name)]);
    const noticesB: string[] = [];
    const [ga, gb] = await Promise.all([
      loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache: a, cacheId }),
      // Page b opens its cache (and sweeps) while a downloads.
      (async () => {
        await new Promise((r) => setTimeout(r, 30));
        const c = await ModelCache.open(name);
        c.close();
        return loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache: b, cacheId, onNotice: (m) => void noticesB.push(m) });
      })(),
    ]);
    expectReference(ga);
    expectReference(gb);
    expect(gb.fromCache).toBe(true);
    expect(noticesB.some((n) => n.includes('another tab finished downloading'))).toBe(true);
    expect(shardServed()).toBeLessThan(modelBytes + 3 * shards.length * 64 * 1024);
    const c = await ModelCache.open(name);
    const [copy] = await c.list();
    await c.read(copy.key, () => {}); // every part present, every CRC right
    for (const x of [a, b, c]) x.close();
  });

  it("a sweep on open never deletes another page's download in progress", async () => {
    const name = `resume-${++dbCount}`;
    const a = await ModelCache.open(name);
    const writer = (await a.openWrite('x@c#nf4', { repo: 'x', revision: 'main', commit: 'c'.repeat(40), quant: DEFAULT_QUANT }))!;
    await writer.put({ kind: 'dense', name: 't', dtype: 'F16', shape: [4], data: new Uint8Array(8).fill(3) });
    const b = await ModelCache.open(name);
    expect(await b.sweepOrphans()).toBe(0);
    await writer.put({ kind: 'dense', name: 'u', dtype: 'F16', shape: [4], data: new Uint8Array(8).fill(4) });
    const m = await writer.commit({});
    expect(m.tensors.map((t) => t.name)).toEqual(['t', 'u']);
    await b.read(m.key, () => {});
    a.close();
    b.close();
  });
});

describe('storage persistence', () => {
  it('is requested when a model is first written, and the answer is told; a resumed download does not ask again', async () => {
    const cache = await ModelCache.open(`resume-${++dbCount}`);
    let asked = 0;
    const storage = { estimate: async () => ({ usage: 0, quota: 1e10 }), persisted: async () => false, persist: async () => (++asked, false) };
    const notices: string[] = [];
    hub.cutOnce(cutAt(0.4));
    await expect(loadModel({ files: hubFileSet(client(0), REPO), quant: DEFAULT_QUANT, cache, cacheId, storage, onNotice: (m) => void notices.push(m) })).rejects.toThrow(/network error/);
    await loadModel({ files: hubFileSet(client(), REPO), quant: DEFAULT_QUANT, cache, cacheId, storage, onNotice: (m) => void notices.push(m) });
    expect(asked).toBe(1);
    expect(notices.filter((n) => n.startsWith('Persistent storage'))).toEqual(['Persistent storage not granted: the browser may evict cached models and checkpoints when disk space runs low (it would be downloaded or trained again).']);
    cache.close();
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates, bounded', () => {
    const now = Date.parse('Wed, 02 Dec 2026 07:00:00 GMT');
    expect(retryAfterMs('3', 60_000, now)).toBe(3000);
    expect(retryAfterMs('Wed, 02 Dec 2026 07:00:10 GMT', 60_000, now)).toBe(10_000);
    expect(retryAfterMs('Wed, 02 Dec 2026 06:59:00 GMT', 60_000, now)).toBe(0);
    expect(retryAfterMs('86400', 60_000, now)).toBe(60_000);
    expect(retryAfterMs('soon', 60_000, now)).toBeNull();
    expect(retryAfterMs(null, 60_000, now)).toBeNull();
  });

  it('a 503 with Retry-After: 1 waits a second before the retry, not the 1 ms backoff', async () => {
    hub.failNext('config.json', 503, 1, '1');
    const reasons: string[] = [];
    const c = new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1, onRetry: (_f, _a, why) => reasons.push(why) });
    const t0 = performance.now();
    expect(await c.text(REPO, 'main', 'config.json')).toContain('"phi"');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(950);
    expect(reasons).toEqual(['HTTP 503, the hub asks to retry after 1 s']);
  });
});
