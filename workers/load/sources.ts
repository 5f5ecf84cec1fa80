/**
 * Where a model's files come from: a hub repo at a revision, a dropped folder of `File`s, or
 * a folder the studio serves (the demo). Each gives the same three things: small text files
 * (config.json, the shard index), and range-readable safetensors shards.
 */
import { BlobFile, type RangeFile } from './byte-source';
import { HubClient, HttpFile } from './hub';
import { archFromConfig, ConfigError, type ArchShape } from './arch';
import { ModelWeights, parseShardIndex } from './weights';
import type { HfConfig } from './presets';

export interface ModelFileSet {
  /** For messages and cache keys: `microsoft/phi-1_5@main`, `local: my-model`. */
  readonly label: string;
  /** A small file's text, `null` when it does not exist. */
  text(path: string, signal?: AbortSignal): Promise<string | null>;
  /** A shard, `null` when it certainly does not exist (a hub file is checked when read). */
  file(path: string): RangeFile | null;
  /** Shard names when there is no index (a single `model.safetensors` on the hub). */
  shardsWithoutIndex(): string[];
  /** A hub repo: the commit its revision points at now (asks the hub). */
  resolveCommit?(signal?: AbortSignal): Promise<string>;
  /** A hub repo: the same files pinned to one commit, so no file comes from a later upload. */
  atCommit?(commit: string): ModelFileSet;
}

export function hubFileSet(client: HubClient, repo: string, revision = 'main', label = `${repo}@${revision}`): ModelFileSet {
  return {
    label,
    text: (path, signal) => client.text(repo, revision, path, signal),
    file: (path): HttpFile => client.file(repo, revision, path),
    shardsWithoutIndex: () => ['model.safetensors'],
    resolveCommit: (signal) => client.resolveCommit(repo, revision, signal),
    atCommit: (commit) => hubFileSet(client, repo, commit, label),
  };
}

/** A dropped folder: names are matched without their folder part. */
export function localFileSet(files: readonly File[], label = 'local files'): ModelFileSet {
  const byName = new Map<string, File>();
  for (const f of files) byName.set(f.name.split('/').pop()!, f);
  return {
    label,
    async text(path) {
      const f = byName.get(path);
      return f ? await f.text() : null;
    },
    file: (path) => {
      const f = byName.get(path);
      return f ? new BlobFile(f, path) : null;
    },
    shardsWithoutIndex: () => [...byName.keys()].filter((n) => n.endsWith('.safetensors')).sort(),
  };
}

/** A folder served over plain HTTP (the built-in demo at `/demo/model/`): Range requests, no hub layout. */
export function urlFileSet(client: HubClient, baseUrl: string): ModelFileSet {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return {
    label: base,
    async text(path, signal) {
      const res = await client.request(path, base + path, {}, signal, true);
      if (!res) return null;
      // A dev or preview server answers a missing file with its index.html (200): that is "absent".
      if ((res.headers.get('Content-Type') ?? '').includes('text/html') && !path.endsWith('.html')) {
        await res.body?.cancel();
        return null;
      }
      return await res.text();
    },
    file: (path) => new HttpFile(path, base + path, client),
    shardsWithoutIndex: () => ['model.safetensors'],
  };
}

export interface OpenedModel {
  config: HfConfig;
  arch: ArchShape;
  weights: ModelWeights;
}

export async function readConfig(files: ModelFileSet, signal?: AbortSignal): Promise<{ config: HfConfig; arch: ArchShape }> {
  const text = await files.text('config.json', signal);
  if (text === null) throw new ConfigError('config.json', 'config.json', `is missing from ${files.label}`);
  let config: HfConfig;
  try {
    config = JSON.parse(text) as HfConfig;
  } catch (err) {
    throw new ConfigError('config.json', '(file)', `is not valid JSON: ${(err as Error).message}`);
  }
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw new ConfigError('config.json', '(file)', 'is not a JSON object');
  return { config, arch: archFromConfig(config, 'config.json') };
}

/** Reads config.json, the shard index (if any) and every shard's header: a few KB per file. */
export async function openModel(files: ModelFileSet, signal?: AbortSignal): Promise<OpenedModel> {
  const { config, arch } = await readConfig(files, signal);
  const indexText = await files.text('model.safetensors.index.json', signal);
  const index = indexText === null ? null : parseShardIndex(indexText);
  const shardNames = index ? [] : files.shardsWithoutIndex();
  if (!index && shardNames.length === 0) throw new ConfigError('model.safetensors', '(file)', `no .safetensors weights in ${files.label}`);
  const weights = await ModelWeights.open(shardNames, (name) => files.file(name), index, signal);
  return { config, arch, weights };
}
