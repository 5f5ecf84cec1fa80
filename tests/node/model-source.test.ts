/**
 * A run records its base model at the commit it was loaded at: after the hub repo moves on,
 * resuming loads the old commit (from the cache, without a download), not the new one.
 */
import 'fake-indexeddb/auto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient } from '../../workers/load/hub';
import { loadModel } from '../../workers/load/load-model';
import { ModelCache } from '../../workers/load/cache';
import { DEFAULT_QUANT, PRESETS } from '../../workers/load/presets';
import { filesFor, pinnedSource } from '../../workers/load/model-source';
import { writeSafetensors } from '../../workers/formats/safetensors';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const hub = new MockHub();
const config = tinyPhiConfig();
const client = () => new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1 });

beforeAll(() => hub.start());
afterAll(() => hub.stop());

describe('model sources', () => {
  it('a pinned hub source resumes at its commit after the repo moved on, from the cache', async () => {
    const repo = 'test-org/pinned';
    const first = hub.upload(repo, tinyModelFiles(config, tinyModelTensors(config, 'F16', 31)));
    const cache = await ModelCache.open('model-source-test');
    const start = filesFor({ kind: 'hub', id: repo }, client(), 'http://studio.test');
    const loaded = await loadModel({ files: start.files, quant: DEFAULT_QUANT, cache, cacheId: start.cacheId });
    const recorded = pinnedSource({ kind: 'hub', id: repo }, start.baseModel, loaded.identity!.commit);
    expect(recorded).toEqual({ kind: 'hub', id: repo, revision: first });

    hub.upload(repo, [['model.safetensors', writeSafetensors(tinyModelTensors(config, 'F16', 32), { format: 'pt' })]]);
    hub.clearLog();
    const again = filesFor(recorded, client(), 'http://studio.test');
    const resumed = await loadModel({ files: again.files, quant: DEFAULT_QUANT, cache, cacheId: again.cacheId });
    expect(resumed.identity!.commit).toBe(first);
    expect(resumed.fromCache).toBe(true);
    // A full commit id needs no question to the hub, and the copy needs no download.
    expect(hub.requests).toEqual([]);
    const fc1 = 'model.layers.0.mlp.fc1.weight';
    const [a, b] = [loaded.tensors.get(fc1)!, resumed.tensors.get(fc1)!];
    expect(a.kind === 'nf4' && b.kind === 'nf4' && Buffer.compare(a.quant.packed, b.quant.packed) === 0).toBe(true);
  });

  it('the built-in demo is cached under the hash of its files, so a changed demo is a new copy', () => {
    const demo = PRESETS.demo.model;
    expect(demo.kind).toBe('url');
    const hash = createHash('sha256');
    for (const f of ['config.json', 'model.safetensors']) hash.update(readFileSync(`public/demo/model/${f}`));
    // After regenerating the demo model, set this revision in workers/load/presets.ts.
    expect(demo.kind === 'url' && demo.revision).toBe(`sha256-${hash.digest('hex').slice(0, 12)}`);
  });

  it('a hub preset pins its revision; the demo and dropped files have no commit to pin', () => {
    const phi = PRESETS['phi-1_5'].model;
    expect(phi.kind).toBe('hub');
    const pinned = pinnedSource({ kind: 'preset', name: 'phi-1_5' }, 'microsoft/phi-1_5', 'a'.repeat(40));
    expect(pinned).toEqual({ kind: 'preset', name: 'phi-1_5', revision: 'a'.repeat(40) });
    expect(filesFor(pinned, client(), 'http://studio.test').cacheId).toEqual({ repo: phi.kind === 'hub' ? phi.repo : '', revision: 'a'.repeat(40) });
    expect(pinnedSource({ kind: 'preset', name: 'demo' }, 'public/demo/model', null)).toEqual({ kind: 'preset', name: 'demo' });
    expect(filesFor({ kind: 'preset', name: 'demo' }, client(), 'http://studio.test').cacheId).toEqual({ repo: 'studio/demo', revision: PRESETS.demo.model.kind === 'url' ? PRESETS.demo.model.revision : '' });
    expect(pinnedSource({ kind: 'local', files: [] }, 'my-model', null)).toEqual({ kind: 'hub', id: 'my-model' });
  });
});
