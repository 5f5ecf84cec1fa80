import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient } from '../../workers/load/hub';
import { hubFileSet, localFileSet, openModel } from '../../workers/load/sources';
import { parseShardIndex } from '../../workers/load/weights';
import { openSafetensorsWeights } from '../../workers/model/weights';
import { shardNameProblem } from '../../workers/formats/shard-name';

// Index entries that would leave the repository or the revision being loaded.
const HOSTILE = [
  '../other-org/secret/resolve/main/model.safetensors',
  '../../model.safetensors',
  'sub/model.safetensors',
  'sub\\model.safetensors',
  '/etc/model.safetensors',
  'C:model.safetensors',
  'https://evil.example/model.safetensors',
  '..%2F..%2Fother%2Fmodel.safetensors',
  '%2e%2e%2fmodel.safetensors',
  '..safetensors',
  '.safetensors',
  ' model.safetensors',
  'model\u0000.safetensors',
  '',
];

const hub = new MockHub();
const config = tinyPhiConfig();
const files = tinyModelFiles(config, tinyModelTensors(config, 'F16'), 2);
const index = JSON.parse(files.get('model.safetensors.index.json') as string) as { weight_map: Record<string, string> };
const [firstTensor] = Object.keys(index.weight_map);

beforeAll(() => hub.start());
afterAll(() => hub.stop());

function indexWith(shard: unknown): string {
  return JSON.stringify({ weight_map: { ...index.weight_map, [firstTensor]: shard } });
}

describe('shard names in model.safetensors.index.json', () => {
  it('plain shard file names are accepted', () => {
    for (const name of ['model-00001-of-00002.safetensors', 'model.safetensors', 'pytorch_model-1.safetensors']) expect(shardNameProblem(name)).toBeNull();
  });

  it.each(HOSTILE)('refuses %j naming the index file and the entry', (shard) => {
    const start = performance.now();
    expect(shardNameProblem(shard)).not.toBeNull();
    expect(() => parseShardIndex(indexWith(shard))).toThrow(`model.safetensors.index.json: weight_map entry "${firstTensor}" → ${JSON.stringify(shard)} is not a plain file name of this repository`);
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it('a hub repo whose index points into another repo is refused before any shard is requested', async () => {
    const repo = 'test-org/traversal';
    for (const [path, data] of files) hub.addFile(repo, path, data);
    hub.addFile(repo, 'model.safetensors.index.json', indexWith('../../other-org/private/resolve/main/model.safetensors'));
    hub.clearLog();
    const client = new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1 });
    await expect(openModel(hubFileSet(client, repo))).rejects.toThrow(/model\.safetensors\.index\.json: weight_map entry ".*" → "\.\.\/\.\.\/other-org.*" is not a plain file name of this repository \(it is a path/);
    expect(hub.requests.map((r) => r.path).filter((p) => p.endsWith('.safetensors'))).toEqual([]);
    // Only config.json and the index itself were read (each through the hub's CDN redirect).
    expect(new Set(hub.requests.map((r) => r.path.split('/').pop()))).toEqual(new Set(['config.json', 'model.safetensors.index.json']));
  });

  it('a dropped folder refuses the same index', async () => {
    const dropped = [...files].map(([name, data]) => new File([name === 'model.safetensors.index.json' ? indexWith('../x.safetensors') : (data as BlobPart)], name));
    await expect(openModel(localFileSet(dropped))).rejects.toThrow(/model\.safetensors\.index\.json: weight_map entry .* "\.\.\/x\.safetensors" is not a plain file name/);
  });

  it('a model folder read by the golden and train checks refuses it too', async () => {
    const read = async (path: string) => {
      if (path === 'm/model.safetensors.index.json') return new TextEncoder().encode(indexWith('%2F..%2Fx.safetensors'));
      const data = files.get(path.slice(2));
      return data === undefined ? null : typeof data === 'string' ? new TextEncoder().encode(data) : data;
    };
    await expect(openSafetensorsWeights('m', read)).rejects.toThrow(/^m\/model\.safetensors\.index\.json: weight_map entry ".*" → "%2F\.\.%2Fx\.safetensors" is not a plain file name of this repository \(it contains/);
  });

  it('hub paths and revisions cannot step out of the repo', () => {
    const client = new HubClient({ endpoint: 'https://hub.example' });
    expect(() => client.resolveUrl('org/repo', '..', 'model.safetensors')).toThrow('org/repo: revision ".." is not a plain path inside the repository');
    expect(() => client.resolveUrl('org/repo', 'main', '../../other/repo/resolve/main/x.safetensors')).toThrow(/file ".*" is not a plain path/);
    expect(() => client.revisionUrl('org/repo', '../..')).toThrow(/revision/);
    expect(client.resolveUrl('org/repo', 'refs/pr/1', 'model.safetensors')).toBe('https://hub.example/org/repo/resolve/refs%2Fpr%2F1/model.safetensors');
  });
});
