/**
 * Frozen base linear layers: y = x·Wᵀ + b and the input gradient dx = dy·W (no weight gradient).
 * Exact mode keeps W in f32; NF4 mode keeps it quantized and widens it on use.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { matmul } from '../kernels/matmul';
import { dequantizeGpu, nf4StoredBytes, releaseNf4, type Nf4GpuWeight } from '../nf4/gpu';
import type { ModelShaders } from './shaders';

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
 * NF4 weight: each use dequantizes W into a scratch f32 buffer (released right after), then
 * runs the f32 matmul. Results equal the exact engine on the dequantized weights.
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

  private widened(): GpuBuffer {
    const w = this.gpu.alloc(this.outFeatures * this.inFeatures * 4, 'scratch', 'nf4-widened');
    dequantizeGpu(this.gpu, this.shaders, this.weight, w);
    return w;
  }

  forward(x: GpuBuffer, y: GpuBuffer, M: number, accumulate: boolean): void {
    const w = this.widened();
    matmul(this.gpu, this.shaders.matmul, { a: x, b: w, c: y, M, N: this.outFeatures, K: this.inFeatures, transB: true, bias: this.bias ?? undefined, beta: accumulate ? 1 : 0 });
    this.gpu.release(w);
  }

  backwardData(dy: GpuBuffer, dx: GpuBuffer, M: number, accumulate: boolean): void {
    const w = this.widened();
    matmul(this.gpu, this.shaders.matmul, { a: dy, b: w, c: dx, M, N: this.inFeatures, K: this.outFeatures, beta: accumulate ? 1 : 0 });
    this.gpu.release(w);
  }

  dispose(): void {
    releaseNf4(this.gpu, this.weight);
    this.gpu.release(this.bias);
  }
}
