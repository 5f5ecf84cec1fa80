/**
 * Load a model: resolve the revision to the commit the hub reports (files are then read at that
 * commit), and take the cached copy of that commit when there is one (no model request at
 * all); otherwise read the headers, check the storage quota, and stream the tensors one by one
 * to whoever builds the model, quantizing and caching each on its way (the copy is committed
 * only when the whole model is in; an error leaves nothing behind). Without network, the
 * revision's alias finds the commit cached last.
 *
 * `openLoad` hands out a `StreamedSource` for `CausalLM.load` to pull from, in stored order;
 * `loadModel` drains one into CPU tensors (tests, callers without a GPU).
 */
import { archFromConfig, type ArchShape } from './arch';
import { CacheError, keyOf, type CacheIdentity, type CacheWriter, type ModelCache } from './cache';
import { HeldBytes } from './held';
import { isUnreachable } from './hub';
import type { LoadStats, LoadedTensor } from './quantize-on-load';
import { openModel, type ModelFileSet } from './sources';
import { ChecksumError, FileHasher, hashedFile } from './verify';
import { ensureQuota, persistenceNotice, type StorageApi } from './storage';
import { storedTensorBytes } from './sizes';
import { CachedSource, DownloadSource, type Quantizer, type StreamedSource } from './stream-source';
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
  /** Who quantizes linear weights for an engine that offers a GPU (default: the CPU reference). */
  quantizer?: Quantizer;
  /** After each tensor is read (progress). */
  onRead?: (name: string, index: number, count: number) => void;
  /** `loadModel`: each tensor as soon as it is ready. */
  onTensor?: (t: LoadedTensor) => void | Promise<void>;
  /** `loadModel`: keep every tensor in the returned map (default true). */
  keep?: boolean;
  /** What the user should hear: a resumed download, a file refused for its sha256 and fetched again, a corrupt cached copy removed. */
  onNotice?: (message: string) => void;
}

/**
 * Hub files read through a running sha256 each (checked against the hub's before the copy is
 * committed); other sources (dropped files, the demo folder) have no sha256 to check against.
 */
function hashing(files: ModelFileSet): { files: ModelFileSet; hashers: Map<string, FileHasher> | null } {
  if (!files.resolveCommit) return { files, hashers: null };
  const hashers = new Map<string, FileHasher>();
  return {
    hashers,
    files: {
      ...files,
      file(path) {
        const inner = files.file(path);
        if (!inner) return null;
        let hasher = hashers.get(path);
        if (!hasher) hashers.set(path, (hasher = new FileHasher(inner)));
        return hashedFile(inner, hasher);
      },
    },
  };
}

/** A load in progress: pull the tensors from `weights`, then `finish` (or `abort` on failure). */
export interface OpenedLoad {
  config: HfConfig;
  arch: ArchShape;
  fromCache: boolean;
  /** What the copy is (repo, revision, commit); null when nothing is cached. */
  identity: CacheIdentity | null;
  weights: StreamedSource;
  /** Model bytes held in CPU memory while loading (the measured peak is `held.peak`). */
  held: HeldBytes;
  /** Counts of a download so far (null for a cache hit). */
  stats(): LoadStats | null;
  /** Caches what the model did not read, commits the copy; returns the bytes it holds. */
  finish(): Promise<{ storedBytes: number }>;
  /** Stops: a download keeps what finished (the next load of the same model resumes from it). */
  abort(): Promise<void>;
}

export interface LoadedModel {
  config: HfConfig;
  arch: ArchShape;
  tensors: Map<string, LoadedTensor>;
  fromCache: boolean;
  identity: CacheIdentity | null;
  /** Bytes of the quantized model (what the cache holds). */
  storedBytes: number;
  stats: LoadStats | null;
  /** The most model bytes the loader itself held at once. */
  peakHeldBytes: number;
}

/** The copy's identity: a hub revision resolved to its commit now, or the alias when the hub is out of reach. */
async function identify(options: LoadModelOptions): Promise<{ identity: CacheIdentity | null; files: ModelFileSet; offline: boolean }> {
  const { files, cacheId, cache, signal } = options;
  if (!cacheId || !files.resolveCommit) return { identity: cacheId ? { ...cacheId, commit: null } : null, files, offline: false };
  try {
    const commit = await files.resolveCommit(signal);
    return { identity: { ...cacheId, commit }, files: files.atCommit?.(commit) ?? files, offline: false };
  } catch (err) {
    if (!isUnreachable(err) || !cache) throw err;
    const commit = await cache.alias(cacheId.repo, cacheId.revision);
    if (!commit) throw new Error(`${(err as Error).message}; and this browser has no cached copy of ${cacheId.repo}@${cacheId.revision} to use instead`);
    return { identity: { ...cacheId, commit }, files, offline: true };
  }
}

export async function openLoad(options: LoadModelOptions): Promise<OpenedLoad> {
  const { cache } = options;
  const held = new HeldBytes();
  const { identity, files, offline } = await identify(options);
  const key = cache && identity ? keyOf(identity, options.quant) : null;
  const manifest = cache && key ? await cache.manifest(key) : undefined;
  if (cache && manifest) return cacheHit(options, cache, manifest, identity, files, held, offline);
  if (offline) throw new Error(`${files.label}: the hub cannot be reached, and the copy of commit ${identity!.commit} this browser had is gone`);
  return download(options, identity, key, files, held);
}

function cacheHit(
  options: LoadModelOptions, cache: ModelCache, manifest: NonNullable<Awaited<ReturnType<ModelCache['manifest']>>>,
  identity: CacheIdentity | null, files: ModelFileSet, held: HeldBytes, offline: boolean,
): Promise<OpenedLoad> {
  return (async () => {
    // The revision now points here: an offline visit should find this copy.
    if (identity?.commit && !offline && (await cache.alias(identity.repo, identity.revision)) !== identity.commit) await cache.setAlias(identity.repo, identity.revision, identity.commit);
    const weights = new CachedSource(cache, manifest, files.label, held, options.onRead);
    weights.onCorrupt = options.onNotice;
    return {
      config: manifest.config,
      arch: archFromConfig(manifest.config),
      fromCache: true,
      identity, // the manifest was found under this identity's key
      weights,
      held,
      stats: () => null,
      finish: async () => (weights.release(), { storedBytes: manifest.bytes }),
      abort: async () => weights.release(),
    };
  })();
}

async function download(options: LoadModelOptions, identity: CacheIdentity | null, key: string | null, plainFiles: ModelFileSet, held: HeldBytes): Promise<OpenedLoad> {
  const { quant, cache, signal } = options;
  const { files, hashers } = cache && key ? hashing(plainFiles) : { files: plainFiles, hashers: null };
  const { config, arch, weights: modelWeights } = await openModel(files, signal);
  let storedBytes = 0;
  for (const name of modelWeights.names()) {
    const t = modelWeights.info(name);
    storedBytes += storedTensorBytes(arch, name, t.dtype, t.shape, quant);
  }
  if (options.progress) for (const shard of modelWeights.shards) options.progress.expect(shard.file.name, [...shard.tensors.values()].reduce((n, t) => n + t.end - t.begin, 0));

  let writer: CacheWriter | null = null;
  if (cache && key && identity) {
    await ensureQuota(storedBytes, `Caching ${files.label}`, options.storage ?? null);
    // One writer per model across tabs: this waits while another tab downloads it.
    writer = await cache.openWrite(key, { ...identity, quant }, held);
    if (!writer) {
      // That tab finished it meanwhile: load its copy.
      options.onNotice?.(`${files.label}: another tab finished downloading this model; loading its copy`);
      return cacheHit(options, cache, (await cache.manifest(key))!, identity, plainFiles, held, false);
    }
    if (writer.resumedTensors > 0) options.onNotice?.(`${files.label}: resuming the download: ${writer.resumedTensors} tensors are already in this browser`);
    else {
      const persisted = await persistenceNotice('cached models and checkpoints', options.storage ?? null);
      if (persisted) options.onNotice?.(persisted);
    }
  }
  let source: DownloadSource;
  try {
    source = await DownloadSource.open({
      weights: modelWeights, arch, quant, label: files.label, quantizer: options.quantizer ?? 'cpu', writer, held,
      chunkBytes: options.chunkBytes, signal, onTensor: options.onRead, cache, hashers, onNotice: options.onNotice,
    });
  } catch (err) {
    await writer?.suspend();
    throw err;
  }
  return {
    config,
    arch,
    fromCache: false,
    identity,
    weights: source,
    held,
    stats: () => source.stats,
    async finish() {
      source.release();
      if (!writer) return { storedBytes };
      // The copy holds every tensor of the files, also those this model did not ask for.
      for (const name of source.unread()) {
        if (writer.has(name)) continue;
        await source.readTensor(name);
        source.release();
      }
      await source.verifyRemaining();
      return { storedBytes: (await writer.commit(config)).bytes };
    },
    async abort() {
      source.release();
      await writer?.suspend();
    },
  };
}

/**
 * Whether a failed load is worth one more attempt at once: a file refused for its sha256 (its
 * tensors were dropped, the next attempt fetches it again) or a cached copy that failed its
 * checks (removed, the next attempt downloads it).
 */
export function refetchable(err: unknown): boolean {
  return err instanceof ChecksumError || err instanceof CacheError;
}

/** Every tensor of the model in CPU memory (NF4 for the linear weights), cached on the way; a refused file or a corrupt copy is fetched again once. */
export async function loadModel(options: LoadModelOptions): Promise<LoadedModel> {
  try {
    return await loadModelOnce(options);
  } catch (err) {
    if (!refetchable(err) || !options.cache) throw err;
    return loadModelOnce(options);
  }
}

async function loadModelOnce(options: LoadModelOptions): Promise<LoadedModel> {
  const keep = options.keep ?? true;
  const tensors = new Map<string, LoadedTensor>();
  const load = await openLoad(options);
  try {
    for (const name of load.weights.order()) {
      const t = await load.weights.readTensor(name);
      if (keep) tensors.set(t.name, t);
      await options.onTensor?.(t);
    }
    const { storedBytes } = await load.finish();
    return { config: load.config, arch: load.arch, tensors, fromCache: load.fromCache, identity: load.identity, storedBytes, stats: load.stats(), peakHeldBytes: load.held.peak };
  } catch (err) {
    await load.abort();
    throw err;
  }
}
