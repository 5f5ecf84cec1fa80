/**
 * Choosing the next token from logits, in transformers' order: temperature, then top-k, then
 * top-p (nucleus), then one draw u ∈ [0, 1) walked down the kept tokens from the most likely.
 * Temperature 0 (or unset) is greedy argmax.
 *
 * `sampleTokenBySort` is the reference: it sorts every id of the vocabulary. `sampleToken` makes
 * the same choice while sorting only the ids that can be kept or reached by the draw: top-k
 * comes from a bounded heap; without top-k, the ids are bucketed by their weight in one pass,
 * the fewest buckets that hold the nucleus (or the draw's share of the mass) are sorted, and
 * the reference's loops run on that sorted prefix of the vocabulary. A prefix too short to
 * decide is doubled until it decides (at worst it is the whole vocabulary).
 *
 * Every weight, probability and cumulative sum is the reference's float64 arithmetic on the
 * same ids in the same order, with one exception: without top-k the normaliser also sums the
 * ids outside the sorted prefix, which are added in index order instead of sorted order. That
 * moves the normaliser by a few ulps at most (nothing when those ids' weights are below half an
 * ulp of the sum, and nothing at all once the prefix is the whole vocabulary), so a draw can
 * only differ when u or a cumulative sum lies within ~1e-13 of a boundary.
 */
import { argmaxRow } from '../kernels/argmax';

export interface SamplingOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
}

/** Index of the largest logit: the first on ties, the first NaN if any (like torch.argmax). */
export const argmax = (logits: ArrayLike<number>): number => argmaxRow(logits);

/** Whether these options choose by argmax (temperature unset, 0 or negative). */
export function isGreedy(o: SamplingOptions): boolean {
  return !o.temperature || o.temperature <= 0;
}

/** Throws a RangeError naming the option that no draw can honour. */
export function checkSamplingOptions(o: SamplingOptions): void {
  if (!isGreedy(o) && !Number.isFinite(o.temperature)) throw new RangeError(`sampling: temperature ${o.temperature} must be a finite number`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new RangeError(`sampling: topK ${o.topK} must be a whole number ≥ 0 (0 = off)`);
  if (o.topP !== undefined && Number.isNaN(o.topP)) throw new RangeError('sampling: topP is NaN');
}

// ---------------------------------------------------------------- reference (sorts every id)

/** Probabilities over the kept tokens after temperature, top-k and top-p; others are absent. */
export function samplingDistributionBySort(logits: ArrayLike<number>, o: SamplingOptions): { ids: number[]; probs: number[] } {
  const t = o.temperature ?? 1;
  let ids = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK && o.topK > 0 && o.topK < ids.length) ids = ids.slice(0, o.topK);
  const m = logits[ids[0]] / t;
  let probs = ids.map((i) => Math.exp(logits[i] / t - m));
  let sum = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / sum);
  const topP = o.topP ?? 1;
  if (topP < 1) {
    const { keep } = nucleusCut(probs, topP);
    ids = ids.slice(0, keep);
    probs = probs.slice(0, keep);
    sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / sum);
  }
  return { ids, probs };
}

/** The top-p cut: how many of the probabilities (largest first) are kept, and their sum (≥ topP unless all are kept). */
function nucleusCut(probs: number[], topP: number): { keep: number; cum: number } {
  let cum = 0;
  let keep = 0;
  while (keep < probs.length) {
    cum += probs[keep++];
    if (cum >= topP) break;
  }
  return { keep, cum };
}

export function sampleTokenBySort(logits: ArrayLike<number>, o: SamplingOptions, random: () => number): number {
  if (isGreedy(o)) return argmax(logits);
  const { ids, probs } = samplingDistributionBySort(logits, o);
  let u = random();
  for (let i = 0; i < ids.length; i++) {
    u -= probs[i];
    if (u < 0) return ids[i];
  }
  return ids[ids.length - 1];
}

// ---------------------------------------------------------------- selection

/** The reference's order: larger logit first, then smaller id. */
const byLogit = (logits: ArrayLike<number>) => (a: number, b: number) => logits[b] - logits[a] || a - b;

/** The largest logit; throws on what no distribution can be made of. */
function maxLogit(logits: ArrayLike<number>): number {
  if (logits.length === 0) throw new RangeError('sampling: the logits are empty');
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v)) throw new RangeError(`sampling: logit ${i} is NaN`);
    if (v === Infinity) throw new RangeError(`sampling: logit ${i} is +Infinity`);
    if (v > max) max = v;
  }
  if (max === -Infinity) throw new RangeError('sampling: every logit is -Infinity');
  return max;
}

/** The k ids of largest logit in the reference's order, from a heap of the k best so far: O(V log k). */
function topKIds(logits: ArrayLike<number>, k: number): number[] {
  // Root = the worst kept id (smallest logit, then largest id).
  const heap: number[] = [];
  const worse = (a: number, b: number) => logits[a] < logits[b] || (logits[a] === logits[b] && a > b);
  const swap = (i: number, j: number) => {
    const t = heap[i];
    heap[i] = heap[j];
    heap[j] = t;
  };
  for (let id = 0; id < logits.length; id++) {
    if (heap.length < k) {
      heap.push(id);
      for (let i = heap.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!worse(heap[i], heap[parent])) break;
        swap(i, parent);
        i = parent;
      }
    } else if (logits[id] > logits[heap[0]]) {
      // A later id with an equal logit is never better: ids arrive in increasing order.
      heap[0] = id;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let w = i;
        if (l < k && worse(heap[l], heap[w])) w = l;
        if (r < k && worse(heap[r], heap[w])) w = r;
        if (w === i) break;
        swap(i, w);
        i = w;
      }
    }
  }
  return heap.sort(byLogit(logits));
}

const BUCKETS_PER_UNIT = 8;
/** Weights below e^-64 share the last bucket. */
const BUCKET_RANGE = 64;
const BUCKETS = BUCKET_RANGE * BUCKETS_PER_UNIT + 1;

/**
 * Every id's weight exp(logit/t − max/t) (the reference's value) and a bucket that only grows as
 * the logit falls, so the ids in buckets 0..b are always a prefix of the reference's order.
 */
class WeightBuckets {
  readonly weight: Float64Array;
  private readonly bucket: Uint16Array;
  private readonly cumMass = new Float64Array(BUCKETS);
  private readonly cumCount = new Uint32Array(BUCKETS);

  constructor(
    private readonly logits: ArrayLike<number>,
    t: number,
    m: number,
  ) {
    const V = logits.length;
    this.weight = new Float64Array(V);
    this.bucket = new Uint16Array(V);
    for (let i = 0; i < V; i++) {
      const z = logits[i] / t - m;
      const w = Math.exp(z);
      const b = -z < BUCKET_RANGE ? Math.floor(-z * BUCKETS_PER_UNIT) : BUCKETS - 1;
      this.weight[i] = w;
      this.bucket[i] = b;
      this.cumMass[b] += w;
      this.cumCount[b]++;
    }
    for (let b = 1; b < BUCKETS; b++) {
      this.cumMass[b] += this.cumMass[b - 1];
      this.cumCount[b] += this.cumCount[b - 1];
    }
  }

  get total(): number {
    return this.cumMass[BUCKETS - 1];
  }

  /** The first bucket by which `mass` of weight is reached (the last one if never). */
  bucketForMass(mass: number): number {
    for (let b = 0; b < BUCKETS; b++) if (this.cumMass[b] >= mass) return b;
    return BUCKETS - 1;
  }

  /** The first bucket after b whose prefix is at least twice as long (or the whole vocabulary). */
  grow(b: number): number {
    const want = Math.min(this.logits.length, 2 * this.cumCount[b]);
    for (let n = b + 1; n < BUCKETS; n++) if (this.cumCount[n] >= want) return n;
    return BUCKETS - 1;
  }

  /** The ids of buckets 0..b in the reference's order, and the normaliser: their weights in that order, then every other id's in id order. */
  prefix(b: number): { ids: number[]; sum: number } {
    const ids: number[] = [];
    for (let i = 0; i < this.bucket.length; i++) if (this.bucket[i] <= b) ids.push(i);
    ids.sort(byLogit(this.logits));
    let sum = 0;
    for (const i of ids) sum += this.weight[i];
    for (let i = 0; i < this.bucket.length; i++) if (this.bucket[i] > b) sum += this.weight[i];
    return { ids, sum };
  }
}

/** A sorted prefix of the kept ids with their weights, the normaliser, and whether the prefix is every kept id. */
interface Prefix {
  ids: number[];
  weight: (id: number) => number;
  sum: number;
  complete: boolean;
}

/**
 * The reference's top-p cut on a sorted prefix: the kept ids and their probabilities, or null
 * when the prefix ends before the cumulative probability reaches topP.
 */
function nucleus(p: Prefix, topP: number): { ids: number[]; probs: number[] } | null {
  let ids = p.ids;
  let probs = ids.map((i) => p.weight(i) / p.sum);
  if (topP < 1) {
    const { keep, cum } = nucleusCut(probs, topP);
    if (!(cum >= topP) && !p.complete) return null;
    ids = ids.slice(0, keep);
    probs = probs.slice(0, keep);
    const sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((q) => q / sum);
  } else if (!p.complete) return null;
  return { ids, probs };
}

/** The reference's walk of u down the kept ids; null when a partial prefix runs out first. */
function walk(p: Prefix, topP: number, u: number): number | null {
  if (topP < 1) {
    const d = nucleus(p, topP);
    if (!d) return null;
    for (let i = 0; i < d.ids.length; i++) {
      u -= d.probs[i];
      if (u < 0) return d.ids[i];
    }
    return d.ids[d.ids.length - 1];
  }
  for (const id of p.ids) {
    u -= p.weight(id) / p.sum;
    if (u < 0) return id;
  }
  return p.complete ? p.ids[p.ids.length - 1] : null;
}

/**
 * Runs `decide` on growing sorted prefixes until one decides. With top-k the prefix is the top k
 * (complete); otherwise it starts at the buckets holding `startMass` of the weight (or at the
 * first bucket alone when startMass is null).
 */
function onPrefixes<T>(logits: ArrayLike<number>, o: SamplingOptions, t: number, startMass: ((total: number) => number) | null, decide: (p: Prefix) => T | null): T {
  const V = logits.length;
  const max = maxLogit(logits);
  if (o.topK && o.topK > 0 && o.topK < V) {
    const ids = topKIds(logits, o.topK);
    const m = logits[ids[0]] / t;
    const weights = new Map<number, number>();
    let sum = 0;
    for (const i of ids) {
      const w = Math.exp(logits[i] / t - m);
      weights.set(i, w);
      sum += w;
    }
    return decide({ ids, weight: (i) => weights.get(i)!, sum, complete: true })!;
  }
  const buckets = new WeightBuckets(logits, t, max / t);
  const weight = (i: number) => buckets.weight[i];
  // A hair above the estimate, so the float64 sums of the exact loops rarely need a second prefix.
  let b = startMass ? buckets.bucketForMass(startMass(buckets.total) * (1 + 1e-9)) : 0;
  for (;;) {
    const { ids, sum } = buckets.prefix(b);
    const got = decide({ ids, weight, sum, complete: ids.length === V });
    if (got !== null) return got;
    b = buckets.grow(b);
  }
}

/** Probabilities over the kept tokens after temperature, top-k and top-p (the kept ids sorted; others absent). */
export function samplingDistribution(logits: ArrayLike<number>, o: SamplingOptions): { ids: number[]; probs: number[] } {
  const t = o.temperature ?? 1;
  if (!(t > 0 && Number.isFinite(t))) throw new RangeError(`sampling: temperature ${t} must be a positive finite number`);
  checkSamplingOptions(o);
  const topP = o.topP ?? 1;
  return onPrefixes(logits, o, t, topP < 1 ? (total) => topP * total : (total) => total, (p) => nucleus(p, topP));
}

/**
 * The token the reference draws with this u. `guessPrefix` false starts from the smallest
 * prefix, so tests can drive the growth path.
 */
export function drawToken(logits: ArrayLike<number>, o: SamplingOptions, u: number, guessPrefix = true): number {
  checkSamplingOptions(o);
  if (isGreedy(o)) return argmax(logits);
  const topP = o.topP ?? 1;
  const startMass = guessPrefix ? (total: number) => (topP < 1 ? topP : u) * total : null;
  return onPrefixes(logits, o, o.temperature!, startMass, (p) => walk(p, topP, u));
}

/** The next token: argmax when greedy, else one draw of `random` (exactly one call, like the reference). */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, random: () => number): number {
  if (isGreedy(o)) return argmax(logits);
  return drawToken(logits, o, random());
}
