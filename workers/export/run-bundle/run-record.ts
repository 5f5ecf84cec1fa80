/**
 * Where a run bundle's inputs are kept between the run and its export: the run's facts and its
 * examples by run id, in IndexedDB (the CLI's profile, the studio's origin). `bundleOfRun` is the
 * one place that joins a stored run and its newest checkpoint into the writer's input.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { Example, ExampleList } from '../../data/types';
import type { HeldBytes } from '../../load/held';
import type { OpenedCheckpoint } from '../../train/checkpoint-store';
import type { ExportFile } from '../bundle';
import { bundleExamplesOf } from './examples';
import { runJsonOf, type RunFacts } from './run-facts';
import { runBundleFiles } from './writer';

export interface RunBundleRecord {
  runId: string;
  facts: RunFacts;
  /**
   * The training split exactly as trained (after examples without a learned token were left out),
   * with row text. Absent where the run keeps its examples itself (the studio's run record).
   */
  train?: Example[];
  validation?: Example[];
  savedAt: number;
}

interface BundleDb extends DBSchema {
  runs: { key: string; value: RunBundleRecord };
}

export class RunBundleStore {
  private db: Promise<IDBPDatabase<BundleDb>> | null = null;

  constructor(private readonly dbName = 'qlora-studio-run-bundles') {}

  private open(): Promise<IDBPDatabase<BundleDb>> {
    this.db ??= openDB<BundleDb>(this.dbName, 1, { upgrade: (db) => void db.createObjectStore('runs', { keyPath: 'runId' }) });
    return this.db;
  }

  async get(runId: string): Promise<RunBundleRecord | undefined> {
    return (await this.open()).get('runs', runId);
  }

  async put(record: RunBundleRecord): Promise<void> {
    await (await this.open()).put('runs', record);
  }

  async delete(runId: string): Promise<void> {
    await (await this.open()).delete('runs', runId);
  }

  async close(): Promise<void> {
    if (this.db) (await this.db).close();
    this.db = null;
  }
}

/**
 * The bundle of a stored run at its newest checkpoint: run.json from the facts and the
 * checkpoint, tensors read from the checkpoint one at a time, the examples from the record.
 */
export async function bundleOfRun(record: { facts: RunFacts; train: readonly Example[] | ExampleList; validation: readonly Example[] | ExampleList }, checkpoint: OpenedCheckpoint, held?: HeldBytes, exportedAt?: Date): Promise<ExportFile[]> {
  const { meta } = checkpoint;
  const loraKeys = meta.lora.map((l) => l.key).join('\n');
  if (meta.optimizer.keys.join('\n') !== loraKeys) throw new Error(`checkpoint at step ${meta.step}: the optimizer's moments are not those of the LoRA tensors`);
  if (meta.settings.gradAccum !== record.facts.settings.gradAccum || meta.settings.seed !== record.facts.settings.seed) {
    throw new Error(`checkpoint at step ${meta.step}: made with gradient accumulation ${meta.settings.gradAccum} and seed ${meta.settings.seed}, the run's settings say ${record.facts.settings.gradAccum} and ${record.facts.settings.seed}`);
  }
  if (held) checkpoint.onChunk = (delta) => (delta > 0 ? held.hold(delta) : held.drop(-delta));
  const train = bundleExamplesOf(record.train);
  const validation = bundleExamplesOf(record.validation);
  return runBundleFiles({
    run: runJsonOf(record.facts, meta, { train: train.count, validation: validation.count }, exportedAt),
    lora: meta.lora,
    tensor: (name) => checkpoint.tensor(name),
    train,
    validation,
    held,
  });
}
