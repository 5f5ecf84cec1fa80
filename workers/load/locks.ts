/**
 * One holder at a time for a named resource, across the tabs of the origin when the browser
 * has Web Locks (`navigator.locks`), else within this realm only (Node tests, old browsers:
 * there a second tab is protected by the cache's write-ahead records, not by a lock).
 */

interface LockManagerLike {
  request(name: string, callback: () => Promise<void>): Promise<void>;
}

/** Releases the lock; calling it twice is harmless. */
export type Release = () => void;

const local = new Map<string, Promise<void>>();

function webLocks(): LockManagerLike | null {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  return locks && typeof locks.request === 'function' ? locks : null;
}

/** Waits for the lock `name`, then holds it until the returned function is called. */
export async function acquireLock(name: string, manager: LockManagerLike | null = webLocks()): Promise<Release> {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  if (manager) {
    await new Promise<void>((granted, refused) => {
      manager.request(name, () => {
        granted();
        return held;
      }).catch(refused);
    });
    return release;
  }
  const before = local.get(name) ?? Promise.resolve();
  const mine = before.then(() => held);
  local.set(name, mine);
  void mine.then(() => {
    if (local.get(name) === mine) local.delete(name);
  });
  await before;
  return release;
}

/** Runs `work` holding the lock `name`. */
export async function withLock<T>(name: string, work: () => Promise<T>, manager?: LockManagerLike | null): Promise<T> {
  const release = await acquireLock(name, manager);
  try {
    return await work();
  } finally {
    release();
  }
}

export const writeLockName = (key: string) => `qlora-studio-cache-write:${key}`;
export const SWEEP_LOCK = 'qlora-studio-cache-sweep';
