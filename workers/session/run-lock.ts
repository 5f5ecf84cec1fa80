/**
 * One tab at a time per run: a tab that trains (or resumes) a run holds the Web Lock
 * `qlora-studio-run:<runId>` for as long as the run is open in it, taken with `ifAvailable` so
 * a second tab is told at once that the run is open elsewhere instead of waiting or racing it.
 * Tabs tell each other on a BroadcastChannel when a run opens or closes, so a second tab's
 * resume banner follows. Without Web Locks (Node tests) the locks are this realm's own.
 */
import type { Release } from '../load/locks';

const PREFIX = 'qlora-studio-run:';
export const RUNS_CHANNEL = 'qlora-studio-runs';

interface HeldLock {
  name?: string;
}
interface RunLockManager {
  request(name: string, options: { ifAvailable: boolean }, callback: (lock: unknown) => Promise<void>): Promise<void>;
  query(): Promise<{ held?: HeldLock[] }>;
}

function webLocks(): RunLockManager | null {
  const locks = (globalThis as { navigator?: { locks?: RunLockManager } }).navigator?.locks;
  return locks && typeof locks.request === 'function' && typeof locks.query === 'function' ? locks : null;
}

const localHeld = new Set<string>();

/** Takes the run's lock if no tab holds it; null when one does. */
export async function holdRun(runId: string, manager: RunLockManager | null = webLocks()): Promise<Release | null> {
  const name = PREFIX + runId;
  if (!manager) {
    if (localHeld.has(name)) return null;
    localHeld.add(name);
    return () => void localHeld.delete(name);
  }
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const granted = await new Promise<boolean>((answer, refused) => {
    manager
      .request(name, { ifAvailable: true }, (lock) => {
        answer(lock !== null);
        return lock === null ? Promise.resolve() : held;
      })
      .catch(refused);
  });
  return granted ? release : null;
}

/** The runs some tab of this origin (this one included) has open now. */
export async function openRuns(manager: RunLockManager | null = webLocks()): Promise<Set<string>> {
  const names = manager ? ((await manager.query()).held ?? []).map((l) => l.name ?? '') : [...localHeld];
  return new Set(names.filter((n) => n.startsWith(PREFIX)).map((n) => n.slice(PREFIX.length)));
}

/** Messages between tabs about runs opening and closing. */
export interface RunsMessage {
  runId: string;
  open: boolean;
}

/** The channel tabs announce runs on, or null where there is none. */
export function runsChannel(onMessage: (m: RunsMessage) => void): { post(m: RunsMessage): void } | null {
  if (typeof BroadcastChannel === 'undefined') return null;
  const channel = new BroadcastChannel(RUNS_CHANNEL);
  channel.onmessage = (e: MessageEvent<RunsMessage>) => {
    if (e.data && typeof e.data.runId === 'string' && typeof e.data.open === 'boolean') onMessage(e.data);
  };
  return { post: (m) => channel.postMessage(m) };
}
