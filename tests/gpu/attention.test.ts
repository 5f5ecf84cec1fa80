import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import type { Gpu } from '../../workers/gpu/runtime';
import {
  attentionBackward,
  attentionBackwardCpu,
  attentionCpu,
  attentionForward,
  attentionLseCpu,
  backwardPlan,
  backwardScratchBytes,
  BASELINE_WORKGROUP_BYTES,
  forwardPlan,
  forwardScratchBytes,
  NO_KEY_LSE,
  forwardPlanWith,
  slicedPlan,
  type BackwardPlan,
  type ForwardPlan,
} from '../../workers/kernels/attention';
import { POISON, randn, relErr, testGpu } from './helpers';
import { dot, finiteDiff, pick, someCoords } from './fd';

type Shape = { batch: number; tq: number; tk: number; heads: number; kvHeads: number; headDim: number; posOffset: number };

interface Case extends Shape {
  name: string;
  /** [batch · tk], 1 = real key. */
  mask?: number[];
  /** q, k, v interleaved in one row per token with this many extra floats (falcon's query_key_value; needs tq = tk); dQ, dK, dV go into one buffer of that layout. */
  fusedPad?: number;
  /** Separate rows with extra floats before and after the heads (a KV cache's or a fused row's stride). */
  pad?: number;
  /** A KV cache holding more rows than tk. */
  cacheRows?: number;
  forward?: (s: Shape) => ForwardPlan;
  backward?: (s: Shape) => BackwardPlan;
  /** What the plan must be, so each case reaches the path it is meant for. */
  expectPlan?: (f: ForwardPlan, b: BackwardPlan) => void;
  fd?: boolean;
}

/** A strided layout of `width` floats per row inside rows of `stride`, at `off`. */
interface Layout {
  stride: number;
  off: number;
}

/** Rows of `data` ([rows, width]) placed in a layout; everything else holds large garbage so a stray read shows. */
function place(data: Float32Array, rows: number, width: number, l: Layout, into?: Float32Array): Float32Array {
  const out = into ?? Float32Array.from({ length: rows * l.stride }, (_, i) => 1e3 + (i % 7));
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * width, (r + 1) * width), r * l.stride + l.off);
  return out;
}

function extract(all: Float32Array, rows: number, width: number, l: Layout): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(all.subarray(r * l.stride + l.off, r * l.stride + l.off + width), r * width);
  return out;
}

/** Words of a buffer outside the given layouts that are no longer POISON (a kernel wrote where it must not). */
function strayWrites(words: Uint32Array, rows: number, parts: [Layout, number][]): number {
  let stray = 0;
  const stride = parts[0][0].stride;
  for (let r = 0; r < rows; r++)
    for (let x = 0; x < stride; x++) {
      const inside = parts.some(([l, w]) => x >= l.off && x < l.off + w);
      if (!inside && words[r * stride + x] !== POISON) stray++;
    }
  return stray;
}

/** Fill the pool's free buffer of this size with POISON, so a kernel's scratch starts poisoned. */
function poisonScratch(gpu: Gpu, bytes: number): void {
  if (bytes === 0) return;
  const b = gpu.alloc(bytes, 'scratch', 'poisoned-scratch');
  gpu.fill(b, POISON);
  gpu.release(b);
}

const f32 = Math.fround;

async function check(c: Case): Promise<void> {
  const gpu = await testGpu();
  const { batch, tq, tk, heads: H, kvHeads: KVH, headDim: D, posOffset } = c;
  const shape: Shape = { batch, tq, tk, heads: H, kvHeads: KVH, headDim: D, posOffset };
  const fPlan = (c.forward ?? forwardPlan)(shape);
  const bPlan = c.backward ? c.backward(shape) : backwardPlan(shape, gpu.limits.maxComputeWorkgroupStorageSize);
  c.expectPlan?.(fPlan, bPlan);
  const q = randn(batch * tq * H * D, 1, 1.3);
  const k = randn(batch * tk * KVH * D, 2, 1.3);
  const v = randn(batch * tk * KVH * D, 3);
  const dO = randn(batch * tq * H * D, 4);
  const mask = c.mask ? Int32Array.from(c.mask) : undefined;
  if (mask && mask.length !== batch * tk) throw new Error(`${c.name}: mask has ${mask.length} entries`);

  const bufs = [];
  let qL: Layout, kL: Layout, vL: Layout;
  let qBuf, kBuf, vBuf;
  const kvRows = c.cacheRows ?? batch * tk;
  if (c.fusedPad !== undefined) {
    if (tq !== tk) throw new Error(`${c.name}: a fused row needs tq = tk`);
    const stride = (H + 2 * KVH) * D + c.fusedPad;
    [qL, kL, vL] = [0, H * D, (H + KVH) * D].map((off) => ({ stride, off }));
    const fused = place(v, batch * tk, KVH * D, vL, place(k, batch * tk, KVH * D, kL, place(q, batch * tq, H * D, qL)));
    qBuf = kBuf = vBuf = gpu.upload(fused, 'scratch');
    bufs.push(qBuf);
  } else {
    const pad = c.pad ?? 0;
    const lay = (w: number) => ({ stride: w + 2 * pad, off: pad });
    [qL, kL, vL] = [lay(H * D), lay(KVH * D), lay(KVH * D)];
    const padRows = (a: Float32Array, w: number) => {
      const out = new Float32Array(kvRows * w).fill(7);
      out.set(a);
      return out;
    };
    qBuf = gpu.upload(place(q, batch * tq, H * D, qL), 'scratch');
    kBuf = gpu.upload(place(padRows(k, KVH * D), kvRows, KVH * D, kL), 'scratch');
    vBuf = gpu.upload(place(padRows(v, KVH * D), kvRows, KVH * D, vL), 'scratch');
    bufs.push(qBuf, kBuf, vBuf);
  }
  const oL: Layout = { stride: H * D + 5, off: 3 };
  const maskBuf = mask ? gpu.upload(mask, 'scratch') : undefined;
  const o = gpu.alloc(batch * tq * oL.stride * 4, 'scratch');
  const stats = gpu.alloc(batch * H * tq * 8, 'scratch');
  gpu.fill(o, POISON);
  gpu.fill(stats, POISON);
  poisonScratch(gpu, forwardScratchBytes(shape, fPlan));
  const spec = { ...shape, mask: maskBuf, q: { buf: qBuf, ...qL }, k: { buf: kBuf, ...kL }, v: { buf: vBuf, ...vL }, o: { buf: o, ...oL }, stats };
  attentionForward(gpu, SHADERS.attention, spec, fPlan);

  const x = { q, k, v, mask };
  const ref = attentionCpu(x, shape);
  const oAll = await gpu.readF32(o);
  expect(relErr(extract(oAll, batch * tq, H * D, oL), ref), 'output').toBeLessThan(3e-6);
  expect(strayWrites(new Uint32Array(oAll.buffer), batch * tq, [[oL, H * D]]), 'writes outside O').toBe(0);
  const lse = attentionLseCpu(x, shape);
  const statsGot = await gpu.readF32(stats);
  let lseErr = 0;
  for (let n = 0; n < lse.length; n++) {
    const got = statsGot[2 * n];
    if (lse[n] === NO_KEY_LSE) expect(got, `lse of row ${n}, which sees no key`).toBe(f32(NO_KEY_LSE));
    else lseErr = Math.max(lseErr, Math.abs(got - lse[n]) / (1 + Math.abs(lse[n])));
  }
  expect(lseErr, 'log-sum-exp').toBeLessThan(2e-6);

  // Backward: dQ in Q's layout; dK, dV into one buffer (the fused layout, or two dense halves).
  const dOb = gpu.upload(place(dO, batch * tq, H * D, oL), 'scratch');
  const fused = c.fusedPad !== undefined;
  const kvN = batch * tk * KVH * D;
  const dq = gpu.alloc(batch * tq * qL.stride * 4, 'scratch');
  const dkv = fused ? dq : gpu.alloc(2 * kvN * 4, 'scratch');
  const dkL: Layout = fused ? kL : { stride: KVH * D, off: 0 };
  const dvL: Layout = fused ? vL : { stride: KVH * D, off: kvN };
  gpu.fill(dq, POISON);
  gpu.fill(dkv, POISON);
  poisonScratch(gpu, backwardScratchBytes(shape, bPlan));
  attentionBackward(gpu, SHADERS.attention, { ...spec, o: { buf: o, ...oL }, dO: dOb, dq, dkv, dk: dkL, dv: dvL }, bPlan);
  const g = attentionBackwardCpu(x, dO, shape);
  const dqAll = await gpu.readF32(dq);
  const dkvAll = fused ? dqAll : await gpu.readF32(dkv);
  expect(relErr(extract(dqAll, batch * tq, H * D, qL), g.dq), 'dQ').toBeLessThan(1e-5);
  const dkGot = fused ? extract(dkvAll, batch * tk, KVH * D, dkL) : dkvAll.subarray(0, kvN);
  const dvGot = fused ? extract(dkvAll, batch * tk, KVH * D, dvL) : dkvAll.subarray(kvN);
  expect(relErr(dkGot, g.dk), 'dK').toBeLessThan(1e-5);
  expect(relErr(dvGot, g.dv), 'dV').toBeLessThan(1e-5);
  if (fused) {
    expect(strayWrites(new Uint32Array(dqAll.buffer), batch * tq, [[qL, H * D], [kL, KVH * D], [vL, KVH * D]]), 'writes outside dQKV').toBe(0);
  } else {
    expect(strayWrites(new Uint32Array(dqAll.buffer), batch * tq, [[qL, H * D]]), 'writes outside dQ').toBe(0);
  }

  if (c.fd) {
    // The CPU gradients against finite differences of the float64 forward.
    const loss = (qq: ArrayLike<number>, kk: ArrayLike<number>, vv: ArrayLike<number>) => dot(attentionCpu({ q: qq, k: kk, v: vv, mask }, shape), dO);
    const cq = someCoords(q.length, 10);
    expect(relErr(pick(g.dq, cq), finiteDiff((xx) => loss(xx, k, v), q, cq)), 'dQ vs finite differences').toBeLessThan(1e-6);
    const ck = someCoords(k.length, 10);
    expect(relErr(pick(g.dk, ck), finiteDiff((xx) => loss(q, xx, v), k, ck)), 'dK vs finite differences').toBeLessThan(1e-6);
    expect(relErr(pick(g.dv, ck), finiteDiff((xx) => loss(q, k, xx), v, ck)), 'dV vs finite differences').toBeLessThan(1e-6);
  }
  gpu.release(...bufs, o, stats, dOb, dq, fused ? null : dkv, maskBuf);
}

const ones = (n: number) => Array<number>(n).fill(1);
const zeros = (n: number) => Array<number>(n).fill(0);

const unsplit = (f: ForwardPlan) => expect(f.chunks).toBe(1);
const split = (f: ForwardPlan) => expect(f.chunks).toBeGreaterThan(2);

describe('attention (tiled, causal + padding mask)', () => {
  const cases: Case[] = [
    { name: 'multi-head, right padding', batch: 2, tq: 13, tk: 13, heads: 3, kvHeads: 3, headDim: 20, posOffset: 0, mask: [...ones(13), ...ones(9), ...zeros(4)], fd: true },
    { name: 'multi-query in a fused row, holes in the mask', batch: 2, tq: 11, tk: 11, heads: 4, kvHeads: 1, headDim: 16, posOffset: 0, mask: [1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, ...ones(11)], fusedPad: 5, fd: true },
    { name: 'grouped query heads', batch: 1, tq: 9, tk: 9, heads: 6, kvHeads: 2, headDim: 8, posOffset: 0, fd: true },
    { name: 'decode: 2 new queries over a cache of 7 keys', batch: 1, tq: 2, tk: 7, heads: 2, kvHeads: 1, headDim: 12, posOffset: 5, cacheRows: 10, fd: true },
    { name: 'head_dim 24, 37 rows, left padding with fully masked rows', batch: 2, tq: 37, tk: 37, heads: 3, kvHeads: 3, headDim: 24, posOffset: 0, mask: [...ones(37), ...zeros(6), ...ones(31)], fd: true },
    { name: 'head_dim 64, 45 rows, strided rows', batch: 1, tq: 45, tk: 45, heads: 2, kvHeads: 2, headDim: 64, posOffset: 0, pad: 3, expectPlan: unsplit },
    {
      name: 'head_dim 64, backward tiles for 16 KiB of workgroup memory',
      batch: 2, tq: 29, tk: 29, heads: 2, kvHeads: 1, headDim: 64, posOffset: 0, mask: [...ones(29), ...ones(20), ...zeros(9)],
      backward: (s) => backwardPlan(s, BASELINE_WORKGROUP_BYTES),
      expectPlan: (_, b) => expect(b.tiling.tile).toBe(8),
    },
    { name: 'head_dim 80, grouped, padding holes', batch: 2, tq: 23, tk: 23, heads: 4, kvHeads: 2, headDim: 80, posOffset: 0, mask: [...ones(23), ...ones(5), 0, 0, ...ones(9), 0, ...ones(6)], fd: true },
    { name: 'head_dim 128, multi-query in a fused row', batch: 1, tq: 21, tk: 21, heads: 3, kvHeads: 1, headDim: 128, posOffset: 0, fusedPad: 2, fd: true },
    { name: 'tk > tq with posOffset (prefill continuing a cache), grouped, strided', batch: 2, tq: 19, tk: 40, heads: 4, kvHeads: 2, headDim: 40, posOffset: 21, pad: 2, mask: [...ones(40), ...zeros(3), ...ones(37)] },
    {
      name: 'multi-query, dK/dV summed over 3 uneven head slices',
      batch: 1, tq: 26, tk: 26, heads: 7, kvHeads: 1, headDim: 24, posOffset: 0, fusedPad: 1,
      backward: (s) => slicedPlan(s, 3),
      expectPlan: (_, b) => expect([b.slices, b.sliceHeads]).toEqual([3, 3]),
    },
    {
      name: 'multi-query, one workgroup per dK/dV block owning every query head',
      batch: 2, tq: 17, tk: 17, heads: 5, kvHeads: 1, headDim: 32, posOffset: 0, fusedPad: 0,
      backward: (s) => slicedPlan(s, 1),
      expectPlan: (_, b) => expect(b.slices).toBe(1),
    },
    {
      name: 'grouped heads sliced by the default plan',
      batch: 1, tq: 33, tk: 33, heads: 8, kvHeads: 2, headDim: 16, posOffset: 0,
      expectPlan: (_, b) => expect(b.slices).toBeGreaterThan(1),
    },
    {
      name: 'forward split into key chunks on a training shape (empty chunks for early rows)',
      batch: 2, tq: 45, tk: 45, heads: 2, kvHeads: 1, headDim: 24, posOffset: 0, mask: [...ones(45), ...zeros(20), ...ones(25)],
      forward: (s) => forwardPlanWith(s, 'tiles', 3),
      expectPlan: (f) => expect([f.chunks, f.chunkKeys]).toEqual([3, 16]),
    },
    {
      name: 'a thread per key on a training shape (blocks of 8 rows across heads), padding',
      batch: 2, tq: 13, tk: 13, heads: 3, kvHeads: 3, headDim: 20, posOffset: 0, mask: [...ones(13), ...ones(9), ...zeros(4)],
      forward: (s) => forwardPlanWith(s, 'keys', 1),
      expectPlan: (f) => expect([f.kernel, f.tiling.rows, f.chunks]).toEqual(['keys', 8, 1]),
    },
    {
      name: 'a thread per key, keys in chunks, grouped heads, left padding',
      batch: 2, tq: 150, tk: 150, heads: 4, kvHeads: 2, headDim: 24, posOffset: 0, mask: [...zeros(70), ...ones(80), ...ones(150)],
      forward: (s) => forwardPlanWith(s, 'keys', 2),
      expectPlan: (f) => expect([f.kernel, f.chunks, f.chunkKeys]).toEqual(['keys', 2, 128]),
    },
    // Grouped-query shapes of the Llama / Qwen2 families: 3 and 7 query heads per K/V head, K/V head h / group.
    { name: 'grouped-query: 9 heads over 3 K/V heads, right padding', batch: 2, tq: 21, tk: 21, heads: 9, kvHeads: 3, headDim: 24, posOffset: 0, mask: [...ones(21), ...ones(15), ...zeros(6)] },
    { name: 'grouped-query: 14 heads over 2 K/V heads (Qwen2.5-0.5B), strided rows', batch: 1, tq: 19, tk: 19, heads: 14, kvHeads: 2, headDim: 32, posOffset: 0, pad: 1 },
  ];
  for (const c of cases) it(c.name, () => check(c));
});

describe('attention decoding (keys split into chunks over workgroups)', () => {
  const cases: Case[] = [
    {
      name: 'one query per head over a 300-key cache, few rows per K/V head',
      batch: 1, tq: 1, tk: 300, heads: 4, kvHeads: 4, headDim: 64, posOffset: 299, pad: 1, cacheRows: 320,
      expectPlan: (f) => {
        split(f);
        expect([f.kernel, f.tiling.rows]).toEqual(['keys', 1]);
      },
    },
    {
      name: 'the same with a thread per key, every tile in one workgroup',
      batch: 1, tq: 1, tk: 300, heads: 4, kvHeads: 4, headDim: 64, posOffset: 299, pad: 1, cacheRows: 320,
      forward: (s) => forwardPlanWith(s, 'keys', 1),
      expectPlan: (f) => expect([f.kernel, f.chunks]).toEqual(['keys', 1]),
    },
    {
      name: 'the same through staged K/V tiles, in chunks',
      batch: 1, tq: 1, tk: 300, heads: 4, kvHeads: 4, headDim: 64, posOffset: 299, pad: 1, cacheRows: 320,
      forward: (s) => forwardPlanWith(s, 'tiles', 8),
      expectPlan: (f) => expect([f.kernel, f.chunks, f.chunkKeys]).toEqual(['tiles', 7, 48]),
    },
    {
      name: 'three heads sharing K/V (a block of 4 rows, one empty), one query over 190 keys',
      batch: 1, tq: 1, tk: 190, heads: 3, kvHeads: 1, headDim: 24, posOffset: 189,
      expectPlan: (f) => {
        split(f);
        expect([f.kernel, f.tiling.rows]).toEqual(['keys', 4]);
      },
    },
    {
      name: 'two heads per K/V head, head_dim 80, one query over 260 keys with padding holes',
      batch: 1, tq: 1, tk: 260, heads: 4, kvHeads: 2, headDim: 80, posOffset: 259,
      mask: [...ones(30), ...zeros(100), ...ones(50), 0, 0, ...ones(78)],
      expectPlan: (f) => {
        split(f);
        expect([f.kernel, f.tiling.rows]).toEqual(['keys', 2]);
      },
    },
    {
      name: 'multi-query: 3 queries of 9 heads over a 517-key cache',
      batch: 1, tq: 3, tk: 517, heads: 9, kvHeads: 1, headDim: 80, posOffset: 514, cacheRows: 600,
      expectPlan: (f) => {
        split(f);
        expect(f.kernel).toBe('tiles');
      },
    },
    {
      name: 'two sequences, whole chunks padded, a row that sees no key',
      // Sequence 0 has padding over keys 16..95 (whole chunks); sequence 1 masks every key its
      // first query (position 198) can see.
      batch: 2, tq: 2, tk: 200, heads: 2, kvHeads: 1, headDim: 24, posOffset: 198,
      mask: [...ones(16), ...zeros(80), ...ones(104), ...zeros(199), 1],
      expectPlan: split,
      fd: true,
    },
    {
      name: 'grouped heads, 4 queries over 130 keys, head_dim 128 (a block of 8 rows)',
      batch: 1, tq: 4, tk: 130, heads: 4, kvHeads: 2, headDim: 128, posOffset: 126,
      expectPlan: (f) => expect([f.kernel, f.tiling.rows, f.chunks]).toEqual(['keys', 8, 3]),
    },
    {
      name: 'grouped-query: 9 heads over 3 K/V heads, 2 queries over a 141-key cache',
      batch: 1, tq: 2, tk: 141, heads: 9, kvHeads: 3, headDim: 64, posOffset: 139, cacheRows: 150, pad: 2,
      expectPlan: (f) => expect([f.kernel, f.tiling.rows]).toEqual(['keys', 8]),
    },
    {
      name: 'grouped-query: 14 heads over 2 K/V heads, one query over 77 keys (7 rows of a block of 8)',
      batch: 1, tq: 1, tk: 77, heads: 14, kvHeads: 2, headDim: 64, posOffset: 76,
      expectPlan: (f) => expect([f.kernel, f.tiling.rows]).toEqual(['keys', 8]),
    },
  ];
  for (const c of cases) it(c.name, { timeout: 120_000 }, () => check(c));
});

describe('attention plans', () => {
  it('splits the keys only for few queries, and slices dK/dV only for shared K/V heads on small grids', () => {
    const phi = { batch: 1, tq: 512, tk: 512, heads: 32, kvHeads: 32, headDim: 64, posOffset: 0 };
    const falcon = { ...phi, heads: 71, kvHeads: 1 };
    expect(forwardPlan(phi).chunks).toBe(1);
    expect(backwardPlan(phi).slices).toBe(1);
    expect(forwardPlan(falcon).chunks).toBe(1);
    const fb = backwardPlan(falcon);
    expect(fb.slices).toBeGreaterThan(1);
    expect(fb.sliceHeads * fb.slices).toBeGreaterThanOrEqual(71);
    expect(fb.sliceHeads * (fb.slices - 1)).toBeLessThan(71);
    const decode = forwardPlan({ ...phi, tq: 1, tk: 512, posOffset: 511 });
    expect([decode.kernel, decode.chunks]).toEqual(['keys', 8]);
    expect(forwardPlan({ ...falcon, tq: 1, tk: 512, posOffset: 511 }).kernel).toBe('tiles');
    expect(decode.chunkKeys * decode.chunks).toBeGreaterThanOrEqual(512);
    expect(forwardPlan({ ...phi, tq: 5, tk: 512, posOffset: 507 }).chunks).toBe(1);
    // Backward tiles of 16 where two of them fit the device's workgroup memory, else 8.
    expect(backwardPlan(phi).tiling.tile).toBe(8);
    expect(backwardPlan(phi, 32768).tiling.tile).toBe(16);
    expect(backwardPlan({ ...phi, headDim: 128 }, 32768).tiling.tile).toBe(16);
    expect(backwardPlan({ ...phi, headDim: 128 }, 24576).tiling.tile).toBe(8);
  });

  it('names the bad field', async () => {
    const gpu = await testGpu();
    const b = gpu.alloc(64, 'scratch');
    const base = { batch: 1, tq: 1, tk: 1, heads: 2, kvHeads: 1, headDim: 8, q: { buf: b, stride: 16 }, k: { buf: b, stride: 8 }, v: { buf: b, stride: 8 }, o: { buf: b, stride: 16 }, stats: b };
    expect(() => attentionForward(gpu, SHADERS.attention, { ...base, headDim: 136 })).toThrow(/head_dim 136/);
    expect(() => attentionForward(gpu, SHADERS.attention, { ...base, kvHeads: 3 })).toThrow(/3 K\/V heads/);
    expect(() => attentionForward(gpu, SHADERS.attention, { ...base, tk: 0 })).toThrow(/tk = 0/);
    gpu.release(b);
  });
});
