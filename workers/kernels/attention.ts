/**
 * Causal attention with a key padding mask, tiled like flash attention (online softmax forward,
 * the backward recomputes probabilities from the saved log-sum-exp; no T×T buffer). Supports
 * multi-head, grouped and multi-query K/V, and strided head layouts (fused QKV rows, KV caches).
 * A few query rows per K/V head (decoding) get a thread per key, and a long cache is split into
 * chunks over more workgroups, merged by a second pass; dK/dV of a K/V head shared by many query
 * heads are summed per slice of heads and then across slices. The plans below say which path a
 * shape takes.
 */
import type { Binding, Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { requirePositiveIntegers } from '../util/dims';

export const MAX_HEAD_DIM = 128;

/** Written as the log-sum-exp of a query row that sees no key (the shader's NO_KEY). */
export const NO_KEY_LSE = 3e38;

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

type PlanShape = Omit<AttentionShape, 'mask'>;

/**
 * A workgroup holds `rows` rows (query rows, or keys for dK/dV) with `parts` threads each (a
 * thread keeps every parts-th head element), and stages `tile` keys (query rows for dK/dV) at a
 * time in workgroup memory. The shader's MAX_DP and MAX_TILE bound headDim / parts and tile.
 * The forward's 'keys' kernel has one thread per key of a 64-key tile (parts 1) and at most 8 rows.
 */
export interface Tiling {
  rows: number;
  parts: number;
  tile: number;
}

/**
 * 'tiles': blocks of 16 query rows share each staged K/V tile (training, prefill, multi-query
 * decoding). 'keys': a thread per key, for a block of at most 8 query rows (a few rows per K/V
 * head, i.e. decoding, where a staged tile would serve one row).
 */
export type ForwardKernel = 'tiles' | 'keys';

const FORWARD_TILES: Tiling = { rows: 16, parts: 4, tile: 16 };
const MAX_FEW_ROWS = 8;
const FEW_KEYS = 64;
/** Backward tiles: 16 keys (query rows for dK/dV) where two staged tiles fit, else 8. */
const BACKWARD_WIDE: Tiling = { rows: 16, parts: 4, tile: 16 };
const BACKWARD_NARROW: Tiling = { rows: 16, parts: 4, tile: 8 };
/** Workgroup memory every WebGPU device has (maxComputeWorkgroupStorageSize's default). */
export const BASELINE_WORKGROUP_BYTES = 16384;

/** Below this many workgroups a dispatch leaves a large GPU mostly idle: split the work further. */
const TARGET_WORKGROUPS = 256;
/** Query rows per sequence up to which the forward may split the keys into chunks (decoding). */
const MAX_SPLIT_QUERIES = 4;

export interface ForwardPlan {
  kernel: ForwardKernel;
  tiling: Tiling;
  /** Key chunks per query block; 1 = no split, no second pass. */
  chunks: number;
  /** Keys per chunk, a multiple of the tile. */
  chunkKeys: number;
}

export interface BackwardPlan {
  /** The tiles of both backward kernels (dQ over query rows, dK/dV over keys). */
  tiling: Tiling;
  /** Query heads per dK/dV slice; a K/V head's group of heads is cut into `slices` of them. */
  sliceHeads: number;
  slices: number;
}

const group = (s: PlanShape) => s.heads / s.kvHeads;
const queryBlocks = (s: PlanShape, t: Tiling) => s.batch * s.kvHeads * Math.ceil((group(s) * s.tq) / t.rows);
/** Keys the last query row sees. */
const visibleKeys = (s: PlanShape) => Math.min(s.tk, (s.posOffset ?? 0) + s.tq);

function forwardTiling(s: PlanShape, kernel: ForwardKernel): Tiling {
  if (kernel === 'tiles') return FORWARD_TILES;
  const rows = Math.min(MAX_FEW_ROWS, group(s) * s.tq);
  return { rows: 2 ** Math.ceil(Math.log2(rows)), parts: 1, tile: FEW_KEYS };
}

export function forwardPlan(s: PlanShape): ForwardPlan {
  const kernel: ForwardKernel = group(s) * s.tq <= MAX_FEW_ROWS ? 'keys' : 'tiles';
  const tiling = forwardTiling(s, kernel);
  const blocks = queryBlocks(s, tiling);
  const tiles = Math.ceil(visibleKeys(s) / tiling.tile);
  const split = s.tq <= MAX_SPLIT_QUERIES && tiles > 1 && blocks < TARGET_WORKGROUPS;
  return forwardPlanWith(s, kernel, split ? Math.min(tiles, Math.ceil(TARGET_WORKGROUPS / blocks)) : 1);
}

/** The forward with this kernel and the keys cut into (about) `chunks` chunks of whole tiles. */
export function forwardPlanWith(s: PlanShape, kernel: ForwardKernel, chunks: number): ForwardPlan {
  const tiling = forwardTiling(s, kernel);
  const keys = visibleKeys(s);
  const chunkKeys = Math.ceil(Math.ceil(keys / tiling.tile) / Math.max(1, chunks)) * tiling.tile;
  const n = Math.ceil(keys / chunkKeys);
  return n > 1 ? { kernel, tiling, chunks: n, chunkKeys } : { kernel, tiling, chunks: 1, chunkKeys: s.tk };
}

type Pass = ForwardKernel | 'backward';

/** Workgroup memory of a pipeline: the tiled forward stages one tile, the backward two (and sums two dot products); the 'keys' forward holds its rows' queries and scores. */
function workgroupBytes(t: Tiling, headDim: number, pass: Pass): number {
  if (pass === 'keys') return 4 * (t.rows * headDim + t.rows * t.tile + 24);
  const n = pass === 'backward' ? 2 : 1;
  return 4 * (n * t.tile * headDim + n * t.tile * t.rows * t.parts + (pass === 'backward' ? 32 : 16));
}

/** `maxWorkgroupBytes`: the device's maxComputeWorkgroupStorageSize (attentionBackward passes it). */
export function backwardPlan(s: PlanShape, maxWorkgroupBytes = BASELINE_WORKGROUP_BYTES): BackwardPlan {
  const g = group(s);
  const blocks = s.batch * s.kvHeads * Math.ceil(s.tk / BACKWARD_WIDE.rows);
  const wanted = g > 1 && blocks < TARGET_WORKGROUPS ? Math.min(g, Math.ceil(TARGET_WORKGROUPS / blocks)) : 1;
  return slicedPlan(s, wanted, workgroupBytes(BACKWARD_WIDE, s.headDim, 'backward') <= maxWorkgroupBytes ? BACKWARD_WIDE : BACKWARD_NARROW);
}

/** The backward with each K/V head's query heads cut into (about) `slices` slices. */
export function slicedPlan(s: PlanShape, slices: number, tiling: Tiling = BACKWARD_NARROW): BackwardPlan {
  const sliceHeads = Math.ceil(group(s) / Math.max(1, slices));
  return { tiling, sliceHeads, slices: Math.ceil(group(s) / sliceHeads) };
}

/** Scratch bytes attentionForward allocates (and releases) for this shape: the chunk partials. */
export function forwardScratchBytes(s: PlanShape, plan = forwardPlan(s)): number {
  return plan.chunks > 1 ? plan.chunks * s.batch * s.heads * s.tq * (s.headDim + 2) * 4 : 0;
}

/** Scratch bytes attentionBackward allocates (and releases): the per-slice dK and dV sums. */
export function backwardScratchBytes(s: PlanShape, plan = backwardPlan(s)): number {
  return plan.slices > 1 ? 2 * plan.slices * s.batch * s.tk * s.kvHeads * s.headDim * 4 : 0;
}

function checkShape(s: PlanShape): void {
  requirePositiveIntegers('attention', { batch: s.batch, tq: s.tq, tk: s.tk, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim });
  if (s.headDim > MAX_HEAD_DIM) throw new RangeError(`attention: head_dim ${s.headDim} exceeds ${MAX_HEAD_DIM}`);
  if (s.heads % s.kvHeads !== 0) throw new RangeError(`attention: ${s.heads} heads are not a multiple of ${s.kvHeads} K/V heads`);
}

function checkTiling(gpu: Gpu, t: Tiling, headDim: number, pass: Pass): void {
  const fits = pass === 'keys' ? t.rows <= MAX_FEW_ROWS && t.tile === FEW_KEYS && t.parts === 1 : t.tile <= 16 && Math.ceil(headDim / t.parts) <= 32;
  if (!fits) throw new RangeError(`attention: tiling ${JSON.stringify(t)} exceeds the shader's bounds for head_dim ${headDim}`);
  const bytes = workgroupBytes(t, headDim, pass);
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  if (bytes > limit) throw new RangeError(`attention: tiling ${JSON.stringify(t)} needs ${bytes} bytes of workgroup memory for head_dim ${headDim}; this GPU allows ${limit}`);
}

const overrides = (t: Tiling, headDim: number, pass: Pass): Record<string, number> =>
  pass === 'keys' ? { HEAD_DIM: headDim, ROWS: t.rows } : { HEAD_DIM: headDim, ROWS: t.rows, PARTS: t.parts, TILE: t.tile };

interface Split {
  chunks?: number;
  chunkKeys?: number;
  sliceHeads?: number;
}

function params(gpu: Gpu, s: AttentionShape, q: HeadLayout, k: HeadLayout, v: HeadLayout, o: HeadLayout, split: Split = {}, dk?: HeadLayout, dv?: HeadLayout): Binding {
  const scale = s.scale ?? 1 / Math.sqrt(s.headDim);
  return gpu.uniform(
    [
      s.batch, s.tq, s.tk, s.heads,
      s.kvHeads, s.headDim, q.stride, q.off ?? 0,
      k.stride, k.off ?? 0, v.stride, v.off ?? 0,
      o.stride, o.off ?? 0, s.posOffset ?? 0, s.mask ? 1 : 0,
      scale, dk?.stride ?? 0, dk?.off ?? 0, dv?.stride ?? 0,
      dv?.off ?? 0, split.chunks ?? 1, split.chunkKeys ?? s.tk, split.sliceHeads ?? s.heads / s.kvHeads,
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

/** `plan` defaults to forwardPlan(s); tests and benchmarks pass others to reach every path. */
export function attentionForward(gpu: Gpu, code: string, s: AttentionForwardSpec, plan: ForwardPlan = forwardPlan(s)): void {
  checkShape(s);
  checkTiling(gpu, plan.tiling, s.headDim, plan.kernel);
  const split = { chunks: plan.chunks, chunkKeys: plan.chunkKeys };
  const p = params(gpu, s, s.q, s.k, s.v, s.o, split);
  const inputs = [s.q.buf, s.k.buf, s.v.buf, s.mask ?? gpu.dummy, p];
  const workgroups = gpu.grid(queryBlocks(s, plan.tiling) * plan.chunks);
  const entry = plan.kernel === 'keys' ? 'forward_few' : 'forward';
  const pipeline = (suffix: string) => gpu.pipeline(code, entry + suffix, overrides(plan.tiling, s.headDim, plan.kernel));
  if (plan.chunks === 1) {
    gpu.dispatch({ pipeline: pipeline(''), bindings: [...inputs, s.o.buf, s.stats], workgroups, label: 'attention_fwd' });
    return;
  }
  const partial = gpu.alloc(forwardScratchBytes(s, plan), 'scratch', 'attn.chunks');
  gpu.dispatch({ pipeline: pipeline('_chunks'), bindings: [...inputs, partial], workgroups, label: 'attention_fwd_chunks' });
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'forward_combine'),
    bindings: [partial, s.o.buf, s.stats, p],
    workgroups: gpu.grid(Math.ceil((s.batch * s.heads * s.tq * s.headDim) / 64)),
    label: 'attention_fwd_combine',
  });
  gpu.release(partial);
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

/** `plan` defaults to backwardPlan(s) for this device; tests and benchmarks pass others to reach every path. */
export function attentionBackward(gpu: Gpu, code: string, s: AttentionBackwardSpec, plan: BackwardPlan = backwardPlan(s, gpu.limits.maxComputeWorkgroupStorageSize)): void {
  checkShape(s);
  checkTiling(gpu, plan.tiling, s.headDim, 'backward');
  const rowsQ = s.batch * s.heads * s.tq;
  const dk = { buf: s.dkv, ...s.dk };
  const dv = { buf: s.dkv, ...s.dv };
  const split = { sliceHeads: plan.sliceHeads };
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward_prep'),
    bindings: [s.o.buf, s.dO, s.stats, params(gpu, s, s.q, s.k, s.v, s.o)],
    workgroups: gpu.grid(Math.ceil(rowsQ / 64)),
    label: 'attention_bwd_prep',
  });
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward_dq', overrides(plan.tiling, s.headDim, 'backward')),
    bindings: [s.q.buf, s.k.buf, s.v.buf, s.dO, s.stats, s.mask ?? gpu.dummy, s.dq, params(gpu, s, s.q, s.k, s.v, s.o)],
    workgroups: gpu.grid(queryBlocks(s, plan.tiling)),
    label: 'attention_bwd_dq',
  });
  const partial = plan.slices > 1 ? gpu.alloc(backwardScratchBytes(s, plan), 'scratch', 'attn.dkv-slices') : null;
  const pKv = params(gpu, s, s.q, s.k, s.v, s.o, split, dk, dv);
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward_dkv', overrides(plan.tiling, s.headDim, 'backward')),
    bindings: [s.q.buf, s.k.buf, s.v.buf, s.dO, s.stats, s.mask ?? gpu.dummy, partial ?? s.dkv, pKv],
    workgroups: gpu.grid(s.batch * s.kvHeads * Math.ceil(s.tk / plan.tiling.rows) * plan.slices),
    label: 'attention_bwd_dkv',
  });
  if (!partial) return;
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'backward_dkv_reduce'),
    bindings: [partial, s.dkv, pKv],
    workgroups: gpu.grid(Math.ceil((s.batch * s.tk * s.kvHeads * s.headDim) / 64)),
    label: 'attention_bwd_dkv_reduce',
  });
  gpu.release(partial);
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

/** CPU reference log-sum-exp of the scaled scores per row n = (b·H + h)·tq + i; NO_KEY_LSE where a row sees no key. */
export function attentionLseCpu(x: AttentionCpuInput, s: CpuShape): Float64Array {
  const { batch, tq, tk, heads, kvHeads, headDim: D } = s;
  const scale = s.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(batch * heads * tq);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      for (let i = 0; i < tq; i++) {
        const scores: number[] = [];
        const last = Math.min(tk, (s.posOffset ?? 0) + i + 1);
        for (let j = 0; j < last; j++) {
          if (x.mask && x.mask[b * tk + j] === 0) continue;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += x.q[((b * tq + i) * heads + h) * D + d] * x.k[((b * tk + j) * kvHeads + g) * D + d];
          scores.push(dot * scale);
        }
        const m = Math.max(...scores);
        out[(b * heads + h) * tq + i] = scores.length ? m + Math.log(scores.reduce((a, v) => a + Math.exp(v - m), 0)) : NO_KEY_LSE;
      }
    }
  return out;
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
