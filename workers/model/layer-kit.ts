/**
 * What a family's block is written with: its layer's weights, the run it is part of, and the
 * operations that need the model's shared state (LoRA-aware linear layers, norms, rotary tables,
 * attention shapes). The causal LM owns one kit and hands it to every block call, so a block
 * module holds no state of its own.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer, MemoryCategory } from '../gpu/pool';
import { loraBackward, loraForward, loraScale, type LoraDropout } from '../kernels/lora';
import { layerNormBackward, layerNormForward } from '../kernels/layernorm';
import { rmsNormBackward, rmsNormForward } from '../kernels/rmsnorm';
import { rotary } from '../kernels/rotary';
import type { HeadLayout } from '../kernels/attention';
import type { ModelConfig } from './config';
import type { LinearRole, LinearSpec, NormSpec } from './architecture';
import type { FrozenLinear } from './frozen-linear';
import type { LoraModule } from './lora-adapter';
import type { ModelShaders } from '../kernels/shaders';
import type { LoraSettings } from './types';

export interface LinearEntry {
  spec: LinearSpec;
  base: FrozenLinear;
  lora: LoraModule | null;
}

export interface NormWeights {
  spec: NormSpec;
  weight: GpuBuffer;
  /** LayerNorm's bias; null for RMSNorm. */
  bias: GpuBuffer | null;
}

/** One decoder layer's frozen weights and adapters, by role. */
export interface LayerWeights {
  index: number;
  norms: Map<string, NormWeights>;
  linears: Map<LinearRole, LinearEntry>;
}

export interface RunContext {
  batch: number;
  seq: number;
  rows: number;
  mask: GpuBuffer | null;
  noLora: boolean;
  dropout: { seed: number; step: number } | null;
}

/** One layer's keys and values (after rotary), [positions, kvHeads · headDim] each. */
export interface KvCache {
  k: GpuBuffer;
  v: GpuBuffer;
}

/** LoRA inputs kept for backward (dropout(x)·Aᵀ), by linear role. */
export type LoraKeep = Map<LinearRole, GpuBuffer>;

/** A norm's output and the per-row statistics its backward reads. */
export interface NormOutput {
  y: GpuBuffer;
  stats: GpuBuffer;
}

export class LayerKit {
  constructor(
    readonly gpu: Gpu,
    readonly shaders: ModelShaders,
    readonly config: ModelConfig,
    readonly rope: { cos: GpuBuffer; sin: GpuBuffer; positions: number },
    private readonly loraSettings: LoraSettings | null,
  ) {}

  private get loraScaleValue(): number {
    const s = this.loraSettings;
    return s ? loraScale(s.alpha, s.r, s.useRslora) : 0;
  }

  private dropoutOf(m: LoraModule, ctx: RunContext): LoraDropout | null {
    const p = this.loraSettings?.dropout ?? 0;
    if (p <= 0 || !ctx.dropout) return null;
    return { p, seed: ctx.dropout.seed, step: ctx.dropout.step, layer: m.index };
  }

  private loraDims(m: LoraModule, M: number, ctx: RunContext) {
    return { M, inF: m.spec.inFeatures, outF: m.spec.outFeatures, r: m.a.shape[0], scale: this.loraScaleValue, dropout: this.dropoutOf(m, ctx) };
  }

  entry(layer: LayerWeights, role: LinearRole): LinearEntry {
    const e = layer.linears.get(role);
    if (!e) throw new Error(`layer ${layer.index} has no linear layer of role "${role}"`);
    return e;
  }

  norm(layer: LayerWeights, role: string): NormWeights {
    const n = layer.norms.get(role);
    if (!n) throw new Error(`layer ${layer.index} has no norm of role "${role}"`);
    return n;
  }

  /** y (+)= base(x) + LoRA(x); keeps dropout(x)·Aᵀ in `keep` when given. */
  linearForward(e: LinearEntry, x: GpuBuffer, y: GpuBuffer, M: number, accumulate: boolean, ctx: RunContext, keep?: LoraKeep): void {
    e.base.forward(x, y, M, accumulate);
    if (!e.lora || ctx.noLora) return;
    const m = e.lora;
    const h = keep ? this.gpu.alloc(M * m.a.shape[0] * 4, 'activations', `${m.spec.path}.lora_h`) : undefined;
    if (h) keep!.set(e.spec.role, h);
    loraForward(this.gpu, this.shaders, { x, a: m.a.weight, b: m.b.weight, y, h, ...this.loraDims(m, M, ctx) });
  }

  /** dx (+)= dy·W + LoRA input gradient; adds the LoRA weight gradients. `kept` is what forward kept. */
  linearBackward(e: LinearEntry, x: GpuBuffer, dy: GpuBuffer, dx: GpuBuffer, M: number, accumulate: boolean, ctx: RunContext, kept: LoraKeep): void {
    e.base.backwardData(dy, dx, M, accumulate);
    if (!e.lora || ctx.noLora) return;
    const m = e.lora;
    loraBackward(this.gpu, this.shaders, { x, a: m.a.weight, b: m.b.weight, dy, dA: m.a.grad, dB: m.b.grad, dx, h: kept.get(e.spec.role), ...this.loraDims(m, M, ctx) });
  }

  /** A linear layer's output in a new [rows, out] buffer. */
  project(e: LinearEntry, x: GpuBuffer, rows: number, ctx: RunContext, category: MemoryCategory, keep?: LoraKeep): GpuBuffer {
    const y = this.gpu.alloc(rows * e.spec.outFeatures * 4, category, `${e.spec.path}.out`);
    this.linearForward(e, x, y, rows, false, ctx, keep);
    return y;
  }

  /** The norm of `x` into new buffers of `category`. */
  normForward(n: NormWeights, x: GpuBuffer, rows: number, category: MemoryCategory, label = 'ln'): NormOutput {
    const c = this.config;
    const y = this.gpu.alloc(rows * c.hidden * 4, category, `${label}.out`);
    // LayerNorm keeps mean and 1/std per row, RMSNorm 1/rms.
    const rms = n.spec.kind === 'rmsnorm';
    const stats = this.gpu.alloc(rows * (rms ? 4 : 8), category, `${label}.stats`);
    if (rms) rmsNormForward(this.gpu, this.shaders.rmsnorm, { x, weight: n.weight, y, stats, rows, cols: c.hidden, eps: c.layerNormEps });
    else layerNormForward(this.gpu, this.shaders.layernorm, { x, weight: n.weight, bias: n.bias!, y, stats, rows, cols: c.hidden, eps: c.layerNormEps });
    return { y, stats };
  }

  /** dx (+)= d(norm)/dx · dy. */
  normBackward(n: NormWeights, x: GpuBuffer, stats: GpuBuffer, dy: GpuBuffer, dx: GpuBuffer, rows: number, accumulate: boolean): void {
    const spec = { x, weight: n.weight, stats, dy, dx, rows, cols: this.config.hidden, accumulate };
    if (n.spec.kind === 'rmsnorm') rmsNormBackward(this.gpu, this.shaders.rmsnorm, spec);
    else layerNormBackward(this.gpu, this.shaders.layernorm, spec);
  }

  /** Rotates q and k (or, `backward`, their gradients) in place. */
  applyRotary(l: { q: HeadLayout; k: HeadLayout }, rows: number, seq: number, posOffset: number, backward: boolean): void {
    const c = this.config;
    const common = { cos: this.rope.cos, sin: this.rope.sin, rows, seq, headDim: c.headDim, rotDim: c.rotaryDim, posOffset, backward };
    rotary(this.gpu, this.shaders.rotary, { x: l.q.buf, heads: c.heads, stride: l.q.stride, off: l.q.off, ...common });
    rotary(this.gpu, this.shaders.rotary, { x: l.k.buf, heads: c.kvHeads, stride: l.k.stride, off: l.k.off, ...common });
  }

  attnShape(batch: number, tq: number, tk: number, posOffset: number, mask: GpuBuffer | null) {
    const c = this.config;
    return { batch, tq, tk, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, posOffset, mask: mask ?? undefined };
  }
}
