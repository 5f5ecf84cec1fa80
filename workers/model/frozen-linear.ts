/**
 * Frozen base linear layers: y = x·Wᵀ + b and the input gradient dx = dy·W (no weight gradient).
 * Exact mode keeps W in f32; NF4 mode keeps it quantized and dequantizes inside the matmul.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { matmul } from '../kernels/matmul';
import { nf4StoredBytes, releaseNf4, type Nf4GpuWeight } from '../nf4/gpu';
import { nf4LinearBackwardData, nf4LinearForward } from '../kernels/nf4-matmul';
import { axpy } from '../kernels/elementwise';
import type { ModelShaders } from '../kernels/shaders';

export interface FrozenLinear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** y = x·Wᵀ + b over M rows; with accumulate, y += x·Wᵀ + b. */
  forward(x: GpuBuffer, y: GpuBuffer, M: number, accumulate: boolean): void;
  /** dx = dy·W (accumulate: dx += dy·W). */
  backwardData(dy: GpuBuffer, dx: GpuBuffer, M: number, accumulate: boolean): void;
  /** GPU bytes of the stored weight and bias. */
  readonly storedBytes: number;
  dispose(): void;
}

export class F32Linear implements FrozenLinear {
  constructor(
    private readonly gpu: Gpu,
    private readonly shaders: ModelShaders,
    readonly weight: GpuBuffer,
    readonly bias: GpuBuffer | null,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {}

  get storedBytes(): number {
    return this.weight.size + (this.bias?.size ?? 0);
  }

  forward(x: GpuBuffer, y: GpuBuffer, M: number, accumulate: boolean): void {
    matmul(this.gpu, this.shaders.matmul, { a: x, b: this.weight, c: y, M, N: this.outFeatures, K: this.inFeatures, transB: true, bias: this.bias ?? undefined, beta: accumulate ? 1 : 0 });
  }

  backwardData(dy: GpuBuffer, dx: GpuBuffer, M: number, accumulate: boolean): void {
    matmul(this.gpu, this.shaders.matmul, { a: dy, b: this.weight, c: dx, M, N: this.inFeatures, K: this.outFeatures, beta: accumulate ? 1 : 0 });
  }

  dispose(): void {
    this.gpu.release(this.weight, this.bias);
  }
}

/**
 * NF4 weight through the fused dequantize-matmul kernels (workers/kernels/nf4-matmul.ts). Its
 * forward overwrites y, so an accumulating forward (the residual adds of dense and fc2) goes
 * through an [M, out] scratch buffer that is then added into y.
 */
export class Nf4Linear implements FrozenLinear {
  constructor(
    private readonly gpu: Gpu,
    private readonly shaders: ModelShaders,
    readonly weight: Nf4GpuWeight,
    readonly bias: GpuBuffer | null,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {}

  get storedBytes(): number {
    return nf4StoredBytes(this.weight) + (this.bias?.size ?? 0);
  }

  forward(x: GpuBuffer, y: GpuBuffer, M: number, accumulate: boolean): void {
    const bias = this.bias ?? undefined;
    if (!accumulate) {
      nf4LinearForward(this.gpu, this.shaders, { x, weight: this.weight, bias, y, M });
      return;
    }
    const tmp = this.gpu.alloc(M * this.outFeatures * 4, 'scratch', 'nf4-acc');
    nf4LinearForward(this.gpu, this.shaders, { x, weight: this.weight, bias, y: tmp, M });
    axpy(this.gpu, this.shaders.elementwise, tmp, y, M * this.outFeatures);
    this.gpu.release(tmp);
  }

  backwardData(dy: GpuBuffer, dx: GpuBuffer, M: number, accumulate: boolean): void {
    nf4LinearBackwardData(this.gpu, this.shaders, { dy, weight: this.weight, dx, M, accumulate });
  }

  dispose(): void {
    releaseNf4(this.gpu, this.weight);
    this.gpu.release(this.bias);
  }
}
