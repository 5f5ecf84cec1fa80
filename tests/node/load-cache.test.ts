import 'fake-indexeddb/auto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openDB } from 'idb';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient } from '../../workers/load/hub';
import { hubFileSet, localFileSet, type ModelFileSet } from '../../workers/load/sources';
import { loadModel } from '../../workers/load/load-model';
import { ModelCache, cacheKey, CACHE_SCHEMA_VERSION } from '../../workers/load/cache';
import { DEFAULT_QUANT } from '../../workers/load/presets';
import { QuotaError, type StorageApi } from '../../workers/load/storage';
import type { RangeFile } from '../../workers/load/byte-source';
import type { LoadedTensor } from '../../workers/load/quantize-on-load';

const REPO = 'test-org/cached-phi';
const hub = new MockHub();
const config = tinyPhiConfig();
const tensors = tinyModelTensors(config, 'BF16', 11);
const files = tinyModelFiles(config, tensors, 2);
let dbCount = 0;
const freshCache = () => ModelCache.open(`cache-test-${++dbCount}`);

beforeAll(async () => {
  await hub.start();
  for (const [path, data] of files) hub.addFile(REPO, path, data);
});
afterAll(() => hub.stop());
beforeEach(() => hub.clearLog());

const hubFiles = () => hubFileSet(new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1 }), REPO);
const cacheId = { repo: REPO, revision: 'main' };

function sameTensors(a: Map<string, LoadedTensor>, b: Map<string, LoadedTensor>) {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [name, x] of a) {
    const y = b.get(name)!;
    expect(y.kind).toBe(x.kind);
    if (x.kind === 'dense' && y.kind === 'dense') {
      expect(Buffer.compare(x.data, y.data)).toBe(0);
      expect(y.dtype).toBe(x.dtype);
    } else if (x.kind === 'nf4' && y.kind === 'nf4') {
      expect(Buffer.compare(x.quant.packed, y.quant.packed)).toBe(0);
      expect(Buffer.compare(x.quant.nested!.qabsmax, y.quant.nested!.qabsmax)).toBe(0);
      expect([...y.quant.nested!.nestedAbsmax]).toEqual([...x.quant.nested!.nestedAbsmax]);
      expect(y.quant.nested!.offset).toBe(x.quant.nested!.offset);
      expect(y.dtype).toBe(x.dtype);
    }
  }
}

/** Wraps a file set so that a read starting past `failAfter` in any shard throws (headers still load). */
function failingFiles(inner: ModelFileSet, failAfter: number): ModelFileSet {
  return {
    ...inner,
    file(path) {
      const f = inner.file(path);
      if (!f) return null;
      const wrapped: RangeFile = {
        name: f.name,
        size: () => f.size(),
        stream: (begin, end, chunk, signal) => {
          if (begin > failAfter) throw new Error('disk unplugged');
          return f.stream(begin, end, chunk, signal);
        },
      };
      return wrapped;
    },
  };
}

describe('IndexedDB model cache', () => {
  it('a second load comes from the cache with no model request (one commit lookup) and identical tensors', async () => {
    const cache = await freshCache();
    const first = await loadModel({ files: hubFiles(), quant: DEFAULT_QUANT, cache, cacheId });
    expect(first.fromCache).toBe(false);
    expect(hub.requests.length).toBeGreaterThan(0);
    const listed = await cache.list();
    expect(listed).toHaveLength(1);
    const commit = hub.commit(REPO)!;
    expect(first.identity).toEqual({ repo: REPO, revision: 'main', commit });
    expect(listed[0]).toMatchObject({ key: cacheKey(REPO, commit, DEFAULT_QUANT), repo: REPO, revision: 'main', commit, tensors: tensors.length });
    expect(listed[0].bytes).toBe(first.storedBytes);

    hub.clearLog();
    const second = await loadModel({ files: hubFiles(), quant: DEFAULT_QUANT, cache, cacheId });
    expect(second.fromCache).toBe(true);
    // One question to the hub (which commit is main?), no model file.
    expect(hub.requests.map((r) => r.path)).toEqual([`/api/models/${REPO}/revision/main`]);
    expect(second.config).toEqual(config);
    sameTensors(first.tensors, second.tensors);

    // Other quantization settings are another cache entry.
    const other = await loadModel({ files: hubFiles(), quant: { ...DEFAULT_QUANT, doubleQuant: false }, cache, cacheId });
    expect(other.fromCache).toBe(false);
    expect(await cache.list()).toHaveLength(2);
    await cache.delete(cacheKey(REPO, commit, DEFAULT_QUANT));
    expect((await cache.list()).map((m) => m.key)).toEqual([cacheKey(REPO, commit, { ...DEFAULT_QUANT, doubleQuant: false })]);
    cache.close();
  });

  it('an error mid-load commits nothing but keeps the finished tensors to resume from; deleting the model removes them', async () => {
    const cache = await freshCache();
    const local = localFileSet([...files].map(([n, d]) => new File([d as BlobPart], n)));
    let delivered = 0;
    const failing = loadModel({ files: failingFiles(local, 40_000), quant: DEFAULT_QUANT, cache, cacheId, onTensor: () => void delivered++ });
    await expect(failing).rejects.toThrow(/disk unplugged/);
    expect(delivered).toBeGreaterThan(3); // some tensors were written before the failure
    expect(await cache.list()).toEqual([]);
    const [partial] = await cache.partials();
    expect(partial.tensors).toBe(delivered);
    const db = await openDB(`cache-test-${dbCount}`, CACHE_SCHEMA_VERSION);
    expect(await db.count('blobs')).toBeGreaterThan(0);
    // A reopened cache (a reload) does not sweep a download in progress.
    const reopened = await ModelCache.open(`cache-test-${dbCount}`);
    expect(await db.count('blobs')).toBeGreaterThan(0);
    await reopened.delete(partial.key);
    expect(await db.count('blobs')).toBe(0);
    expect(await reopened.partials()).toEqual([]);
    db.close();
    reopened.close();
    cache.close();
  });

  it('blobs of a write that never committed are swept on the next open', async () => {
    const name = `cache-test-${++dbCount}`;
    const cache = await ModelCache.open(name);
    const writer = cache.beginWrite('x@main#nf4', { repo: 'x', revision: 'main', quant: DEFAULT_QUANT });
    await writer.put({ kind: 'dense', name: 't', dtype: 'F16', shape: [4], data: new Uint8Array(8).fill(3) });
    cache.close(); // the tab closed before commit
    const reopened = await ModelCache.open(name);
    const db = await openDB(name, CACHE_SCHEMA_VERSION);
    expect(await db.count('blobs')).toBe(0);
    expect(await reopened.list()).toEqual([]);
    db.close();
    reopened.close();
  });

  it('a corrupted blob fails its checksum on read', async () => {
    const name = `cache-test-${++dbCount}`;
    const cache = await ModelCache.open(name);
    await loadModel({ files: hubFiles(), quant: DEFAULT_QUANT, cache, cacheId });
    const db = await openDB(name, CACHE_SCHEMA_VERSION);
    const keys = (await db.getAllKeys('blobs')) as string[];
    const victim = keys.find((k) => k.includes('/packed/'))!;
    const bytes = (await db.get('blobs', victim)) as Uint8Array;
    bytes[0] ^= 0xff;
    await db.put('blobs', bytes, victim);
    db.close();
    await expect(cache.read(cacheKey(REPO, hub.commit(REPO)!, DEFAULT_QUANT), () => {})).rejects.toThrow(/fails its checksum/);
    cache.close();
  });

  it('a quota shortfall is reported before any tensor data is downloaded', async () => {
    const cache = await freshCache();
    const storage: StorageApi = { estimate: async () => ({ usage: 9_990_000, quota: 10_000_000 }) };
    const err = await loadModel({ files: hubFiles(), quant: DEFAULT_QUANT, cache, cacheId, storage }).catch((e) => e);
    expect(err).toBeInstanceOf(QuotaError);
    expect(err.message).toMatch(/Caching test-org\/cached-phi@main needs .* of browser storage but only 10.0 KB is free/);
    expect(await cache.list()).toEqual([]);
    // Only config, index and headers were fetched: fewer bytes than the model's data.
    const dataRequests = hub.requests.filter((r) => r.path.endsWith('.safetensors') && r.range && !r.range.startsWith('bytes=0-'));
    expect(dataRequests).toEqual([]);
    cache.close();
  });
});
