/**
 * The cache is keyed by the commit the hub reports for a revision: the same commit loads with
 * no model request, a new commit downloads anew (the old copy stays listed, with its commit),
 * and without network the revision's alias still finds the copy. Files are read at the
 * resolved commit, so an upload during a download cannot mix two versions.
 */
import 'fake-indexeddb/auto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient, HubError } from '../../workers/load/hub';
import { hubFileSet } from '../../workers/load/sources';
import { loadModel, openLoad } from '../../workers/load/load-model';
import { ModelCache, cacheKey } from '../../workers/load/cache';
import { DEFAULT_QUANT } from '../../workers/load/presets';
import { writeSafetensors } from '../../workers/formats/safetensors';

const hub = new MockHub();
const config = tinyPhiConfig();
const v1 = tinyModelTensors(config, 'F16', 21);
const v2 = tinyModelTensors(config, 'F16', 22);
let dbCount = 0;
const freshCache = () => ModelCache.open(`commit-test-${++dbCount}`);
const client = () => new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1 });
const modelRequests = () => hub.requests.filter((r) => !r.path.startsWith('/api/'));

beforeAll(() => hub.start());
afterAll(() => hub.stop());
beforeEach(() => {
  hub.offline = false;
  hub.clearLog();
});

describe('the hub speaks commits', () => {
  it('the revision endpoint and resolve responses name the same commit', async () => {
    const repo = 'test-org/speaks';
    const sha = hub.upload(repo, tinyModelFiles(config, v1));
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    const res = await fetch(`${hub.endpoint}/api/models/${repo}/revision/main`);
    expect(await res.json()).toMatchObject({ id: repo, sha, siblings: [{ rfilename: 'config.json' }, { rfilename: 'model.safetensors' }] });
    const resolved = await fetch(`${hub.endpoint}/${repo}/resolve/main/config.json`, { redirect: 'manual' });
    expect(resolved.headers.get('x-repo-commit')).toBe(sha);
    expect(await client().resolveCommit(repo, 'main')).toBe(sha);
    // A full commit id needs no question.
    hub.clearLog();
    expect(await client().resolveCommit(repo, sha)).toBe(sha);
    expect(hub.requests).toEqual([]);
    await expect(client().resolveCommit(repo, 'no-such-branch')).rejects.toThrow(/test-org\/speaks@no-such-branch: not found on the hub \(HTTP 404\)/);
  });
});

describe('cache keyed by commit', () => {
  it('same commit: no model request; new commit: a new download, the old copy stays listed with its commit', async () => {
    const repo = 'test-org/moving';
    const first = hub.upload(repo, tinyModelFiles(config, v1));
    const cache = await freshCache();
    const cacheId = { repo, revision: 'main' };
    const a = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId });
    expect(a.fromCache).toBe(false);
    expect(a.identity).toEqual({ repo, revision: 'main', commit: first });
    // Every file came from the resolved commit, not from whatever main is during the download.
    expect(modelRequests().filter((r) => r.path.includes('/resolve/')).every((r) => r.path.startsWith(`/${repo}/resolve/${first}/`))).toBe(true);

    hub.clearLog();
    const again = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId });
    expect(again.fromCache).toBe(true);
    expect(modelRequests()).toEqual([]);
    expect(hub.requests.map((r) => r.path)).toEqual([`/api/models/${repo}/revision/main`]);

    const second = hub.upload(repo, [['model.safetensors', writeSafetensors(v2, { format: 'pt' })]]);
    hub.clearLog();
    const b = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId });
    expect(b.fromCache).toBe(false);
    expect(b.identity!.commit).toBe(second);
    expect(modelRequests().some((r) => r.path.endsWith('.safetensors'))).toBe(true);
    const fc1 = 'model.layers.0.mlp.fc1.weight';
    const pa = a.tensors.get(fc1)!;
    const pb = b.tensors.get(fc1)!;
    expect(pa.kind === 'nf4' && pb.kind === 'nf4' && Buffer.compare(pa.quant.packed, pb.quant.packed) !== 0).toBe(true);

    const listed = (await cache.list()).sort((x, y) => x.savedAt - y.savedAt);
    expect(listed.map((m) => [m.key, m.revision, m.commit])).toEqual([
      [cacheKey(repo, first, DEFAULT_QUANT), 'main', first],
      [cacheKey(repo, second, DEFAULT_QUANT), 'main', second],
    ]);
    expect(await cache.alias(repo, 'main')).toBe(second);
    cache.close();
  });

  it('offline, the revision alias finds the cached copy; with no copy the error says both things', async () => {
    const repo = 'test-org/offline';
    const sha = hub.upload(repo, tinyModelFiles(config, v1));
    const cache = await freshCache();
    const cacheId = { repo, revision: 'main' };
    const online = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId });
    hub.offline = true;
    hub.clearLog();
    const offline = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId });
    expect(offline.fromCache).toBe(true);
    expect(offline.identity).toEqual({ repo, revision: 'main', commit: sha });
    expect([...offline.tensors.keys()]).toEqual([...online.tensors.keys()]);
    // It asked once (and once more on retry), found no hub, and read nothing else.
    expect(hub.requests.every((r) => r.path === `/api/models/${repo}/revision/main`)).toBe(true);

    const err = await loadModel({ files: hubFileSet(client(), repo, 'dev'), quant: DEFAULT_QUANT, cache, cacheId: { repo, revision: 'dev' } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/test-org\/offline@dev: network error .*; and this browser has no cached copy of test-org\/offline@dev/);
    cache.close();
  });

  it('a malformed repo id is the caller\'s error, not an unreachable hub to cover with a cached copy', async () => {
    const cache = await freshCache();
    const repo = 'test-org/../secrets';
    const err = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId: { repo, revision: 'main' } }).catch((e: Error) => e);
    expect((err as Error).message).toBe(`"${repo}" is not a hub repo id (owner/name)`);
    expect(hub.requests).toEqual([]);
    cache.close();
  });

  it('a definite answer from the hub (404) is an error, not a reason to use the cached copy', async () => {
    const repo = 'test-org/deleted-branch';
    hub.upload(repo, tinyModelFiles(config, v1));
    const cache = await freshCache();
    const cacheId = { repo, revision: 'main' };
    await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId });
    expect(await cache.alias(repo, 'main')).not.toBeNull();
    hub.deleteRef(repo, 'main');
    const err = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).status).toBe(404);
    cache.close();
  });

  it('an upload during a download does not mix versions: the files stay at the resolved commit', async () => {
    const repo = 'test-org/uploading';
    const first = hub.upload(repo, tinyModelFiles(config, v1));
    const reference = await loadModel({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT });
    const cache = await freshCache();
    const load = await openLoad({ files: hubFileSet(client(), repo), quant: DEFAULT_QUANT, cache, cacheId: { repo, revision: 'main' } });
    // Headers are read; now main moves on.
    hub.upload(repo, [['model.safetensors', writeSafetensors(v2, { format: 'pt' })]]);
    for (const name of load.weights.order()) {
      const t = await load.weights.readTensor(name);
      const r = reference.tensors.get(name)!;
      expect(t.kind === 'nf4' && r.kind === 'nf4' ? Buffer.compare(t.quant.packed, r.quant.packed) : t.kind === 'dense' && r.kind === 'dense' ? Buffer.compare(t.data, r.data) : 1, name).toBe(0);
    }
    await load.finish();
    expect((await cache.list()).map((m) => m.commit)).toEqual([first]);
    cache.close();
  });
});
