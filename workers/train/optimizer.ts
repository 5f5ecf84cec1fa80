/**
 * AdamW over the LoRA tensors, as torch.optim.AdamW + clip_grad_norm_ compute one optimizer
 * step: global-norm clipping of the accumulated gradients (coefficient kept on the GPU), then
 * the AdamW update of every tensor with the step's learning rate, zeroing each gradient after
 * use so the next accumulation window starts from zero. Moments live in PagedMoments.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { adamw, adamwScalars, type AdamWHyper } from '../kernels/adamw';
import { GradNormPlan } from '../kernels/grad-norm';
import type { OptimizerShaders } from '../kernels/shaders';
import { PagedMoments, type PagingOptions } from './paged-moments';

export interface OptimizerParam {
  key: string;
  numel: number;
  weight: GpuBuffer;
  grad: GpuBuffer;
}

export type AdamWSettings = Omit<AdamWHyper, 'lr'>;

export interface OptimizerState {
  /** Optimizer steps taken (torch's state['step']). */
  step: number;
  tensors: { key: string; expAvg: Float32Array; expAvgSq: Float32Array }[];
}

export class AdamWOptimizer {
  /** Optimizer steps taken so far; the next step's bias corrections use stepCount + 1. */
  stepCount = 0;
  readonly moments: PagedMoments;
  private readonly norm: GradNormPlan;

  constructor(
    private readonly gpu: Gpu,
    private readonly shaders: OptimizerShaders,
    readonly params: OptimizerParam[],
    readonly hyper: AdamWSettings,
    paging: PagingOptions = {},
  ) {
    this.moments = new PagedMoments(gpu, params.map((p) => ({ key: p.key, numel: p.numel })), paging);
    this.norm = new GradNormPlan(gpu, shaders, params.map((p) => ({ buf: p.grad, count: p.numel })));
  }

  /** Zeroes every gradient (before the first accumulation window). */
  zeroGrad(): void {
    for (const p of this.params) this.gpu.fill(p.grad, 0, p.numel * 4);
  }

  /**
   * Clips the accumulated gradients to `maxGradNorm` (≤ 0: no clipping) and applies one AdamW
   * step at learning rate `lr`. The pre-clip norm is left in `clipResult` ([total, coef]).
   */
  async step(lr: number, maxGradNorm: number): Promise<void> {
    this.norm.run(maxGradNorm);
    this.stepCount++;
    const scalars = adamwScalars({ ...this.hyper, lr }, this.stepCount);
    for (let ti = 0; ti < this.params.length; ti++) {
      const p = this.params[ti];
      for (const page of this.moments.pagesOf(ti)) {
        const { expAvg, expAvgSq } = await this.moments.acquire(page);
        adamw(
          this.gpu,
          this.shaders.adamw,
          { param: p.weight, grad: p.grad, expAvg, expAvgSq, clip: this.norm.clip, count: page.count, paramOffset: page.start, stateOffset: 0, zeroGrad: true },
          scalars,
        );
      }
    }
    this.gpu.flush();
  }

  /** [pre-clip total norm, clip coefficient] of the last step. */
  async readClip(): Promise<{ norm: number; coef: number }> {
    const [norm, coef] = await this.gpu.readF32(this.norm.clip, 2);
    return { norm, coef };
  }

  async exportState(): Promise<OptimizerState> {
    return { step: this.stepCount, tensors: await this.moments.read() };
  }

  importState(state: OptimizerState): void {
    this.stepCount = state.step;
    for (const t of state.tensors) this.moments.load(t.key, t.expAvg, t.expAvgSq);
  }

  dispose(): void {
    this.moments.dispose();
    this.norm.dispose();
  }
}
