import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import {
  fusedGateUp,
  siluCpu,
  siluGradCpu,
  swigluBackward,
  swigluBackwardCpu,
  swigluCpu,
  swigluForward,
  type RowSlice,
} from '../../workers/kernels/swiglu';
import type { GpuBuffer } from '../../workers/gpu/pool';
import { POISON, randn, relErr, testGpu } from './helpers';
import hf from '../fixtures/llama-ops/transformers-4.44.json';

/** Layout of one operand, without its buffer. */
type Lay = { stride: number; off: number };

/** Gate and up pre-activations with a spread that includes saturated values (silu's tails) and 0. */
function preActivations(n: number, seed: number): Float32Array {
  const x = randn(n, seed, 3);
  [x[0], x[1], x[2], x[3]] = [0, 40, -40, -100];
  return x;
}

/** Floats of `words` outside the slices (the row layout of `lays`) that are no longer POISON. */
function strayWrites(words: Uint32Array, rows: number, ffn: number, lays: Lay[]): number {
  const inside = new Uint8Array(words.length);
  for (const l of lays) for (let r = 0; r < rows; r++) inside.fill(1, r * l.stride + l.off, r * l.stride + l.off + ffn);
  let stray = 0;
  words.forEach((w, i) => void (!inside[i] && w !== POISON && stray++));
  return stray;
}

/** The [rows, ffn] values of a slice. */
function extract(all: ArrayLike<number>, rows: number, ffn: number, l: Lay): Float64Array {
  const out = new Float64Array(rows * ffn);
  for (let r = 0; r < rows; r++) for (let c = 0; c < ffn; c++) out[r * ffn + c] = all[r * l.stride + l.off + c];
  return out;
}

interface Case {
  name: string;
  rows: number;
  ffn: number;
  /** 'fused': gate and up in one [rows, 2·ffn] row (Phi-3), and the gradients likewise. */
  inputs: 'separate' | 'fused';
  /** Where d(gate), d(up) go: 'separate' buffers, 'fused' layout, or two dense 'halves' of one buffer. */
  grads: 'separate' | 'fused' | 'halves';
  /** act and d(act) in padded rows of this stride (else dense). */
  actLay?: Lay;
}

const cases: Case[] = [
  { name: 'gate_proj and up_proj in two buffers, act in padded rows', rows: 7, ffn: 300, inputs: 'separate', grads: 'separate', actLay: { stride: 305, off: 3 } },
  { name: "Phi-3's fused gate_up_proj row [gate | up], gradients in the same layout", rows: 5, ffn: 173, inputs: 'fused', grads: 'fused' },
  { name: 'two buffers in, gradients as two dense halves of one buffer', rows: 3, ffn: 577, inputs: 'separate', grads: 'halves' },
];

describe('SiLU-gated MLP activation (swiglu)', () => {
  it('CPU reference: silu = g·sigmoid(g), its derivative against central differences', () => {
    expect(siluCpu(0)).toBe(0);
    expect(siluCpu(1)).toBeCloseTo(1 / (1 + Math.exp(-1)), 15);
    expect(siluCpu(-1000)).toBeCloseTo(0, 300);
    for (const g of [-9, -2.5, -0.3, 0, 0.4, 1.7, 6]) {
      const h = 1e-6;
      expect(Math.abs((siluCpu(g + h) - siluCpu(g - h)) / (2 * h) - siluGradCpu(g))).toBeLessThan(1e-8);
    }
  });

  for (const c of cases) {
    it(`${c.name}, ${c.rows}x${c.ffn}`, async () => {
      const gpu = await testGpu();
      const { rows, ffn } = c;
      const n = rows * ffn;
      const g = preActivations(n, 1);
      const u = randn(n, 2, 2);
      const dAct = randn(n, 3);
      const actLay = c.actLay ?? { stride: ffn, off: 0 };
      const bufs: GpuBuffer[] = [];
      const up = (a: Float32Array) => {
        const b = gpu.upload(a, 'scratch');
        bufs.push(b);
        return b;
      };
      const alloc = (floats: number) => {
        const b = gpu.alloc(floats * 4, 'scratch');
        gpu.fill(b, POISON);
        bufs.push(b);
        return b;
      };
      /** [rows, ffn] data placed in a layout of `floats` floats, the rest POISON. */
      const placed = (data: Float32Array, l: Lay, floats: number, into?: Float32Array) => {
        const out = into ?? new Float32Array(new Uint32Array(floats).fill(POISON).buffer);
        for (let r = 0; r < rows; r++) out.set(data.subarray(r * ffn, (r + 1) * ffn), r * l.stride + l.off);
        return out;
      };

      // Inputs.
      let gate: RowSlice, upS: RowSlice;
      let gLay: Lay, uLay: Lay;
      if (c.inputs === 'fused') {
        [gLay, uLay] = [{ stride: 2 * ffn, off: 0 }, { stride: 2 * ffn, off: ffn }];
        ({ gate, up: upS } = fusedGateUp(up(placed(u, uLay, 2 * n, placed(g, gLay, 2 * n))), ffn));
      } else {
        [gLay, uLay] = [{ stride: ffn, off: 0 }, { stride: ffn, off: 0 }];
        [gate, upS] = [{ buf: up(g) }, { buf: up(u) }];
      }
      const actFloats = rows * actLay.stride;
      const act = alloc(actFloats);
      swigluForward(gpu, SHADERS.swiglu, { rows, ffn, gate, up: upS, act: { buf: act, ...actLay } });
      const want = new Float64Array(n);
      swigluCpu(rows, ffn, { data: g }, { data: u }, { data: want });
      const actAll = await gpu.readF32(act, actFloats);
      expect(relErr(extract(actAll, rows, ffn, actLay), want), 'act').toBeLessThan(2e-6);
      expect(strayWrites(new Uint32Array(actAll.buffer), rows, ffn, [actLay]), 'writes outside act').toBe(0);

      // Backward.
      const dActB = up(placed(dAct, actLay, actFloats));
      let dgLay: Lay, duLay: Lay, gradFloats: number;
      let dGate: RowSlice, dUp: RowSlice;
      if (c.grads === 'separate') {
        [dgLay, duLay, gradFloats] = [{ stride: ffn, off: 0 }, { stride: ffn, off: 0 }, n];
        [dGate, dUp] = [{ buf: alloc(n) }, { buf: alloc(n) }];
      } else {
        [dgLay, duLay] = c.grads === 'fused' ? [{ stride: 2 * ffn, off: 0 }, { stride: 2 * ffn, off: ffn }] : [{ stride: ffn, off: 0 }, { stride: ffn, off: n }];
        gradFloats = 2 * n;
        const b = alloc(gradFloats);
        ({ gate: dGate, up: dUp } = c.grads === 'fused' ? fusedGateUp(b, ffn) : { gate: { buf: b, ...dgLay }, up: { buf: b, ...duLay } });
      }
      swigluBackward(gpu, SHADERS.swiglu, { rows, ffn, gate, up: upS, dAct: { buf: dActB, ...actLay }, dGate, dUp });
      const dgWant = new Float64Array(n);
      const duWant = new Float64Array(n);
      swigluBackwardCpu(rows, ffn, { data: g }, { data: u }, { data: dAct }, { data: dgWant }, { data: duWant });
      const dgAll = await gpu.readF32(dGate.buf, gradFloats);
      const duAll = dUp.buf === dGate.buf ? dgAll : await gpu.readF32(dUp.buf, gradFloats);
      expect(relErr(extract(dgAll, rows, ffn, dgLay), dgWant), 'd gate').toBeLessThan(2e-6);
      expect(relErr(extract(duAll, rows, ffn, duLay), duWant), 'd up').toBeLessThan(2e-6);
      if (dUp.buf === dGate.buf) expect(strayWrites(new Uint32Array(dgAll.buffer), rows, ffn, [dgLay, duLay]), 'writes outside the gradients').toBe(0);
      // The fused reference layout through the CPU slices, to check they place what the GPU does.
      if (c.grads === 'fused') {
        const dgu = new Float64Array(2 * n);
        swigluBackwardCpu(rows, ffn, { data: g }, { data: u }, { data: dAct }, { data: dgu, ...dgLay }, { data: dgu, ...duLay });
        expect(relErr(dgAll, dgu)).toBeLessThan(2e-6);
      }
      gpu.release(...bufs);
    });
  }

  it('refuses aliased, overlapping or undersized operands, naming the field', async () => {
    const gpu = await testGpu();
    const a = gpu.alloc(4 * 40, 'scratch');
    const b = gpu.alloc(4 * 40, 'scratch');
    const d = gpu.alloc(4 * 40, 'scratch');
    const base = { rows: 4, ffn: 5, gate: { buf: a }, up: { buf: a, off: 20 } };
    expect(() => swigluForward(gpu, SHADERS.swiglu, { ...base, act: { buf: a, off: 20 } })).toThrow(/act shares a buffer with gate/);
    expect(() => swigluForward(gpu, SHADERS.swiglu, { ...base, act: { buf: b, stride: 4 } })).toThrow(/act.stride = 4 is less than ffn = 5/);
    expect(() => swigluForward(gpu, SHADERS.swiglu, { ...base, act: { buf: b, off: 21 } })).toThrow(/act needs 164 bytes/);
    expect(() => swigluForward(gpu, SHADERS.swiglu, { ...base, ffn: 0, act: { buf: b } })).toThrow(/ffn = 0/);
    const bwd = { ...base, dAct: { buf: d } };
    expect(() => swigluBackward(gpu, SHADERS.swiglu, { ...bwd, dGate: { buf: b }, dUp: { buf: b, off: 16 } })).toThrow(/dGate and dUp overlap/);
    expect(() => swigluBackward(gpu, SHADERS.swiglu, { ...bwd, dGate: { buf: b, stride: 10 }, dUp: { buf: b, stride: 10, off: 4 } })).toThrow(/dGate and dUp overlap/);
    expect(() => swigluBackward(gpu, SHADERS.swiglu, { ...bwd, dGate: { buf: b }, dUp: { buf: d } })).toThrow(/dUp shares a buffer with dAct/);
    // Disjoint interleaved slices of one buffer are fine.
    swigluBackward(gpu, SHADERS.swiglu, { ...bwd, dGate: { buf: b, stride: 10 }, dUp: { buf: b, stride: 10, off: 5 } });
    await gpu.done();
    gpu.release(a, b, d);
  });

  it("matches transformers' Phi3MLP on its fused gate_up_proj rows (tests/fixtures/llama-ops)", async () => {
    const gpu = await testGpu();
    const { rows, ffn } = hf.phi3_gate_up;
    const gu = gpu.upload(Float32Array.from(hf.phi3_gate_up.gateUp), 'scratch');
    const dAct = gpu.upload(Float32Array.from(hf.phi3_gate_up.dAct), 'scratch');
    const act = gpu.alloc(rows * ffn * 4, 'scratch');
    const dgu = gpu.alloc(rows * 2 * ffn * 4, 'scratch');
    gpu.fill(act, POISON);
    gpu.fill(dgu, POISON);
    const { gate, up } = fusedGateUp(gu, ffn);
    const grads = fusedGateUp(dgu, ffn);
    swigluForward(gpu, SHADERS.swiglu, { rows, ffn, gate, up, act: { buf: act } });
    swigluBackward(gpu, SHADERS.swiglu, { rows, ffn, gate, up, dAct: { buf: dAct }, dGate: grads.gate, dUp: grads.up });
    expect(relErr(await gpu.readF32(act, rows * ffn), hf.phi3_gate_up.act), 'act').toBeLessThan(2e-6);
    expect(relErr(await gpu.readF32(dgu, rows * 2 * ffn), hf.phi3_gate_up.dGateUp), 'd gate_up').toBeLessThan(2e-6);
    gpu.release(gu, dAct, act, dgu);
  });

  it("matches transformers' LlamaMLP at gate_proj's and up_proj's outputs (tests/fixtures/llama-ops)", async () => {
    const gpu = await testGpu();
    const { rows, ffn } = hf.llama_mlp;
    const [g, u, d] = [hf.llama_mlp.gate, hf.llama_mlp.up, hf.llama_mlp.dAct].map((a) => gpu.upload(Float32Array.from(a), 'scratch'));
    const [act, dg, du] = [0, 1, 2].map(() => gpu.alloc(rows * ffn * 4, 'scratch'));
    for (const b of [act, dg, du]) gpu.fill(b, POISON);
    swigluForward(gpu, SHADERS.swiglu, { rows, ffn, gate: { buf: g }, up: { buf: u }, act: { buf: act } });
    swigluBackward(gpu, SHADERS.swiglu, { rows, ffn, gate: { buf: g }, up: { buf: u }, dAct: { buf: d }, dGate: { buf: dg }, dUp: { buf: du } });
    expect(relErr(await gpu.readF32(act, rows * ffn), hf.llama_mlp.act), 'act').toBeLessThan(2e-6);
    expect(relErr(await gpu.readF32(dg, rows * ffn), hf.llama_mlp.dGate), 'd gate').toBeLessThan(2e-6);
    expect(relErr(await gpu.readF32(du, rows * ffn), hf.llama_mlp.dUp), 'd up').toBeLessThan(2e-6);
    gpu.release(g, u, d, act, dg, du);
  });
});
