/**
 * What a studio run needs besides its checkpoints, kept in IndexedDB so that a reload can
 * resume it: the model it pinned and how its base was stored, its settings, the stored dataset it
 * reads (by content key, workers/data/example-store.ts: the examples are not copied) and its state.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { Example } from '../data/types';
import type { ModelSource } from '../protocol';
import { runSettings, type RunSettings } from '../run/settings';
import { DEFAULT_QUANT, checkQuant, type QuantSettings } from '../load/presets';

export interface RunRecord {
  runId: string;
  /** Preset or hub model (dropped files cannot be re-read after a reload). */
  model: Extract<ModelSource, { kind: 'preset' | 'hub' }>;
  /** How the base was stored while training (NF4, or `{ type: 'none' }`): a resumed run loads it the same way. */
  quant: QuantSettings;
  modelLabel: string;
  dataset: string;
  settings: RunSettings;
  totalSteps: number;
  /**
   * The stored dataset the run reads, by content key; its split comes from the settings'
   * validation fraction and seed. The counts check that a re-opened dataset gives the same split.
   */
  examples?: { key: string; train: number; validation: number };
  /** Runs recorded before datasets were stored by key held their examples here (still resumable). */
  train?: Example[];
  validation?: Example[];
  samplePrompts: number[][];
  state: 'active' | 'finished';
  step: number;
  savedAt: number;
}

interface RunsDb extends DBSchema {
  runs: { key: string; value: RunRecord };
}

export class RunStore {
  private db: Promise<IDBPDatabase<RunsDb>> | null = null;

  constructor(private readonly dbName = 'qlora-studio-runs') {}

  private open(): Promise<IDBPDatabase<RunsDb>> {
    this.db ??= openDB<RunsDb>(this.dbName, 1, { upgrade: (db) => void db.createObjectStore('runs', { keyPath: 'runId' }) });
    return this.db;
  }

  async get(runId: string): Promise<RunRecord | undefined> {
    const run = await (await this.open()).get('runs', runId);
    // A run stored before the settings gained weight decay, clipping and sample length ran with
    // the defaults of those: fill them in so it resumes as it started. One stored before the base
    // could stay unquantized trained on NF4.
    return run && { ...run, settings: runSettings(run.settings), quant: run.quant === undefined ? DEFAULT_QUANT : checkQuant(run.quant, `stored run ${runId}`) };
  }

  async put(run: RunRecord): Promise<void> {
    await (await this.open()).put('runs', run);
  }

  /** The newest run that was interrupted (not finished), if any. */
  async latestActive(): Promise<RunRecord | null> {
    const all = await (await this.open()).getAll('runs');
    return all.filter((r) => r.state === 'active').sort((a, b) => b.savedAt - a.savedAt)[0] ?? null;
  }

  /** The stored datasets unfinished runs read (kept when old datasets are pruned). */
  async activeDatasetKeys(): Promise<string[]> {
    const all = await (await this.open()).getAll('runs');
    return all.flatMap((r) => (r.state === 'active' && r.examples ? [r.examples.key] : []));
  }

  /** A new run replaces any unfinished one, except those open in another tab (`open`: their ids). */
  async finishActive(open: ReadonlySet<string> = new Set()): Promise<void> {
    const db = await this.open();
    for (const old of await db.getAll('runs')) {
      if (old.state === 'active' && !open.has(old.runId)) await db.put('runs', { ...old, state: 'finished' });
    }
  }

  /** The newest interrupted runs first. */
  async active(): Promise<RunRecord[]> {
    const all = await (await this.open()).getAll('runs');
    return all.filter((r) => r.state === 'active').sort((a, b) => b.savedAt - a.savedAt);
  }
}
