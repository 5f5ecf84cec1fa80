/**
 * Where the trainer's micro-batches come from, in a deterministic order: a fixed list (the
 * hf-train check) or examples shuffled per epoch by a seeded permutation and collated into
 * micro-batches. The order depends only on (seed, epoch), so a resumed run needs no RNG state
 * beyond the seed and its data cursor.
 */
import type { Batch } from '../model/types';
import { seededRandom } from '../util/random';

export interface BatchSource {
  /** Micro-batches in one epoch. */
  readonly microBatchesPerEpoch: number;
  /** The micro-batch at position `index` of epoch `epoch` (read from storage: a promise). */
  microBatch(epoch: number, index: number): Batch | Promise<Batch>;
}

/** Validation batches read one at a time (a stored dataset's validation split). */
export interface EvalBatches {
  readonly count: number;
  batch(index: number): Promise<Batch>;
}

/** Examples by index without holding them all (workers/data/types.ts `ExampleList` is one). */
export interface ExampleSource<E> {
  readonly count: number;
  getMany(indices: readonly number[]): Promise<E[]>;
}

/** Label tokens that count in the loss: labels[b, t] != -100 for t ≥ 1 (HF's shift by one). */
export function labelTokens(batch: Batch): number {
  let n = 0;
  for (let b = 0; b < batch.batch; b++) {
    const row = b * batch.seq;
    for (let t = 1; t < batch.seq; t++) if (batch.labels[row + t] !== -100) n++;
  }
  return n;
}

/** The same micro-batches every epoch, in the given order. */
export class FixedBatches implements BatchSource {
  constructor(readonly batches: Batch[]) {
    if (!batches.length) throw new Error('no micro-batches to train on');
  }
  get microBatchesPerEpoch(): number {
    return this.batches.length;
  }
  microBatch(_epoch: number, index: number): Batch {
    return this.batches[index];
  }
}

export interface ShuffledExamplesOptions<E, S = E[]> {
  examples: S;
  microBatchSize: number;
  seed: number;
  shuffle: boolean;
  /** Builds a padded micro-batch from examples (the data pipeline's collator). */
  collate: (examples: E[]) => Batch;
}

/**
 * The order of examples shuffled per epoch (seeded) and cut into micro-batches; the last one
 * may be smaller. Where the examples come from is the subclass's.
 */
abstract class ShuffledOrder<E, S> implements BatchSource {
  private cachedEpoch = -1;
  private order: number[] = [];

  constructor(
    protected readonly o: ShuffledExamplesOptions<E, S>,
    private readonly count: number,
  ) {
    if (!count) throw new Error('the training split has no examples');
    if (!(o.microBatchSize >= 1)) throw new RangeError(`micro-batch size must be ≥ 1, got ${o.microBatchSize}`);
  }

  get microBatchesPerEpoch(): number {
    return Math.ceil(this.count / this.o.microBatchSize);
  }

  /** The example indices of an epoch, in training order. */
  epochOrder(epoch: number): number[] {
    if (epoch !== this.cachedEpoch) {
      this.order = this.o.shuffle ? seededPermutation(this.count, this.o.seed, epoch) : [...Array(this.count).keys()];
      this.cachedEpoch = epoch;
    }
    return this.order;
  }

  /** The example indices of micro-batch `index` of epoch `epoch` (what `microBatch` collates; a run bundle's order). */
  microBatchIndices(epoch: number, index: number): number[] {
    const order = this.epochOrder(epoch);
    const start = index * this.o.microBatchSize;
    if (index < 0 || start >= order.length) throw new RangeError(`micro-batch ${index} is outside epoch ${epoch} (${this.microBatchesPerEpoch} micro-batches)`);
    return order.slice(start, start + this.o.microBatchSize);
  }

  abstract microBatch(epoch: number, index: number): Batch | Promise<Batch>;
}

/** Examples in memory, shuffled per epoch (seeded), cut into micro-batches. */
export class ShuffledExamples<E> extends ShuffledOrder<E, E[]> {
  constructor(o: ShuffledExamplesOptions<E>) {
    super(o, o.examples.length);
  }

  microBatch(epoch: number, index: number): Batch {
    return this.o.collate(this.microBatchIndices(epoch, index).map((i) => this.o.examples[i]));
  }
}

/** The same order over examples read from storage: a micro-batch reads only its own examples. */
export class ShuffledExampleSource<E> extends ShuffledOrder<E, ExampleSource<E>> {
  constructor(o: ShuffledExamplesOptions<E, ExampleSource<E>>) {
    super(o, o.examples.count);
  }

  async microBatch(epoch: number, index: number): Promise<Batch> {
    return this.o.collate(await this.o.examples.getMany(this.microBatchIndices(epoch, index)));
  }
}

/**
 * The micro-batches of optimizer step `step`, as [epoch, index] pairs: windows of `gradAccum`
 * micro-batches, an epoch's last window shorter when the epoch does not divide evenly.
 */
export function stepWindow(step: number, microBatchesPerEpoch: number, gradAccum: number): [number, number][] {
  const windowsPerEpoch = Math.ceil(microBatchesPerEpoch / gradAccum);
  const epoch = Math.floor(step / windowsPerEpoch);
  const first = (step % windowsPerEpoch) * gradAccum;
  const last = Math.min(microBatchesPerEpoch, first + gradAccum);
  const out: [number, number][] = [];
  for (let i = first; i < last; i++) out.push([epoch, i]);
  return out;
}

/** Fisher–Yates with a mulberry32 stream keyed by (seed, epoch). */
export function seededPermutation(n: number, seed: number, epoch: number): number[] {
  const next = seededRandom(mix(seed, epoch));
  const out = [...Array(n).keys()];
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function mix(a: number, b: number): number {
  let h = Math.imul((a >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul((b >>> 0) + 0x632be5ab, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

