/**
 * Choosing the next token from logits, in transformers' order: temperature, then top-k, then
 * top-p (nucleus), then a draw. Temperature 0 (or unset) is greedy argmax.
 */
export interface SamplingOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
}

/** Index of the largest logit (the first one on ties, like torch.argmax). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Probabilities over the kept tokens after temperature, top-k and top-p; others are absent. */
export function samplingDistribution(logits: ArrayLike<number>, o: SamplingOptions): { ids: number[]; probs: number[] } {
  const t = o.temperature ?? 1;
  let ids = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK && o.topK > 0 && o.topK < ids.length) ids = ids.slice(0, o.topK);
  const m = logits[ids[0]] / t;
  let probs = ids.map((i) => Math.exp(logits[i] / t - m));
  let sum = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / sum);
  const topP = o.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < probs.length) {
      cum += probs[keep++];
      if (cum >= topP) break;
    }
    ids = ids.slice(0, keep);
    probs = probs.slice(0, keep);
    sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / sum);
  }
  return { ids, probs };
}

export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, random: () => number): number {
  if (!o.temperature || o.temperature <= 0) return argmax(logits);
  const { ids, probs } = samplingDistribution(logits, o);
  let u = random();
  for (let i = 0; i < ids.length; i++) {
    u -= probs[i];
    if (u < 0) return ids[i];
  }
  return ids[ids.length - 1];
}
