/**
 * The SiLU-gated MLP activation of Llama, Qwen2 and Phi-3: act = silu(gate) · up, and its
 * gradients d(gate), d(up) from d(act). Each operand is a [rows, ffn] slice of rows of its own
 * stride, so gate and up can be two buffers (gate_proj, up_proj) or the two halves of Phi-3's
 * fused gate_up_proj output (`fusedGateUp`), and the gradients land in the same layouts.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { requirePositiveIntegers } from '../util/dims';

/** `ffn` floats at `off` within rows of `stride` floats (defaults: stride = ffn, off = 0). */
export interface RowSlice {
  buf: GpuBuffer;
  stride?: number;
  off?: number;
}

export interface SwigluSpec {
  rows: number;
  ffn: number;
  gate: RowSlice;
  up: RowSlice;
  /** The output; its buffer may not be gate's or up's (a read-write binding may not alias a read one). */
  act: RowSlice;
}

export interface SwigluBackwardSpec {
  rows: number;
  ffn: number;
  /** The forward's inputs (the pre-activations). */
  gate: RowSlice;
  up: RowSlice;
  dAct: RowSlice;
  /** Outputs, overwritten: two buffers, or one (disjoint slices, e.g. the fused layout `fusedGateUp(dGateUp, ffn)`). */
  dGate: RowSlice;
  dUp: RowSlice;
}

/**
 * Phi-3's gate_up_proj output [rows, 2·ffn]: features [0, ffn) are the gate, [ffn, 2·ffn) the up
 * projection (transformers' `gate, up_states = gate_up_proj(x).chunk(2, dim=-1)`).
 */
export function fusedGateUp(buf: GpuBuffer, ffn: number): { gate: RowSlice; up: RowSlice } {
  return { gate: { buf, stride: 2 * ffn, off: 0 }, up: { buf, stride: 2 * ffn, off: ffn } };
}

interface Placed {
  buf: GpuBuffer;
  stride: number;
  off: number;
}

function place(kind: string, name: string, s: RowSlice, rows: number, ffn: number): Placed {
  const stride = s.stride ?? ffn;
  const off = s.off ?? 0;
  if (!Number.isInteger(stride) || stride < ffn) throw new RangeError(`${kind}: ${name}.stride = ${stride} is less than ffn = ${ffn}`);
  if (!Number.isInteger(off) || off < 0) throw new RangeError(`${kind}: ${name}.off = ${off} is not a non-negative integer`);
  const floats = (rows - 1) * stride + off + ffn;
  if (floats * 4 > s.buf.size) throw new RangeError(`${kind}: ${name} needs ${floats * 4} bytes (${rows} rows of stride ${stride} from ${off}), its buffer has ${s.buf.size}`);
  return { buf: s.buf, stride, off };
}

function checkDims(kind: string, rows: number, ffn: number): void {
  requirePositiveIntegers(kind, { rows, ffn });
}

/** Whether two slices of one buffer share an element (unequal strides: whether their spans meet). */
function overlap(a: Placed, b: Placed, rows: number, ffn: number): boolean {
  if (a.stride !== b.stride) {
    const end = (p: Placed) => (rows - 1) * p.stride + p.off + ffn;
    return a.off < end(b) && b.off < end(a);
  }
  // Element r·S + off + c of both: some row distance k in (−rows, rows) with |k·S − d| < ffn.
  const d = Math.abs(a.off - b.off);
  const k0 = Math.min(Math.floor(d / a.stride), rows - 1);
  const k1 = Math.min(k0 + 1, rows - 1);
  return Math.abs(k0 * a.stride - d) < ffn || Math.abs(k1 * a.stride - d) < ffn;
}

function params(rows: number, ffn: number, g: Placed, u: Placed, o: Placed, dg?: Placed, du?: Placed): number[] {
  return [rows, ffn, g.stride, g.off, u.stride, u.off, o.stride, o.off, dg?.stride ?? 0, dg?.off ?? 0, du?.stride ?? 0, du?.off ?? 0];
}

function noAlias(kind: string, outputs: [string, Placed][], inputs: [string, Placed][]): void {
  for (const [on, o] of outputs)
    for (const [inName, i] of inputs) {
      if (o.buf === i.buf) throw new RangeError(`${kind}: ${on} shares a buffer with ${inName}; WebGPU may not bind a buffer read-write and read-only in one dispatch`);
    }
}

export function swigluForward(gpu: Gpu, code: string, s: SwigluSpec): void {
  const kind = 'swigluForward';
  checkDims(kind, s.rows, s.ffn);
  const [g, u, o] = (['gate', 'up', 'act'] as const).map((n) => place(kind, n, s[n], s.rows, s.ffn));
  noAlias(kind, [['act', o]], [['gate', g], ['up', u]]);
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'forward'),
    bindings: [g.buf, u.buf, o.buf, gpu.uniform(params(s.rows, s.ffn, g, u, o))],
    workgroups: gpu.grid(Math.ceil((s.rows * s.ffn) / 256)),
    label: 'swiglu_fwd',
  });
}

export function swigluBackward(gpu: Gpu, code: string, s: SwigluBackwardSpec): void {
  const kind = 'swigluBackward';
  checkDims(kind, s.rows, s.ffn);
  const [g, u, d, dg, du] = (['gate', 'up', 'dAct', 'dGate', 'dUp'] as const).map((n) => place(kind, n, s[n], s.rows, s.ffn));
  noAlias(kind, [['dGate', dg], ['dUp', du]], [['gate', g], ['up', u], ['dAct', d]]);
  const shared = dg.buf === du.buf;
  if (shared && overlap(dg, du, s.rows, s.ffn)) throw new RangeError(`${kind}: dGate and dUp overlap in their shared buffer`);
  const p = gpu.uniform(params(s.rows, s.ffn, g, u, d, dg, du));
  gpu.dispatch({
    pipeline: gpu.pipeline(code, shared ? 'backward_shared' : 'backward'),
    bindings: shared ? [g.buf, u.buf, d.buf, dg.buf, p] : [g.buf, u.buf, d.buf, dg.buf, du.buf, p],
    workgroups: gpu.grid(Math.ceil((s.rows * s.ffn) / 256)),
    label: 'swiglu_bwd',
  });
}

// ---- CPU reference (float64)

export const sigmoidCpu = (g: number): number => 1 / (1 + Math.exp(-g));
export const siluCpu = (g: number): number => g * sigmoidCpu(g);
/** d silu / d g = s · (1 + g · (1 − s)), s = sigmoid(g). */
export function siluGradCpu(g: number): number {
  const s = sigmoidCpu(g);
  return s * (1 + g * (1 - s));
}

/** A CPU-side slice: the array plus the layout of the GPU spec. */
export interface CpuSlice<T extends ArrayLike<number> = ArrayLike<number>> {
  data: T;
  stride?: number;
  off?: number;
}

const at = (s: CpuSlice, ffn: number, r: number, c: number) => r * (s.stride ?? ffn) + (s.off ?? 0) + c;

/** act = silu(gate) · up, written into `act`'s slice. */
export function swigluCpu(rows: number, ffn: number, gate: CpuSlice, up: CpuSlice, act: CpuSlice<Float64Array>): void {
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < ffn; c++) {
      act.data[at(act, ffn, r, c)] = siluCpu(gate.data[at(gate, ffn, r, c)]) * up.data[at(up, ffn, r, c)];
    }
}

/** d(gate) = d(act) · up · silu'(gate), d(up) = d(act) · silu(gate), written into their slices. */
export function swigluBackwardCpu(rows: number, ffn: number, gate: CpuSlice, up: CpuSlice, dAct: CpuSlice, dGate: CpuSlice<Float64Array>, dUp: CpuSlice<Float64Array>): void {
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < ffn; c++) {
      const g = gate.data[at(gate, ffn, r, c)];
      const d = dAct.data[at(dAct, ffn, r, c)];
      dGate.data[at(dGate, ffn, r, c)] = d * up.data[at(up, ffn, r, c)] * siluGradCpu(g);
      dUp.data[at(dUp, ffn, r, c)] = d * siluCpu(g);
    }
}
