/**
 * LoRA adapter kernels for one linear layer with input x [M, inF] and output y [M, outF]:
 *
 *   forward   y  += scale · (dropout(x) · Aᵀ) · Bᵀ        A: [r, inF], B: [outF, r]  (PEFT layout)
 *   backward  dB += scale · dYᵀ · h                        h = dropout(x) · Aᵀ   [M, r]
 *             dA += (scale · dY · B)ᵀ · dropout(x)
 *             dx += dropout'(scale · dY · B · A)           (same mask, same 1/(1-p))
 *
 * Public API (all buffers f32, row-major, from the pool; every call only records dispatches):
 *
 *   loraForward(gpu, shaders, { x, a, b, y, M, inF, outF, r, scale, dropout, h? })
 *   loraBackward(gpu, shaders, { x, a, b, dy, dA, dB, dx?, M, inF, outF, r, scale, dropout, h? })
 *   loraScale(alpha, r, useRsLora)       alpha / r (PEFT), or alpha / √r (rsLoRA)
 *
 * `shaders`: the registry's `lora` and `matmul` entries (workers/kernels/shader-sources.ts).
 * `dropout` = { p, seed, step, layer } or null: the mask comes from a counter-based hash of
 * (seed, step, layer, element index of x), so backward regenerates it from x without storing
 * it; kept elements are scaled by 1/(1-p) like torch.nn.Dropout. Use a different `layer`
 * number for every adapted module. `h` (optional, [M, r]) lets forward keep dropout(x)·Aᵀ for
 * backward; without it backward recomputes it. Gradients accumulate (+=) so micro-batches
 * add up; zero dA/dB at the start of an optimizer step. `dx`, when given, is accumulated
 * into (the base layer's input gradient is usually written there first).
 *
 * The CPU twins (`loraForwardCpu`, `loraBackwardCpu`, `dropoutMaskCpu`) have the same
 * semantics and work in float64 when given Float64Arrays (used for finite differences).
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { matmul } from './matmul';
import type { KernelShaders } from './shaders';

export type LoraShaders = Pick<KernelShaders, 'lora' | 'matmul'>;

export interface LoraDropout {
  /** Drop probability in [0, 1). */
  p: number;
  seed: number;
  /** Optimizer step (or any counter that changes between steps). */
  step: number;
  /** Index of the adapted module (distinct per layer and projection). */
  layer: number;
}

export interface LoraDims {
  M: number;
  inF: number;
  outF: number;
  r: number;
  /** alpha / r, or alpha / √r with rsLoRA: see `loraScale`. */
  scale: number;
  dropout: LoraDropout | null;
}

export interface LoraForwardSpec extends LoraDims {
  x: GpuBuffer;
  a: GpuBuffer;
  b: GpuBuffer;
  /** Accumulated into: y += scale · (dropout(x)·Aᵀ)·Bᵀ. */
  y: GpuBuffer;
  /** Optional [M, r] output receiving dropout(x)·Aᵀ, for backward. */
  h?: GpuBuffer;
}

export interface LoraBackwardSpec extends LoraDims {
  x: GpuBuffer;
  a: GpuBuffer;
  b: GpuBuffer;
  dy: GpuBuffer;
  /** [r, inF], accumulated into. */
  dA: GpuBuffer;
  /** [outF, r], accumulated into. */
  dB: GpuBuffer;
  /** [M, inF], accumulated into when given. */
  dx?: GpuBuffer;
  /** dropout(x)·Aᵀ kept by forward; recomputed when absent. */
  h?: GpuBuffer;
}

/** PEFT's scaling: alpha / r, or alpha / √r with use_rslora. */
export function loraScale(alpha: number, r: number, useRsLora = false): number {
  return useRsLora ? alpha / Math.sqrt(r) : alpha / r;
}

const WG = 256;

/** PCG's output permutation (RXS-M-XS) on 32-bit words: the hash behind the dropout mask. */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The per-dispatch constants of the mask: key from (seed, step, layer), threshold and scale from p. */
export function dropoutParams(d: LoraDropout): { key: number; threshold: number; keepScale: number } {
  if (!(d.p >= 0 && d.p < 1)) throw new RangeError(`LoRA dropout p = ${d.p}; it must be in [0, 1)`);
  const key = pcgHash((d.layer ^ pcgHash((d.step ^ pcgHash(d.seed >>> 0)) >>> 0)) >>> 0);
  return { key, threshold: Math.round(d.p * 16777216), keepScale: Math.fround(1 / (1 - d.p)) };
}

/** Whether element `i` is kept (same test as the shader). */
export function dropoutKeeps(i: number, key: number, threshold: number): boolean {
  const h = pcgHash((pcgHash((i ^ key) >>> 0) + key) >>> 0);
  return h >>> 8 >= threshold;
}

/** The multiplier of every element of x: 0 when dropped, 1/(1-p) when kept. */
export function dropoutMaskCpu(count: number, d: LoraDropout): Float32Array {
  const { key, threshold, keepScale } = dropoutParams(d);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = dropoutKeeps(i, key, threshold) ? keepScale : 0;
  return out;
}

const active = (d: LoraDropout | null): d is LoraDropout => d !== null && d.p > 0;

/** dst = (accumulate ? dst : 0) + mask · src on the GPU (the shader's `dropout` entry point). */
export function dropoutGpu(gpu: Gpu, code: string, src: GpuBuffer, dst: GpuBuffer, count: number, d: LoraDropout, accumulate: boolean): void {
  const { key, threshold, keepScale } = dropoutParams(d);
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'dropout', { ACCUMULATE: accumulate ? 1 : 0, WG }),
    bindings: [src, dst, gpu.uniform([count, key, threshold, keepScale], 'uuuf')],
    workgroups: gpu.grid(Math.ceil(count / WG)),
    label: 'lora-dropout',
  });
}

function checkDims(s: LoraDims, where: string): void {
  for (const k of ['M', 'inF', 'outF', 'r'] as const) {
    if (!Number.isInteger(s[k]) || s[k] <= 0) throw new RangeError(`${where}: ${k} = ${s[k]} must be a positive integer`);
  }
}

/** dropout(x) into a scratch buffer, or x itself when there is no dropout. */
function droppedInput(gpu: Gpu, shaders: LoraShaders, x: GpuBuffer, s: LoraDims): { xd: GpuBuffer; temp: GpuBuffer | null } {
  if (!active(s.dropout)) return { xd: x, temp: null };
  const xd = gpu.alloc(s.M * s.inF * 4, 'scratch', 'lora-xd');
  dropoutGpu(gpu, shaders.lora, x, xd, s.M * s.inF, s.dropout, false);
  return { xd, temp: xd };
}

/** y += scale · (dropout(x)·Aᵀ)·Bᵀ. */
export function loraForward(gpu: Gpu, shaders: LoraShaders, s: LoraForwardSpec): void {
  checkDims(s, 'loraForward');
  const { xd, temp } = droppedInput(gpu, shaders, s.x, s);
  const h = s.h ?? gpu.alloc(s.M * s.r * 4, 'scratch', 'lora-h');
  matmul(gpu, shaders.matmul, { a: xd, b: s.a, c: h, M: s.M, N: s.r, K: s.inF, transB: true });
  matmul(gpu, shaders.matmul, { a: h, b: s.b, c: s.y, M: s.M, N: s.outF, K: s.r, transB: true, alpha: s.scale, beta: 1 });
  if (!s.h) gpu.release(h);
  gpu.release(temp);
}

/** dA += …, dB += …, dx += … (see the module comment). */
export function loraBackward(gpu: Gpu, shaders: LoraShaders, s: LoraBackwardSpec): void {
  checkDims(s, 'loraBackward');
  const { M, inF, outF, r } = s;
  const { xd, temp } = droppedInput(gpu, shaders, s.x, s);
  let h = s.h;
  if (!h) {
    h = gpu.alloc(M * r * 4, 'scratch', 'lora-h');
    matmul(gpu, shaders.matmul, { a: xd, b: s.a, c: h, M, N: r, K: inF, transB: true });
  }
  // dh = scale · dY · B   [M, r]
  const dh = gpu.alloc(M * r * 4, 'scratch', 'lora-dh');
  matmul(gpu, shaders.matmul, { a: s.dy, b: s.b, c: dh, M, N: r, K: outF, alpha: s.scale });
  // dB += scale · dYᵀ · h   [outF, r]
  matmul(gpu, shaders.matmul, { a: s.dy, b: h, c: s.dB, M: outF, N: r, K: M, transA: true, alpha: s.scale, beta: 1 });
  // dA += dhᵀ · dropout(x)   [r, inF]
  matmul(gpu, shaders.matmul, { a: dh, b: xd, c: s.dA, M: r, N: inF, K: M, transA: true, beta: 1 });
  if (s.dx) {
    if (active(s.dropout)) {
      const dxd = gpu.alloc(M * inF * 4, 'scratch', 'lora-dxd');
      matmul(gpu, shaders.matmul, { a: dh, b: s.a, c: dxd, M, N: inF, K: r });
      dropoutGpu(gpu, shaders.lora, dxd, s.dx, M * inF, s.dropout, true);
      gpu.release(dxd);
    } else {
      matmul(gpu, shaders.matmul, { a: dh, b: s.a, c: s.dx, M, N: inF, K: r, beta: 1 });
    }
  }
  gpu.release(dh, temp);
  if (!s.h) gpu.release(h);
}

type Vec = Float32Array | Float64Array;

function droppedCpu(x: Vec, s: LoraDims): Vec {
  if (!active(s.dropout)) return x;
  const mask = dropoutMaskCpu(s.M * s.inF, s.dropout);
  const out = new (x.constructor as { new (n: number): Vec })(x.length);
  for (let i = 0; i < out.length; i++) out[i] = x[i] * mask[i];
  return out;
}

function hiddenCpu(xd: Vec, a: Vec, s: LoraDims): Float64Array {
  const h = new Float64Array(s.M * s.r);
  for (let m = 0; m < s.M; m++) {
    for (let j = 0; j < s.r; j++) {
      let acc = 0;
      for (let k = 0; k < s.inF; k++) acc += xd[m * s.inF + k] * a[j * s.inF + k];
      h[m * s.r + j] = acc;
    }
  }
  return h;
}

/** CPU reference of `loraForward` (float64 accumulation; y's own precision for the result). */
export function loraForwardCpu(x: Vec, a: Vec, b: Vec, y: Vec, s: LoraDims): void {
  const h = hiddenCpu(droppedCpu(x, s), a, s);
  for (let m = 0; m < s.M; m++) {
    for (let o = 0; o < s.outF; o++) {
      let acc = 0;
      for (let j = 0; j < s.r; j++) acc += h[m * s.r + j] * b[o * s.r + j];
      y[m * s.outF + o] += s.scale * acc;
    }
  }
}

/** CPU reference of `loraBackward` (accumulates into dA, dB and dx when given). */
export function loraBackwardCpu(x: Vec, a: Vec, b: Vec, dy: Vec, dA: Vec, dB: Vec, dx: Vec | null, s: LoraDims): void {
  const { M, inF, outF, r, scale } = s;
  const xd = droppedCpu(x, s);
  const h = hiddenCpu(xd, a, s);
  const dh = new Float64Array(M * r);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < r; j++) {
      let acc = 0;
      for (let o = 0; o < outF; o++) acc += dy[m * outF + o] * b[o * r + j];
      dh[m * r + j] = scale * acc;
    }
  }
  for (let o = 0; o < outF; o++) {
    for (let j = 0; j < r; j++) {
      let acc = 0;
      for (let m = 0; m < M; m++) acc += dy[m * outF + o] * h[m * r + j];
      dB[o * r + j] += scale * acc;
    }
  }
  for (let j = 0; j < r; j++) {
    for (let k = 0; k < inF; k++) {
      let acc = 0;
      for (let m = 0; m < M; m++) acc += dh[m * r + j] * xd[m * inF + k];
      dA[j * inF + k] += acc;
    }
  }
  if (!dx) return;
  const mask = active(s.dropout) ? dropoutMaskCpu(M * inF, s.dropout) : null;
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < inF; k++) {
      let acc = 0;
      for (let j = 0; j < r; j++) acc += dh[m * r + j] * a[j * inF + k];
      dx[m * inF + k] += mask ? acc * mask[m * inF + k] : acc;
    }
  }
}
