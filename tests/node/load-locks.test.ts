import { describe, expect, it } from 'vitest';
import { acquireLock, withLock } from '../../workers/load/locks';

/** A LockManager as the browser's: exclusive locks by name, granted in request order. */
function fakeLockManager() {
  const queues = new Map<string, Promise<void>>();
  let requests = 0;
  return {
    get requests() {
      return requests;
    },
    request(name: string, callback: () => Promise<void>): Promise<void> {
      requests++;
      const before = queues.get(name) ?? Promise.resolve();
      const run = before.then(() => callback());
      queues.set(name, run.catch(() => {}));
      return run;
    },
  };
}

async function order(manager: ReturnType<typeof fakeLockManager> | null): Promise<string[]> {
  const log: string[] = [];
  const holder = (id: string, ms: number) => withLock('model', async () => {
    log.push(`${id} in`);
    await new Promise((r) => setTimeout(r, ms));
    log.push(`${id} out`);
  }, manager);
  await Promise.all([holder('a', 20), holder('b', 1), withLock('other', async () => void log.push('other'), manager)]);
  return log;
}

describe('one holder at a time', () => {
  it('with Web Locks: holders of a name take turns, other names do not wait', async () => {
    const manager = fakeLockManager();
    expect(await order(manager)).toEqual(['a in', 'other', 'a out', 'b in', 'b out']);
    expect(manager.requests).toBe(3);
  });

  it('without Web Locks (Node, old browsers): the same within this realm', async () => {
    expect(await order(null)).toEqual(['a in', 'other', 'a out', 'b in', 'b out']);
  });

  it('a released lock passes on; releasing twice is harmless', async () => {
    const release = await acquireLock('x', null);
    let got = false;
    const next = acquireLock('x', null).then((r) => ((got = true), r));
    await new Promise((r) => setTimeout(r, 5));
    expect(got).toBe(false);
    release();
    release();
    (await next)();
    expect(got).toBe(true);
  });
});
