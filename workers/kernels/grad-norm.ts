/**
 * Global L2 norm of many gradient tensors and the clip coefficient of
 * torch.nn.utils.clip_grad_norm_: per-tensor norms, then the norm of the norms;
 * coef = min(1, maxNorm / (total + 1e-6)). The result stays on the GPU ([total, coef]) so the
 * AdamW kernel can scale the gradient without a round trip; the CPU reference follows the
 * shaders' summation order exactly (see shaders/grad-norm-sumsq.wgsl).
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import type { KernelShaders } from './shaders';

const WG = 256;
const ITEMS = 8;
const PER_WORKGROUP = WG * ITEMS;

export interface NormSegment {
  buf: GpuBuffer;
  count: number;
  offset?: number;
}

export type GradNormShaders = Pick<KernelShaders, 'gradNormSumsq' | 'gradNormFinalize'>;

/**
 * Reusable plan for a fixed list of tensors: the partial-sum buffer and segment table are
 * allocated once (training repeats the same shapes every step).
 */
export class GradNormPlan {
  readonly partials: GpuBuffer;
  readonly starts: GpuBuffer;
  /** [pre-clip total norm, clip coefficient]. */
  readonly clip: GpuBuffer;
  private readonly startIndex: number[];

  constructor(
    private readonly gpu: Gpu,
    private readonly shaders: GradNormShaders,
    readonly segments: NormSegment[],
  ) {
    this.startIndex = [0];
    for (const s of segments) this.startIndex.push(this.startIndex[this.startIndex.length - 1] + Math.ceil(s.count / PER_WORKGROUP));
    const totalPartials = Math.max(1, this.startIndex[this.startIndex.length - 1]);
    this.partials = gpu.alloc(totalPartials * 4, 'scratch', 'grad-norm partials');
    this.starts = gpu.upload(Uint32Array.from(this.startIndex), 'scratch', 'grad-norm segments');
    this.clip = gpu.alloc(8, 'scratch', 'grad-norm result');
  }

  /** Records the norm and clip coefficient into `clip`; maxNorm ≤ 0 disables clipping (coef 1). */
  run(maxNorm: number): void {
    const { gpu } = this;
    const sumsq = gpu.pipeline(this.shaders.gradNormSumsq, 'sumsq');
    this.segments.forEach((s, i) => {
      const groups = this.startIndex[i + 1] - this.startIndex[i];
      if (groups === 0) return;
      gpu.dispatch({
        pipeline: sumsq,
        bindings: [s.buf, this.partials, gpu.uniform([s.count, s.offset ?? 0, this.startIndex[i], 0])],
        workgroups: gpu.grid(groups),
        label: 'grad-norm sumsq',
      });
    });
    gpu.dispatch({
      pipeline: gpu.pipeline(this.shaders.gradNormFinalize, 'finalize'),
      bindings: [this.partials, this.starts, this.clip, gpu.uniform([this.segments.length, maxNorm, 0, 0], 'ufuu')],
      workgroups: [1],
      label: 'grad-norm finalize',
    });
  }

  dispose(): void {
    this.gpu.release(this.partials, this.starts, this.clip);
  }
}

/** CPU reference in the shaders' order, f32 throughout. Returns [total, coef]. */
export function gradNormCpu(tensors: Float32Array[], maxNorm: number): [number, number] {
  const f = Math.fround;
  const norms = tensors.map((x) => {
    let sum = 0;
    for (let base = 0; base < x.length; base += PER_WORKGROUP) {
      const lanes = new Float32Array(WG);
      for (let l = 0; l < WG; l++) {
        let acc = 0;
        for (let k = 0; k < ITEMS; k++) {
          const i = base + l + WG * k;
          if (i < x.length) acc = f(acc + f(x[i] * x[i]));
        }
        lanes[l] = acc;
      }
      sum = f(sum + treeSum(lanes));
    }
    return f(Math.sqrt(sum));
  });
  const lanes = new Float32Array(WG);
  for (let t = 0; t < norms.length; t++) lanes[t % WG] = f(lanes[t % WG] + f(norms[t] * norms[t]));
  const total = f(Math.sqrt(treeSum(lanes)));
  const coef = maxNorm > 0 ? Math.min(f(f(maxNorm) / f(total + f(1e-6))), 1) : 1;
  return [total, coef];
}

/** Halving-tree sum of 256 f32 lanes (lane l += lane l + s). Mutates `lanes`. */
function treeSum(lanes: Float32Array): number {
  for (let s = WG / 2; s > 0; s >>= 1) for (let l = 0; l < s; l++) lanes[l] = lanes[l] + lanes[l + s];
  return lanes[0];
}
