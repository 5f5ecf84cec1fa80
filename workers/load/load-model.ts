/**
 * Load a model for training: from the cache when it holds this repo, revision and
 * quantization (no network at all), otherwise read the headers, check the storage quota,
 * stream and quantize every tensor, and write the cache as it goes (committed only when the
 * whole model is in; an error leaves nothing behind).
 */
import { archFromConfig, type ArchShape } from './arch';
import { ModelCache, cacheKey, type CacheWriter } from './cache';
import { quantizeOnLoad, cpuTarget, type LoadStats, type LoadedTensor } from './quantize-on-load';
import { openModel, type ModelFileSet } from './sources';
import { ensureQuota, type StorageApi } from './storage';
import { storedTensorBytes } from './sizes';
import type { ProgressTracker } from './progress';
import type { HfConfig, QuantSettings } from './presets';

export interface LoadModelOptions {
  files: ModelFileSet;
  quant: QuantSettings;
  /** Cache identity; without it (e.g. dropped files) nothing is cached. */
  cacheId?: { repo: string; revision: string } | null;
  cache?: ModelCache | null;
  /** Storage API for the quota check (navigator.storage in the browser). */
  storage?: StorageApi | null;
  progress?: ProgressTracker;
  chunkBytes?: number;
  signal?: AbortSignal;
  /** Each tensor as soon as it is ready (to upload it and drop the CPU copy). */
  onTensor?: (t: LoadedTensor) => void | Promise<void>;
  /** Keep every tensor in the returned map (default true). */
  keep?: boolean;
}

export interface LoadedModel {
  config: HfConfig;
  arch: ArchShape;
  tensors: Map<string, LoadedTensor>;
  fromCache: boolean;
  /** Bytes of the quantized model (what the cache holds). */
  storedBytes: number;
  stats: LoadStats | null;
}

export async function loadModel(options: LoadModelOptions): Promise<LoadedModel> {
  const { files, quant, cache, cacheId, signal } = options;
  const keep = options.keep ?? true;
  const tensors = new Map<string, LoadedTensor>();
  const deliver = async (t: LoadedTensor) => {
    if (keep) tensors.set(t.name, t);
    await options.onTensor?.(t);
  };

  const key = cache && cacheId ? cacheKey(cacheId.repo, cacheId.revision, quant) : null;
  if (cache && key && (await cache.manifest(key))) {
    const manifest = await cache.read(key, deliver);
    return { config: manifest.config, arch: archFromConfig(manifest.config), tensors, fromCache: true, storedBytes: manifest.bytes, stats: null };
  }

  const { config, arch, weights } = await openModel(files, signal);
  let storedBytes = 0;
  for (const name of weights.names()) {
    const t = weights.info(name);
    storedBytes += storedTensorBytes(arch, name, t.dtype, t.shape, quant);
  }
  if (options.progress) for (const shard of weights.shards) options.progress.expect(shard.file.name, [...shard.tensors.values()].reduce((n, t) => n + t.end - t.begin, 0));

  let writer: CacheWriter | null = null;
  if (cache && key && cacheId) {
    await ensureQuota(storedBytes, `Caching ${files.label}`, options.storage ?? null);
    writer = cache.beginWrite(key, { ...cacheId, quant });
  }
  try {
    const stats = await quantizeOnLoad(weights, {
      arch,
      quant,
      target: cpuTarget,
      chunkBytes: options.chunkBytes,
      signal,
      onTensor: async (_name, t) => {
        await writer?.put(t);
        await deliver(t);
      },
    });
    if (writer) storedBytes = (await writer.commit(config)).bytes;
    return { config, arch, tensors, fromCache: false, storedBytes, stats };
  } catch (err) {
    await writer?.abort();
    throw err;
  }
}
