/**
 * data/order.safetensors: the micro-batch of every remaining optimizer step, derived from the
 * trainer's own batching (workers/train/batches.ts ShuffledExamples and stepWindow, with the
 * options assembleRun gives them), so the order written is the order the trainer feeds.
 */
import { ShuffledExamples, stepWindow } from '../../train/batches';
import { runBatching } from '../../session/runs';
import type { RunSettings } from '../../run/settings';

export interface OrderRequest {
  /** Training examples of the run (after the ones without a learned token were left out). */
  examples: number;
  settings: Pick<RunSettings, 'batchSize' | 'seed' | 'gradAccum'>;
  /** Optimizer steps done: the first row's step. */
  fromStep: number;
  totalSteps: number;
}

export interface RemainingOrder {
  /** [rows, batchSize] row-major: example indices, −1 where a micro-batch has fewer rows (or a window fewer micro-batches). */
  microBatches: Int32Array;
  rows: number;
  batchSize: number;
  gradAccum: number;
  firstStep: number;
}

/** The example indices of each micro-batch of steps `fromStep … totalSteps − 1`, `gradAccum` rows per step. */
export function remainingOrder(r: OrderRequest): RemainingOrder {
  const { gradAccum } = r.settings;
  if (!(Number.isInteger(r.fromStep) && r.fromStep >= 0 && r.fromStep <= r.totalSteps)) throw new RangeError(`order: step ${r.fromStep} is outside 0…${r.totalSteps}`);
  const batching = runBatching(r.settings);
  // The trainer's source, with no collation: only the indices are read.
  const source = new ShuffledExamples<null>({
    examples: new Array<null>(r.examples).fill(null),
    ...batching,
    collate: () => {
      throw new Error('order: collation is not used');
    },
  });
  const steps = r.totalSteps - r.fromStep;
  const batchSize = batching.microBatchSize;
  const microBatches = new Int32Array(steps * gradAccum * batchSize).fill(-1);
  for (let s = 0; s < steps; s++) {
    const window = stepWindow(r.fromStep + s, source.microBatchesPerEpoch, gradAccum);
    window.forEach(([epoch, index], k) => microBatches.set(source.microBatchIndices(epoch, index), (s * gradAccum + k) * batchSize));
  }
  return { microBatches, rows: steps * gradAccum, batchSize, gradAccum, firstStep: r.fromStep };
}
