import { describe, expect, it } from 'vitest';
import code from '../../shaders/attention.wgsl?raw';
import { attentionBackward, attentionBackwardCpu, attentionCpu, attentionForward } from '../../workers/kernels/attention';
import { POISON, randn, relErr, testGpu } from './helpers';
import { dot, finiteDiff, pick, someCoords } from './fd';

interface Case {
  name: string;
  batch: number;
  tq: number;
  tk: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  posOffset: number;
  mask: number[] | null;
  /** Pack q, k, v into one fused row (like falcon's query_key_value) with this many extra floats. */
  fusedPad: number | null;
}

const cases: Case[] = [
  { name: 'multi-head, right padding', batch: 2, tq: 13, tk: 13, heads: 3, kvHeads: 3, headDim: 20, posOffset: 0, mask: [...Array(13).fill(1), ...Array(9).fill(1), 0, 0, 0, 0], fusedPad: null },
  { name: 'multi-query in a fused row, holes in the mask', batch: 2, tq: 11, tk: 11, heads: 4, kvHeads: 1, headDim: 16, posOffset: 0, mask: [1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, ...Array(11).fill(1)], fusedPad: 5 },
  { name: 'grouped query heads', batch: 1, tq: 9, tk: 9, heads: 6, kvHeads: 2, headDim: 8, posOffset: 0, mask: null, fusedPad: null },
  { name: 'decode: 2 new queries over a cache of 7 keys', batch: 1, tq: 2, tk: 7, heads: 2, kvHeads: 1, headDim: 12, posOffset: 5, mask: null, fusedPad: null },
];

describe('attention (online softmax, causal + padding mask)', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const gpu = await testGpu();
      const { batch, tq, tk, heads: H, kvHeads: KVH, headDim: D } = c;
      const q = randn(batch * tq * H * D, 1, 1.3);
      const k = randn(batch * tk * KVH * D, 2, 1.3);
      const v = randn(batch * tk * KVH * D, 3);
      const dO = randn(batch * tq * H * D, 4);
      const mask = c.mask ? Int32Array.from(c.mask) : undefined;
      const shape = { batch, tq, tk, heads: H, kvHeads: KVH, headDim: D, posOffset: c.posOffset };

      // Lay out q, k, v either densely or interleaved in one fused row per token.
      let qL, kL, vL;
      const bufs = [];
      if (c.fusedPad !== null) {
        const stride = (H + 2 * KVH) * D + c.fusedPad;
        const fused = new Float32Array(batch * tq * stride);
        for (let r = 0; r < batch * tq; r++) {
          fused.set(q.subarray(r * H * D, (r + 1) * H * D), r * stride);
          fused.set(k.subarray(r * KVH * D, (r + 1) * KVH * D), r * stride + H * D);
          fused.set(v.subarray(r * KVH * D, (r + 1) * KVH * D), r * stride + (H + KVH) * D);
        }
        const fb = gpu.upload(fused, 'scratch');
        bufs.push(fb);
        [qL, kL, vL] = [{ buf: fb, stride, off: 0 }, { buf: fb, stride, off: H * D }, { buf: fb, stride, off: (H + KVH) * D }];
      } else {
        const [qb, kb, vb] = [q, k, v].map((a) => gpu.upload(a, 'scratch'));
        bufs.push(qb, kb, vb);
        [qL, kL, vL] = [{ buf: qb, stride: H * D }, { buf: kb, stride: KVH * D }, { buf: vb, stride: KVH * D }];
      }
      const maskBuf = mask ? gpu.upload(mask, 'scratch') : undefined;
      const o = gpu.alloc(batch * tq * H * D * 4, 'scratch');
      const stats = gpu.alloc(batch * H * tq * 8, 'scratch');
      gpu.fill(o, POISON);
      gpu.fill(stats, POISON);
      const spec = { ...shape, mask: maskBuf, q: qL, k: kL, v: vL, o: { buf: o, stride: H * D }, stats };
      attentionForward(gpu, code, spec);
      const ref = attentionCpu({ q, k, v, mask }, shape);
      expect(relErr(await gpu.readF32(o, ref.length), ref)).toBeLessThan(2e-6);

      // Backward: dq in q's layout, dk/dv into one buffer (dense halves here).
      const dOb = gpu.upload(dO, 'scratch');
      const dq = gpu.alloc(batch * tq * qL.stride * 4, 'scratch');
      const kvN = batch * tk * KVH * D;
      const dkv = gpu.alloc(2 * kvN * 4, 'scratch');
      gpu.fill(dq, POISON);
      gpu.fill(dkv, POISON);
      attentionBackward(gpu, code, { ...spec, dO: dOb, dq, dkv, dk: { stride: KVH * D, off: 0 }, dv: { stride: KVH * D, off: kvN } });
      const g = attentionBackwardCpu({ q, k, v, mask }, dO, shape);
      const dqAll = await gpu.readF32(dq, batch * tq * qL.stride);
      const dqGot = new Float32Array(q.length);
      for (let r = 0; r < batch * tq; r++) dqGot.set(dqAll.subarray(r * qL.stride + (qL.off ?? 0), r * qL.stride + (qL.off ?? 0) + H * D), r * H * D);
      const dkvGot = await gpu.readF32(dkv, 2 * kvN);
      expect(relErr(dqGot, g.dq)).toBeLessThan(1e-5);
      expect(relErr(dkvGot.subarray(0, kvN), g.dk)).toBeLessThan(1e-5);
      expect(relErr(dkvGot.subarray(kvN), g.dv)).toBeLessThan(1e-5);

      // CPU gradients against finite differences of the float64 forward.
      const loss = (qq: ArrayLike<number>, kk: ArrayLike<number>, vv: ArrayLike<number>) => dot(attentionCpu({ q: qq, k: kk, v: vv, mask }, shape), dO);
      const cq = someCoords(q.length, 10);
      expect(relErr(pick(g.dq, cq), finiteDiff((x) => loss(x, k, v), q, cq))).toBeLessThan(1e-6);
      const ck = someCoords(k.length, 10);
      expect(relErr(pick(g.dk, ck), finiteDiff((x) => loss(q, x, v), k, ck))).toBeLessThan(1e-6);
      expect(relErr(pick(g.dv, ck), finiteDiff((x) => loss(q, k, x), v, ck))).toBeLessThan(1e-6);
      gpu.release(...bufs, o, stats, dOb, dq, dkv, maskBuf);
    });
  }
});
