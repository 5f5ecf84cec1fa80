/**
 * Causal self-attention with rotary positions, as every family's block uses it: q, k and v from
 * three linear layers (roles `q`, `k`, `v`) or one fused layer (role `qkv`, rows laid out as all
 * query heads, then the key heads, then the value heads), rotary on q and k, grouped K/V heads.
 * The output projection belongs to the block (its name differs between families).
 */
import type { GpuBuffer, MemoryCategory } from '../../gpu/pool';
import { attentionBackward, attentionForward, type HeadLayout } from '../../kernels/attention';
import { copyRows } from '../../kernels/elementwise';
import type { KvCache, LayerKit, LayerWeights, LoraKeep, RunContext } from '../layer-kit';

export interface AttentionSaved {
  /** The projections' outputs (q, k, v after rotary) by role. */
  proj: Map<string, GpuBuffer>;
  /** [rows, heads · headDim] attention output, before the output projection. */
  o: GpuBuffer;
  stats: GpuBuffer;
}

const SEPARATE = ['q', 'k', 'v'] as const;

function isFused(layer: LayerWeights): boolean {
  return layer.linears.has('qkv');
}

function projectQkv(k: LayerKit, layer: LayerWeights, h: GpuBuffer, rows: number, ctx: RunContext, keep: LoraKeep | undefined, category: MemoryCategory): Map<string, GpuBuffer> {
  const proj = new Map<string, GpuBuffer>();
  for (const role of isFused(layer) ? ['qkv'] : SEPARATE) proj.set(role, k.project(k.entry(layer, role), h, rows, ctx, category, keep));
  return proj;
}

/** Head layouts of q, k, v inside the projection buffers. */
function qkvLayouts(k: LayerKit, proj: Map<string, GpuBuffer>): { q: HeadLayout; k: HeadLayout; v: HeadLayout } {
  const { heads: H, kvHeads: KVH, headDim: D } = k.config;
  const fused = proj.get('qkv');
  if (fused) {
    const stride = (H + 2 * KVH) * D;
    return { q: { buf: fused, stride, off: 0 }, k: { buf: fused, stride, off: H * D }, v: { buf: fused, stride, off: (H + KVH) * D } };
  }
  return { q: { buf: proj.get('q')!, stride: H * D }, k: { buf: proj.get('k')!, stride: KVH * D }, v: { buf: proj.get('v')!, stride: KVH * D } };
}

/** Attention over the normed input `h` of `ctx.rows` tokens; buffers of `category` (activations when kept for backward). */
export function selfAttentionForward(k: LayerKit, layer: LayerWeights, h: GpuBuffer, ctx: RunContext, keep: LoraKeep | undefined, category: MemoryCategory): AttentionSaved {
  const c = k.config;
  const { rows } = ctx;
  const proj = projectQkv(k, layer, h, rows, ctx, keep, category);
  const lay = qkvLayouts(k, proj);
  k.applyRotary(lay, rows, ctx.seq, 0, false);
  const o = k.gpu.alloc(rows * c.heads * c.headDim * 4, category, 'attn.out');
  const stats = k.gpu.alloc(ctx.batch * c.heads * ctx.seq * 8, category, 'attn.stats');
  attentionForward(k.gpu, k.shaders.attention, {
    ...k.attnShape(ctx.batch, ctx.seq, ctx.seq, 0, ctx.mask),
    ...lay,
    o: { buf: o, stride: c.heads * c.headDim },
    stats,
  });
  return { proj, o, stats };
}

/** Given d(attention output) `dO`, adds d(h) into `dh` and the q/k/v LoRA gradients. */
export function selfAttentionBackward(k: LayerKit, layer: LayerWeights, h: GpuBuffer, dO: GpuBuffer, dh: GpuBuffer, ctx: RunContext, saved: AttentionSaved, kept: LoraKeep): void {
  const gpu = k.gpu;
  const c = k.config;
  const { rows } = ctx;
  const D = c.headDim;
  const lay = qkvLayouts(k, saved.proj);
  const shape = { ...k.attnShape(ctx.batch, ctx.seq, ctx.seq, 0, ctx.mask), ...lay, o: { buf: saved.o, stride: c.heads * D }, stats: saved.stats, dO };
  if (isFused(layer)) {
    const e = k.entry(layer, 'qkv');
    const dqkv = gpu.alloc(rows * e.spec.outFeatures * 4, 'scratch', 'attn.dqkv');
    attentionBackward(gpu, k.shaders.attention, { ...shape, dq: dqkv, dkv: dqkv, dk: { stride: lay.k.stride, off: lay.k.off }, dv: { stride: lay.v.stride, off: lay.v.off } });
    k.applyRotary({ q: { ...lay.q, buf: dqkv }, k: { ...lay.k, buf: dqkv } }, rows, ctx.seq, 0, true);
    k.linearBackward(e, h, dqkv, dh, rows, true, ctx, kept);
    gpu.release(dqkv);
    return;
  }
  const kvWidth = c.kvHeads * D;
  const dq = gpu.alloc(rows * c.heads * D * 4, 'scratch', 'attn.dq');
  const dkv = gpu.alloc(2 * rows * kvWidth * 4, 'scratch', 'attn.dkv');
  attentionBackward(gpu, k.shaders.attention, { ...shape, dq, dkv, dk: { stride: kvWidth, off: 0 }, dv: { stride: kvWidth, off: rows * kvWidth } });
  k.applyRotary({ q: { buf: dq, stride: c.heads * D }, k: { buf: dkv, stride: kvWidth } }, rows, ctx.seq, 0, true);
  const dv = gpu.alloc(rows * kvWidth * 4, 'scratch', 'attn.dv');
  gpu.copy(dkv, rows * kvWidth * 4, dv, 0, rows * kvWidth * 4);
  k.linearBackward(k.entry(layer, 'q'), h, dq, dh, rows, true, ctx, kept);
  k.linearBackward(k.entry(layer, 'k'), h, dkv, dh, rows, true, ctx, kept);
  k.linearBackward(k.entry(layer, 'v'), h, dv, dh, rows, true, ctx, kept);
  gpu.release(dq, dkv, dv);
}

/** `n` new tokens at positions pos..: appends their keys and values to the cache and attends over all of it (scratch buffers). */
export function selfAttentionDecode(k: LayerKit, layer: LayerWeights, h: GpuBuffer, n: number, pos: number, cache: KvCache, ctx: RunContext): AttentionSaved {
  const gpu = k.gpu;
  const c = k.config;
  const D = c.headDim;
  const kvWidth = c.kvHeads * D;
  const proj = projectQkv(k, layer, h, n, ctx, undefined, 'scratch');
  const lay = qkvLayouts(k, proj);
  k.applyRotary(lay, n, n, pos, false);
  // Append the new keys (after rotary) and values to the cache rows pos..pos+n-1.
  for (const [src, dst] of [
    [lay.k, cache.k],
    [lay.v, cache.v],
  ] as const) {
    copyRows(gpu, k.shaders.elementwise, { src: src.buf, dst, rows: n, cols: kvWidth, srcStride: src.stride, srcOff: src.off ?? 0, dstStride: kvWidth, dstOff: pos * kvWidth });
  }
  const o = gpu.alloc(n * c.heads * D * 4, 'scratch', 'attn.out');
  const stats = gpu.alloc(c.heads * n * 8, 'scratch', 'attn.stats');
  attentionForward(gpu, k.shaders.attention, {
    ...k.attnShape(1, n, pos + n, pos, null),
    q: lay.q,
    k: { buf: cache.k, stride: kvWidth },
    v: { buf: cache.v, stride: kvWidth },
    o: { buf: o, stride: c.heads * D },
    stats,
  });
  return { proj, o, stats };
}

export function releaseAttention(k: LayerKit, s: AttentionSaved): void {
  k.gpu.release(...s.proj.values(), s.o, s.stats);
}
