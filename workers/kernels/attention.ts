/**
 * Causal attention with a key padding mask (memory-efficient: online softmax forward, the
 * backward recomputes probabilities from the saved log-sum-exp; no T×T buffer). Supports
 * multi-head, grouped and multi-query K/V, and strided head layouts (fused QKV rows, KV caches).
 */
import type { Binding, Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export const MAX_HEAD_DIM = 128;

/** Where the heads of one tensor sit: `stride` floats per token row, the first head at `off`. */
export interface HeadLayout {
  buf: GpuBuffer;
  stride: number;
  off?: number;
}

export interface AttentionShape {
  batch: number;
  /** Query rows per sequence; query i has position posOffset + i. */
  tq: number;
  /** Key rows per sequence (positions 0..tk-1). */
  tk: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  posOffset?: number;
  /** [batch, tk] i32, 1 = real key; omitted = all real. */
  mask?: GpuBuffer;
  /** Defaults to 1/sqrt(headDim). */
  scale?: number;
}

function params(gpu: Gpu, s: AttentionShape, q: HeadLayout, k: HeadLayout, v: HeadLayout, o: HeadLayout, dk?: HeadLayout, dv?: HeadLayout): Binding {
  if (s.headDim > MAX_HEAD_DIM) throw new RangeError(`attention: head_dim ${s.headDim} exceeds ${MAX_HEAD_DIM}`);
  if (s.heads % s.kvHeads !== 0) throw new RangeError(`attention: ${s.heads} heads are not a multiple of ${s.kvHeads} K/V heads`);
  const scale = s.scale ?? 1 / Math.sqrt(s.headDim);
  return gpu.uniform(
    [
      s.batch, s.tq, s.tk, s.heads,
      s.kvHeads, s.headDim, q.stride, q.off ?? 0,
      k.stride, k.off ?? 0, v.stride, v.off ?? 0,
      o.stride, o.off ?? 0, s.posOffset ?? 0, s.mask ? 1 : 0,
      scale, dk?.stride ?? 0, dk?.off ?? 0, dv?.stride ?? 0,
      dv?.off ?? 0, 0, 0, 0,
    ],
    'uuuuuuuuuuuuuuuufuuuuuuu',
  );
}

export interface AttentionForwardSpec extends AttentionShape {
  q: HeadLayout;
  k: HeadLayout;
  v: HeadLayout;
  o: HeadLayout;
  /** [batch · heads · tq · 2] f32: log-sum-exp (and later the backward's dO·O). */
  stats: GpuBuffer;
}

export function attentionForward(gpu: Gpu, code: string, s: AttentionForwardSpec): void {
  const p = params(gpu, s, s.q, s.k, s.v, s.o);
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'forward'),
    bindings: [s.q.buf, s.k.buf, s.v.buf, s.mask ?? gpu.dummy, s.o.buf, s.stats, p],
    workgroups: gpu.grid(Math.ceil((s.batch * s.heads * s.tq) / 64)),
    label: 'attention_fwd',
  });
}

export interface AttentionBackwardSpec extends AttentionForwardSpec {
  /** Gradient of the output, in O's layout. */
  dO: GpuBuffer;
  /** dQ is written in Q's layout into this buffer. */
  dq: GpuBuffer;
  /** dK and dV go into one buffer (may be the dq buffer's sibling slices of a fused layout). */
  dkv: GpuBuffer;
  dk: Omit<HeadLayout, 'buf'>;
  dv: Omit<HeadLayout, 'buf'>;
}

export function attentionBackward(gpu: Gpu, code: string, s: AttentionBackwardSpec): void {
  const rowsQ = s.batch * s.heads * s.tq;
  const dk = { buf: s.dkv, ...s.dk };
  const dv = { buf: s.dkv, ...s.dv };
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward_prep'),
    bindings: [s.o.buf, s.dO, s.stats, params(gpu, s, s.q, s.k, s.v, s.o)],
    workgroups: gpu.grid(Math.ceil(rowsQ / 64)),
    label: 'attention_bwd_prep',
  });
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward_dq'),
    bindings: [s.q.buf, s.k.buf, s.v.buf, s.dO, s.stats, s.mask ?? gpu.dummy, s.dq, params(gpu, s, s.q, s.k, s.v, s.o)],
    workgroups: gpu.grid(Math.ceil(rowsQ / 64)),
    label: 'attention_bwd_dq',
  });
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward_dkv'),
    bindings: [s.q.buf, s.k.buf, s.v.buf, s.dO, s.stats, s.mask ?? gpu.dummy, s.dkv, params(gpu, s, s.q, s.k, s.v, s.o, dk, dv)],
    workgroups: gpu.grid(Math.ceil((s.batch * s.kvHeads * s.tk) / 64)),
    label: 'attention_bwd_dkv',
  });
}

/** Dense CPU tensors for the reference: q [B, tq, H, D], k/v [B, tk, KVH, D], mask [B, tk]. */
export interface AttentionCpuInput {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  mask?: ArrayLike<number>;
}

type CpuShape = Omit<AttentionShape, 'mask'>;

function probabilities(x: AttentionCpuInput, s: CpuShape, b: number, h: number, i: number): Float64Array {
  const { tq, tk, heads, kvHeads, headDim: D } = s;
  const g = Math.floor(h / (heads / kvHeads));
  const scale = s.scale ?? 1 / Math.sqrt(D);
  const p = new Float64Array(tk);
  let m = -Infinity;
  const last = Math.min(tk, (s.posOffset ?? 0) + i + 1);
  for (let j = 0; j < last; j++) {
    if (x.mask && x.mask[b * tk + j] === 0) continue;
    let dot = 0;
    for (let d = 0; d < D; d++) dot += x.q[((b * tq + i) * heads + h) * D + d] * x.k[((b * tk + j) * kvHeads + g) * D + d];
    p[j] = dot * scale;
    m = Math.max(m, p[j]);
  }
  let sum = 0;
  for (let j = 0; j < tk; j++) {
    const visible = j < last && !(x.mask && x.mask[b * tk + j] === 0);
    p[j] = visible ? Math.exp(p[j] - m) : 0;
    sum += p[j];
  }
  for (let j = 0; j < tk; j++) p[j] = sum > 0 ? p[j] / sum : 0;
  return p;
}

/** CPU reference forward in float64: o [B, tq, H, D]. */
export function attentionCpu(x: AttentionCpuInput, s: CpuShape): Float64Array {
  const { batch, tq, tk, heads, kvHeads, headDim: D } = s;
  const o = new Float64Array(batch * tq * heads * D);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      for (let i = 0; i < tq; i++) {
        const p = probabilities(x, s, b, h, i);
        for (let j = 0; j < tk; j++)
          for (let d = 0; d < D; d++) o[((b * tq + i) * heads + h) * D + d] += p[j] * x.v[((b * tk + j) * kvHeads + g) * D + d];
      }
    }
  return o;
}

/** CPU reference backward in float64 (dense softmax Jacobian). */
export function attentionBackwardCpu(x: AttentionCpuInput, dO: ArrayLike<number>, s: CpuShape): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { batch, tq, tk, heads, kvHeads, headDim: D } = s;
  const scale = s.scale ?? 1 / Math.sqrt(D);
  const dq = new Float64Array(batch * tq * heads * D);
  const dk = new Float64Array(batch * tk * kvHeads * D);
  const dv = new Float64Array(batch * tk * kvHeads * D);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      for (let i = 0; i < tq; i++) {
        const p = probabilities(x, s, b, h, i);
        const oi = (b * tq + i) * heads + h;
        const dp = new Float64Array(tk);
        let dot = 0;
        for (let j = 0; j < tk; j++) {
          const kj = (b * tk + j) * kvHeads + g;
          for (let d = 0; d < D; d++) dp[j] += dO[oi * D + d] * x.v[kj * D + d];
          dot += p[j] * dp[j];
        }
        for (let j = 0; j < tk; j++) {
          if (p[j] === 0) continue;
          const kj = (b * tk + j) * kvHeads + g;
          const ds = p[j] * (dp[j] - dot) * scale;
          for (let d = 0; d < D; d++) {
            dq[oi * D + d] += ds * x.k[kj * D + d];
            dk[kj * D + d] += ds * x.q[oi * D + d];
            dv[kj * D + d] += p[j] * dO[oi * D + d];
          }
        }
      }
    }
  return { dq, dk, dv };
}
