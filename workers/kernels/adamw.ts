/**
 * AdamW update (torch.optim.AdamW, single-tensor path) on the GPU, with a CPU reference that
 * rounds every operation to f32 in the same order (shaders/adamw.wgsl spells the order out).
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** HF TrainingArguments' defaults (adam_beta1/2, adam_epsilon, weight_decay is 0 there; LoRA recipes use 0.01). */
export const ADAMW_DEFAULTS: Omit<AdamWHyper, 'lr'> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

/** The per-step scalars, computed in f64 as torch does with Python floats, then passed as f32. */
export interface AdamWScalars {
  decay: number;
  beta1: number;
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  bc2Sqrt: number;
  eps: number;
  negStepSize: number;
}

/** Scalars for the step whose 1-based count is `t`, at learning rate `lr` (already scheduled). */
export function adamwScalars(h: AdamWHyper, t: number): AdamWScalars {
  if (!(t >= 1) || !Number.isInteger(t)) throw new RangeError(`AdamW step count must be a positive integer, got ${t}`);
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;
  return {
    decay: 1 - h.lr * h.weightDecay,
    beta1: h.beta1,
    oneMinusBeta1: 1 - h.beta1,
    beta2: h.beta2,
    oneMinusBeta2: 1 - h.beta2,
    bc2Sqrt: Math.sqrt(bc2),
    eps: h.eps,
    negStepSize: -(h.lr / bc1),
  };
}

export interface AdamWSpec {
  param: GpuBuffer;
  grad: GpuBuffer;
  expAvg: GpuBuffer;
  expAvgSq: GpuBuffer;
  /** [total norm, clip coefficient] as written by the grad-norm finalize kernel. */
  clip: GpuBuffer;
  count: number;
  paramOffset?: number;
  stateOffset?: number;
  /** Zero the gradient after reading it. */
  zeroGrad?: boolean;
}

export function adamw(gpu: Gpu, code: string, s: AdamWSpec, k: AdamWScalars): void {
  if (s.count === 0) return;
  const pipeline = gpu.pipeline(code, 'main', { ZERO_GRAD: s.zeroGrad ? 1 : 0 });
  const u = gpu.uniform(
    [s.count, s.paramOffset ?? 0, s.stateOffset ?? 0, 0, k.decay, k.beta1, k.oneMinusBeta1, k.beta2, k.oneMinusBeta2, k.bc2Sqrt, k.eps, k.negStepSize],
    'uuuuffffffff',
  );
  gpu.dispatch({
    pipeline,
    bindings: [s.param, s.grad, s.expAvg, s.expAvgSq, s.clip, u],
    workgroups: gpu.grid(Math.ceil(s.count / 256)),
    label: 'adamw',
  });
}

/** CPU reference: updates param, expAvg, expAvgSq in place, every operation rounded to f32. */
export function adamwCpu(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  clipCoef: number,
  k: AdamWScalars,
): void {
  const f = Math.fround;
  const decay = f(k.decay);
  const b1 = f(k.beta1);
  const omb1 = f(k.oneMinusBeta1);
  const b2 = f(k.beta2);
  const omb2 = f(k.oneMinusBeta2);
  const bc2Sqrt = f(k.bc2Sqrt);
  const eps = f(k.eps);
  const neg = f(k.negStepSize);
  const coef = f(clipCoef);
  for (let i = 0; i < param.length; i++) {
    const g = f(grad[i] * coef);
    const p = f(param[i] * decay);
    const m = f(f(expAvg[i] * b1) + f(omb1 * g));
    const v = f(f(expAvgSq[i] * b2) + f(f(omb2 * g) * g));
    const d = f(f(f(Math.sqrt(v)) / bc2Sqrt) + eps);
    param[i] = f(p + f(f(neg * m) / d));
    expAvg[i] = m;
    expAvgSq[i] = v;
  }
}
