/**
 * `bench attention`: the tiled attention kernels (shaders/attention.wgsl) against the per-row
 * kernel they replaced (bench/baseline/attention-per-row.wgsl, one invocation per query
 * row streaming over its keys), in one run on one adapter, on the attention shapes of phi-1_5
 * (32 heads of 64) and falcon-7b (71 query heads sharing one K/V head of 64, inside the fused
 * query_key_value row): a training forward and backward over a sequence, and a decoding step
 * (one new query over a KV cache). `full` uses sequence 512 and every head; `cpu` keeps the
 * decoding shapes and cuts training to fewer heads and a shorter sequence; `smoke` is tiny.
 * Both kernels get the same inputs; their outputs are compared, so a fast wrong kernel shows.
 */
import { SHADERS } from '../../workers/kernels/shader-sources';
import perRowCode from '../baseline/attention-per-row.wgsl?raw';
import type { Gpu } from '../../workers/gpu/runtime';
import type { GpuBuffer } from '../../workers/gpu/pool';
import { attentionBackward, attentionForward, backwardPlan, forwardPlan, type AttentionBackwardSpec } from '../../workers/kernels/attention';
import { seededNormals } from '../../workers/util/random';
import { geomean, isEmulated, timeGpu, type BenchContext, type BenchRow, type BenchSize, type BenchSuite, type Timing } from '../suite';

export interface AttentionBenchCase {
  name: string;
  model: string;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Query rows; decoding has 1 over a cache of tk keys. */
  tq: number;
  tk: number;
  /** Q, K, V interleaved in one row per token (falcon's query_key_value) instead of separate tensors. */
  fused: boolean;
  /** Training (forward and backward) or decoding (forward only). */
  backward: boolean;
}

const PHI = { model: 'phi-1_5', heads: 32, kvHeads: 32, headDim: 64, fused: false };
const FALCON = { model: 'falcon-7b', heads: 71, kvHeads: 1, headDim: 64, fused: true };

const train = (m: typeof PHI, seq: number, heads = m.heads): AttentionBenchCase => ({
  ...m,
  heads,
  // Fewer heads keep multi-head multi-head (and multi-query multi-query).
  kvHeads: m.kvHeads === m.heads ? heads : m.kvHeads,
  name: `${m.model} train T=${seq}${heads === m.heads ? '' : ` (${heads} of ${m.heads} heads)`}`,
  tq: seq,
  tk: seq,
  backward: true,
});
const decode = (m: typeof PHI, cache: number): AttentionBenchCase => ({ ...m, name: `${m.model} decode, ${cache}-token cache`, tq: 1, tk: cache, backward: false });

export function attentionBenchCases(size: BenchSize): AttentionBenchCase[] {
  if (size === 'full') return [train(PHI, 512), train(FALCON, 512), decode(PHI, 512), decode(FALCON, 512)];
  if (size === 'cpu') return [train(PHI, 128, 4), train(FALCON, 128, 8), decode(PHI, 512), decode(FALCON, 512)];
  return [train(PHI, 16, 2), train(FALCON, 16, 3), decode(PHI, 40)];
}

interface Buffers {
  q: { buf: GpuBuffer; stride: number; off: number };
  k: { buf: GpuBuffer; stride: number; off: number };
  v: { buf: GpuBuffer; stride: number; off: number };
  o: { buf: GpuBuffer; stride: number };
  stats: GpuBuffer;
  dO: GpuBuffer;
  dq: GpuBuffer;
  dkv: GpuBuffer;
  dk: { stride: number; off: number };
  dv: { stride: number; off: number };
  owned: GpuBuffer[];
}

/** Inputs laid out as the engine lays them out: phi's separate q/k/v (or a KV cache), falcon's fused rows. */
function buffers(gpu: Gpu, c: AttentionBenchCase): Buffers {
  const { heads: H, kvHeads: KVH, headDim: D, tq, tk } = c;
  const owned: GpuBuffer[] = [];
  const up = (n: number, seed: number, scale = 1) => {
    const b = gpu.upload(seededNormals(n, seed, scale), 'scratch', 'bench-attn');
    owned.push(b);
    return b;
  };
  const alloc = (bytes: number) => {
    const b = gpu.alloc(bytes, 'scratch', 'bench-attn');
    owned.push(b);
    return b;
  };
  const o = { buf: alloc(tq * H * D * 4), stride: H * D };
  const stats = alloc(H * tq * 8);
  const dO = up(tq * H * D, 4);
  const kvW = KVH * D;
  if (c.fused) {
    const stride = (H + 2 * KVH) * D;
    // Decoding reads the new query from its fused row and K/V from the cache.
    const qkv = up(tq * stride, 1, 1.2);
    const lay = (off: number) => ({ buf: qkv, stride, off });
    const q = lay(0);
    const [k, v] = c.tq === c.tk ? [lay(H * D), lay((H + KVH) * D)] : [{ buf: up(tk * kvW, 2, 1.2), stride: kvW, off: 0 }, { buf: up(tk * kvW, 3), stride: kvW, off: 0 }];
    const dqkv = alloc(tq * stride * 4);
    return { q, k, v, o, stats, dO, dq: dqkv, dkv: dqkv, dk: { stride, off: H * D }, dv: { stride, off: (H + KVH) * D }, owned };
  }
  const q = { buf: up(tq * H * D, 1, 1.2), stride: H * D, off: 0 };
  const k = { buf: up(tk * kvW, 2, 1.2), stride: kvW, off: 0 };
  const v = { buf: up(tk * kvW, 3), stride: kvW, off: 0 };
  return { q, k, v, o, stats, dO, dq: alloc(tq * H * D * 4), dkv: alloc(2 * tk * kvW * 4), dk: { stride: kvW, off: 0 }, dv: { stride: kvW, off: tk * kvW }, owned };
}

function spec(c: AttentionBenchCase, b: Buffers): AttentionBackwardSpec {
  return { batch: 1, tq: c.tq, tk: c.tk, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, posOffset: c.tk - c.tq, ...b };
}

// --- the per-row baseline's launchers, as they were beside it ---------------------------------

function perRowParams(gpu: Gpu, s: AttentionBackwardSpec, withGrads: boolean): ReturnType<Gpu['uniform']> {
  const dk = withGrads ? s.dk : { stride: 0, off: 0 };
  const dv = withGrads ? s.dv : { stride: 0, off: 0 };
  return gpu.uniform(
    [
      s.batch, s.tq, s.tk, s.heads,
      s.kvHeads, s.headDim, s.q.stride, s.q.off ?? 0,
      s.k.stride, s.k.off ?? 0, s.v.stride, s.v.off ?? 0,
      s.o.stride, s.o.off ?? 0, s.posOffset ?? 0, 0,
      1 / Math.sqrt(s.headDim), dk.stride, dk.off ?? 0, dv.stride,
      dv.off ?? 0, 0, 0, 0,
    ],
    'uuuuuuuuuuuuuuuufuuuuuuu',
  );
}

function perRowForward(gpu: Gpu, s: AttentionBackwardSpec): void {
  gpu.dispatch({
    pipeline: gpu.pipeline(perRowCode, 'forward'),
    bindings: [s.q.buf, s.k.buf, s.v.buf, gpu.dummy, s.o.buf, s.stats, perRowParams(gpu, s, false)],
    workgroups: gpu.grid(Math.ceil((s.batch * s.heads * s.tq) / 64)),
    label: 'attention_per_row_fwd',
  });
}

function perRowBackward(gpu: Gpu, s: AttentionBackwardSpec): void {
  const rowsQ = s.batch * s.heads * s.tq;
  gpu.dispatch({
    pipeline: gpu.pipeline(perRowCode, 'backward_prep'),
    bindings: [s.o.buf, s.dO, s.stats, perRowParams(gpu, s, false)],
    workgroups: gpu.grid(Math.ceil(rowsQ / 64)),
    label: 'attention_per_row_bwd_prep',
  });
  gpu.dispatch({
    pipeline: gpu.pipeline(perRowCode, 'backward_dq'),
    bindings: [s.q.buf, s.k.buf, s.v.buf, s.dO, s.stats, gpu.dummy, s.dq, perRowParams(gpu, s, false)],
    workgroups: gpu.grid(Math.ceil(rowsQ / 64)),
    label: 'attention_per_row_bwd_dq',
  });
  gpu.dispatch({
    pipeline: gpu.pipeline(perRowCode, 'backward_dkv'),
    bindings: [s.q.buf, s.k.buf, s.v.buf, s.dO, s.stats, gpu.dummy, s.dkv, perRowParams(gpu, s, true)],
    workgroups: gpu.grid(Math.ceil((s.batch * s.kvHeads * s.tk) / 64)),
    label: 'attention_per_row_bwd_dkv',
  });
}

// ------------------------------------------------------------------------------------------------

/** Query-key pairs the causal mask lets through, over all heads. */
function visiblePairs(c: AttentionBenchCase): number {
  let n = 0;
  for (let i = 0; i < c.tq; i++) n += Math.min(c.tk, c.tk - c.tq + i + 1);
  return n * c.heads;
}

/** max|a − b| / max|b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return Number.isFinite(d) ? (m > 0 ? d / m : d) : Number.MAX_VALUE;
}


async function run(ctx: BenchContext) {
  const { gpu, io, size } = ctx;
  const runs = Number(ctx.flags.runs ?? (size === 'full' ? 10 : size === 'cpu' ? 3 : 2));
  const warmup = size === 'full' ? 2 : 1;
  const rows: BenchRow[] = [];
  const ratios: Record<string, number> = {};
  const notes = [
    `Median of ${runs} runs after ${warmup} warm-up, timed with GPU timestamps where the adapter has them (the sum of the passes), else wall-clock to queue completion; each row says which.`,
    'per-row: the kernel the tiled one replaced (one invocation per query row streaming over its keys; dK/dV one invocation per key). tiled: shaders/attention.wgsl with the plan the engine would choose (shape.plan: the forward kernel, "tiles" staging K/V for 16 rows or "keys" with a thread per key; chunks: key chunks; slices: dK/dV head slices).',
    'gflops count useful work: 4·D per visible query-key pair forward, 10·D backward (causal, batch 1).',
    'max_rel_diff_vs_per_row: the tiled outputs (O forward; dQ, dK, dV backward) against the per-row ones, max|a − b| / max|b|.',
    'Ratios are speed-ups: per-row time / tiled time (above 1: the tiled kernel is faster).',
  ];
  if (size !== 'full') notes.push(`${size} size: training shapes cut (fewer heads, shorter sequence); decoding shapes as in full.`);
  if (isEmulated(gpu.adapter)) notes.push('SwiftShader: CPU emulation of a GPU; the numbers say nothing about GPU performance.');
  const speedups: number[] = [];
  for (const c of attentionBenchCases(size)) {
    const b = buffers(gpu, c);
    const s = spec(c, b);
    const shape = { model: c.model, batch: 1, tq: c.tq, tk: c.tk, heads: c.heads, kv_heads: c.kvHeads, head_dim: c.headDim };
    const pairs = visiblePairs(c);
    const fPlan = forwardPlan(s);
    const bPlan = backwardPlan(s, gpu.limits.maxComputeWorkgroupStorageSize);
    const row = (kernel: string, pass: string, t: Timing, flopsPerPair: number, extra: Record<string, number>, plan = ''): BenchRow => ({
      name: `${kernel} ${pass} ${c.name}`,
      shape: { ...shape, pass, ...(plan ? { plan } : {}) },
      timing: t,
      metrics: { ms: t.median * 1e3, gflops: (flopsPerPair * c.headDim * pairs) / t.median / 1e9, ...extra },
    });
    const opts = { warmup, runs };
    const readOut = () => gpu.readF32(b.o.buf, c.tq * c.heads * c.headDim);
    const oldF = await timeGpu(gpu, () => perRowForward(gpu, s), opts);
    const oOld = await readOut();
    const newF = await timeGpu(gpu, () => attentionForward(gpu, SHADERS.attention, s, fPlan), opts);
    const oNew = await readOut();
    const pass = c.backward ? 'forward' : 'decode forward';
    rows.push(row('per-row', pass, oldF, 4, {}));
    rows.push(row('tiled', pass, newF, 4, { chunks: fPlan.chunks, max_rel_diff_vs_per_row: relDiff(oNew, oOld) }, `${fPlan.kernel} kernel, ${fPlan.tiling.rows} rows per workgroup`));
    ratios[`tiled_vs_per_row ${pass} ${c.name}`] = oldF.median / newF.median;
    speedups.push(oldF.median / newF.median);
    let line = `${c.name}: ${pass} per-row ${(oldF.median * 1e3).toFixed(3)} ms, tiled ${(newF.median * 1e3).toFixed(3)} ms (${(oldF.median / newF.median).toFixed(2)}×)`;
    if (c.backward) {
      // Both backward passes start from the same forward (the tiled one just ran; its O and
      // log-sum-exp equal the per-row ones to rounding).
      const grads = async () => [await gpu.readF32(b.dq), await gpu.readF32(b.dkv)];
      const oldB = await timeGpu(gpu, () => perRowBackward(gpu, s), opts);
      const gOld = await grads();
      const newB = await timeGpu(gpu, () => attentionBackward(gpu, SHADERS.attention, s, bPlan), opts);
      const gNew = await grads();
      rows.push(row('per-row', 'backward', oldB, 10, {}));
      rows.push(row('tiled', 'backward', newB, 10, { slices: bPlan.slices, tile: bPlan.tiling.tile, max_rel_diff_vs_per_row: Math.max(relDiff(gNew[0], gOld[0]), relDiff(gNew[1], gOld[1])) }, `${bPlan.slices} head slice(s), tiles of ${bPlan.tiling.tile}`));
      ratios[`tiled_vs_per_row backward ${c.name}`] = oldB.median / newB.median;
      ratios[`tiled_vs_per_row forward+backward ${c.name}`] = (oldF.median + oldB.median) / (newF.median + newB.median);
      speedups.push(oldB.median / newB.median);
      line += `; backward per-row ${(oldB.median * 1e3).toFixed(3)} ms, tiled ${(newB.median * 1e3).toFixed(3)} ms (${(oldB.median / newB.median).toFixed(2)}×)`;
    }
    io.log(line);
    gpu.release(...b.owned);
    gpu.pool.trim();
  }
  ratios.tiled_vs_per_row = geomean(speedups);
  return { rows, ratios, notes };
}

export const attentionSuite: BenchSuite = {
  name: 'attention',
  description: 'tiled attention (forward, backward, split-key decoding) vs the per-row kernel it replaced, phi-1_5 and falcon-7b shapes',
  run,
};
