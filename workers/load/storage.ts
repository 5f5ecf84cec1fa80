/**
 * Browser storage for the model cache: usage and quota (`navigator.storage.estimate()`),
 * persistence (`persist()`), and a check that a model fits before it is downloaded.
 */

export interface StorageStatus {
  usage: number;
  quota: number;
  /** Free bytes the origin may still use. */
  available: number;
  persisted: boolean;
}

/** The parts of `navigator.storage` we use (absent in Node, present in pages and workers). */
export interface StorageApi {
  estimate(): Promise<{ usage?: number; quota?: number }>;
  persisted?(): Promise<boolean>;
  persist?(): Promise<boolean>;
}

export function browserStorage(): StorageApi | null {
  const nav = (globalThis as { navigator?: { storage?: StorageApi } }).navigator;
  return nav?.storage ?? null;
}

export class QuotaError extends Error {
  constructor(
    readonly needed: number,
    readonly available: number,
    what: string,
  ) {
    super(
      // What to do about it is the error's hint (workers/errors.ts), naming what the page offers.
      `${what} needs ${formatBytes(needed)} of browser storage but only ${formatBytes(available)} is free for this site.`,
    );
    this.name = 'QuotaError';
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export async function storageStatus(api: StorageApi | null = browserStorage()): Promise<StorageStatus> {
  if (!api) return { usage: 0, quota: 0, available: 0, persisted: false };
  const { usage = 0, quota = 0 } = await api.estimate();
  const persisted = (await api.persisted?.()) ?? false;
  return { usage, quota, available: Math.max(0, quota - usage), persisted };
}

/** Ask the browser not to evict the cache under storage pressure; true when granted. */
export async function requestPersistence(api: StorageApi | null = browserStorage()): Promise<boolean> {
  return (await api?.persist?.()) ?? false;
}

/** Headroom kept free beyond the model itself (IndexedDB overhead, other data of the site). */
const HEADROOM = 1.05;

/** Throws QuotaError when `bytes` would not fit; a missing storage API is not an error (no estimate to go by). */
export async function ensureQuota(bytes: number, what: string, api: StorageApi | null = browserStorage()): Promise<StorageStatus> {
  const status = await storageStatus(api);
  if (api && bytes * HEADROOM > status.available) throw new QuotaError(Math.ceil(bytes * HEADROOM), status.available, what);
  return status;
}

/**
 * Asks for persistent storage when something worth keeping is first written (a cached model,
 * a run), and says what the answer means; null when there is nothing to say (no storage API,
 * or persistence already in place). The browser decides (Chrome grants it to engaged or
 * installed sites without a prompt, Firefox asks the user).
 */
export async function persistenceNotice(what: string, api: StorageApi | null = browserStorage()): Promise<string | null> {
  if (!api?.persist) return null;
  try {
    if (await api.persisted?.()) return null;
    return (await api.persist())
      ? `Persistent storage granted: the browser will not evict ${what} when disk space runs low.`
      : `Persistent storage not granted: the browser may evict ${what} when disk space runs low (it would be downloaded or trained again).`;
  } catch {
    return null;
  }
}
