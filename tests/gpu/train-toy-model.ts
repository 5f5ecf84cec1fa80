/**
 * A small causal LM with LoRA for trainer tests, independent of the real architectures: the
 * hidden state of token x is E[x] + scale·B·A·E[x], logits = W·hidden. Its forward/backward
 * run on the CPU in f64 from the LoRA weights held in GPU buffers, and the scaled gradients
 * are added into the GPU gradient buffers: the trainer sees the model contract exactly.
 * `referenceTrajectory` replays a whole token-weighted training run in f64 on the CPU
 * (the same model math, clip_grad_norm_, AdamW) to check the trainer against.
 */
import type { Gpu } from '../../workers/gpu/runtime';
import type { Batch, ForwardBackwardOptions, GenerateOptions, GenerateResult, LoraTensor, LossResult, TrainableCausalLM } from '../../workers/model/types';
import { randn } from './helpers';
import { labelTokens } from '../../workers/train/batches';
import { scheduledLr } from '../../workers/train/schedule';
import type { TrainSettings } from '../../workers/train/trainer';

export interface ToyShape {
  vocab: number;
  hidden: number;
  r: number;
  scale: number;
  seed: number;
}

export interface ToyWeights {
  E: Float32Array; // [vocab, hidden]
  W: Float32Array; // [vocab, hidden]
  A: Float32Array; // [r, hidden]
  B: Float32Array; // [hidden, r]
}

export function toyWeights(s: ToyShape): ToyWeights {
  return {
    E: randn(s.vocab * s.hidden, s.seed, 0.5),
    W: randn(s.vocab * s.hidden, s.seed + 1, 0.5),
    A: randn(s.r * s.hidden, s.seed + 2, 0.3),
    B: randn(s.hidden * s.r, s.seed + 3, 0.3),
  };
}

/** Loss sum and gradients (f64) of one batch at LoRA weights A, B. */
export function toyLossAndGrad(s: ToyShape, w: { E: ArrayLike<number>; W: ArrayLike<number> }, A: ArrayLike<number>, B: ArrayLike<number>, batch: Batch) {
  const { vocab: V, hidden: H, r: R, scale } = s;
  const gA = new Float64Array(R * H);
  const gB = new Float64Array(H * R);
  let lossSum = 0;
  let tokens = 0;
  for (let b = 0; b < batch.batch; b++) {
    for (let t = 0; t + 1 < batch.seq; t++) {
      const label = batch.labels[b * batch.seq + t + 1];
      if (label === -100) continue;
      tokens++;
      const x = batch.inputIds[b * batch.seq + t];
      const e = Array.from({ length: H }, (_, i) => w.E[x * H + i]);
      const a = Array.from({ length: R }, (_, k) => e.reduce((acc, ei, i) => acc + A[k * H + i] * ei, 0));
      const h = e.map((ei, i) => ei + scale * a.reduce((acc, ak, k) => acc + B[i * R + k] * ak, 0));
      const logits = Array.from({ length: V }, (_, v) => h.reduce((acc, hi, i) => acc + w.W[v * H + i] * hi, 0));
      const max = Math.max(...logits);
      const exps = logits.map((l) => Math.exp(l - max));
      const z = exps.reduce((p, q) => p + q, 0);
      lossSum += Math.log(z) + max - logits[label];
      const dl = exps.map((ex, v) => ex / z - (v === label ? 1 : 0));
      const dh = Array.from({ length: H }, (_, i) => dl.reduce((acc, d, v) => acc + d * w.W[v * H + i], 0));
      // h = e + scale·B·a, a = A·e  →  dB = scale·dh·aᵀ, dA = scale·(Bᵀ dh)·eᵀ
      for (let i = 0; i < H; i++) for (let k = 0; k < R; k++) gB[i * R + k] += scale * dh[i] * a[k];
      for (let k = 0; k < R; k++) {
        let bd = 0;
        for (let i = 0; i < H; i++) bd += B[i * R + k] * dh[i];
        for (let i = 0; i < H; i++) gA[k * H + i] += scale * bd * e[i];
      }
    }
  }
  return { lossSum, tokens, gA, gB };
}

export class ToyModel implements TrainableCausalLM {
  readonly lora: LoraTensor[];
  forwardCalls = 0;

  constructor(
    private readonly gpu: Gpu,
    readonly shape: ToyShape,
    readonly weights: ToyWeights = toyWeights(shape),
  ) {
    const { r, hidden } = shape;
    const key = (m: 'A' | 'B') => `base_model.model.toy.proj.lora_${m}.weight`;
    this.lora = [
      { key: key('A'), shape: [r, hidden], weight: gpu.upload(weights.A, 'lora'), grad: gpu.alloc(r * hidden * 4, 'lora') },
      { key: key('B'), shape: [hidden, r], weight: gpu.upload(weights.B, 'lora'), grad: gpu.alloc(hidden * r * 4, 'lora') },
    ];
  }

  private async current(): Promise<[Float32Array, Float32Array]> {
    const [a, b] = this.lora;
    return [await this.gpu.readF32(a.weight, a.shape[0] * a.shape[1]), await this.gpu.readF32(b.weight, b.shape[0] * b.shape[1])];
  }

  async forwardBackward(batch: Batch, o: ForwardBackwardOptions): Promise<LossResult> {
    this.forwardCalls++;
    const [A, B] = await this.current();
    const r = toyLossAndGrad(this.shape, this.weights, A, B, batch);
    for (const [t, g] of [[this.lora[0], r.gA], [this.lora[1], r.gB]] as const) {
      const acc = await this.gpu.readF32(t.grad, g.length);
      for (let i = 0; i < g.length; i++) acc[i] += o.gradScale * g[i];
      this.gpu.write(t.grad, acc);
    }
    return { lossSum: r.lossSum, tokens: r.tokens };
  }

  async loss(batch: Batch): Promise<LossResult> {
    const [A, B] = await this.current();
    const r = toyLossAndGrad(this.shape, this.weights, A, B, batch);
    return { lossSum: r.lossSum, tokens: r.tokens };
  }

  async generate(prompt: number[], o: GenerateOptions): Promise<GenerateResult> {
    const [A, B] = await this.current();
    const tokens: number[] = [];
    let last = prompt[prompt.length - 1];
    for (let i = 0; i < o.maxNewTokens; i++) {
      // Greedy: the label with the lowest loss after `last`.
      let best = 0;
      let bestLoss = Infinity;
      for (let v = 0; v < this.shape.vocab; v++) {
        const l = toyLossAndGrad(this.shape, this.weights, A, B, { inputIds: Int32Array.from([last, v]), labels: Int32Array.from([-100, v]), attentionMask: Int32Array.from([1, 1]), batch: 1, seq: 2 }).lossSum;
        if (l < bestLoss) [best, bestLoss] = [v, l];
      }
      tokens.push(best);
      o.onToken?.(best, i);
      last = best;
      if (o.eosTokenIds?.includes(best)) return { tokens, stoppedBy: 'eos' };
    }
    return { tokens, stoppedBy: 'length' };
  }

  dispose(): void {
    for (const t of this.lora) this.gpu.release(t.weight, t.grad);
  }
}

/** Random micro-batches; `ignore[m]` leading positions of each row of micro-batch m are -100. */
export function toyBatches(vocab: number, count: number, batch: number, seq: number, ignore: number[], seed: number): Batch[] {
  return Array.from({ length: count }, (_, m) => {
    const u = randn(batch * seq, seed + m);
    const inputIds = Int32Array.from(u, (x) => Math.floor(Math.abs(x * 7919)) % vocab);
    const labels = Int32Array.from(inputIds, (id, i) => (i % seq < ignore[m % ignore.length] ? -100 : id));
    return { inputIds, labels, attentionMask: new Int32Array(batch * seq).fill(1), batch, seq };
  });
}

/** The token-weighted run in f64: clip_grad_norm_ and torch's AdamW, one window at a time. */
export function referenceTrajectory(shape: ToyShape, weights: ToyWeights, batches: Batch[], s: TrainSettings, evalBatch: Batch) {
  const A = Float64Array.from(weights.A);
  const B = Float64Array.from(weights.B);
  const params = [A, B];
  const m = params.map((p) => new Float64Array(p.length));
  const v = params.map((p) => new Float64Array(p.length));
  const steps = s.maxSteps!;
  const out = { microTokenCounts: [] as number[], microSumLosses: [] as number[], stepLosses: [] as number[], stepLrs: [] as number[], stepGradNorms: [] as number[], stepClipped: [] as number[] };
  for (let step = 0; step < steps; step++) {
    const window = batches.slice(step * s.gradAccum, (step + 1) * s.gradAccum);
    const N = window.reduce((a, b) => a + labelTokens(b), 0);
    const g = params.map((p) => new Float64Array(p.length));
    let sum = 0;
    for (const b of window) {
      const r = toyLossAndGrad(shape, weights, A, B, b);
      out.microTokenCounts.push(r.tokens);
      out.microSumLosses.push(r.lossSum);
      sum += r.lossSum;
      r.gA.forEach((x, i) => (g[0][i] += x / N));
      r.gB.forEach((x, i) => (g[1][i] += x / N));
    }
    const norm = Math.sqrt(g.reduce((a, gi) => a + gi.reduce((p, x) => p + x * x, 0), 0));
    const coef = s.maxGradNorm > 0 ? Math.min(1, s.maxGradNorm / (norm + 1e-6)) : 1;
    const lr = scheduledLr(s.lr, s.schedule, step, steps);
    out.stepLosses.push(sum / N);
    out.stepLrs.push(lr);
    out.stepGradNorms.push(norm);
    out.stepClipped.push(s.maxGradNorm > 0 && norm > s.maxGradNorm ? 1 : 0);
    const t = step + 1;
    params.forEach((p, pi) => {
      for (let i = 0; i < p.length; i++) {
        const gi = g[pi][i] * coef;
        p[i] *= 1 - lr * s.weightDecay;
        m[pi][i] = s.beta1 * m[pi][i] + (1 - s.beta1) * gi;
        v[pi][i] = s.beta2 * v[pi][i] + (1 - s.beta2) * gi * gi;
        p[i] -= (lr / (1 - s.beta1 ** t)) * m[pi][i] / (Math.sqrt(v[pi][i]) / Math.sqrt(1 - s.beta2 ** t) + s.eps);
      }
    });
  }
  const ev = toyLossAndGrad(shape, weights, A, B, evalBatch);
  return { ...out, evalLoss: ev.lossSum / ev.tokens, A, B, m, v };
}
