/**
 * Checks the NF4 implementation against a folder in the bnb-nf4 fixture format
 * (tests/fixtures/bnb-nf4/README.md): every case file and every Linear4bit state dict, on the
 * CPU reference and on the GPU kernels. Used by the `nf4-check` command and its tests.
 *
 * Rules (from the fixture README): the CPU reference must match packed bytes, absmax, nested
 * codes and nested absmax (from the stored offset), restored absmax and both dequantised
 * outputs bit for bit, and the offset within 2 ulp. The GPU, given the stored state, must match
 * `dequant` bit for bit and `dq.dequant` up to 1 ulp of absmax' (WGSL may fuse a·b + c); its
 * quantiser must give the same absmax and the same codes except ±1 flips at (near) ties.
 * Layer outputs are compared with a relative tolerance (max|a−b| / max|b|): 1e-5 for float32
 * layers, 1e-2 for 16-bit layers (bitsandbytes computes those in the 16-bit dtype).
 *
 * Where a block's absmax (restored absmax' when double-quantised) is subnormal, a GPU
 * dequantisation may give +0 where the reference gives −0: WGSL lets an implementation flush
 * subnormal f32 values, and 0 × (a flushed −7.8e-42) is +0. Stored bytes are still compared
 * exactly; dequantised values in such blocks compare +0 = −0, and the case's line says so.
 * A Linear4bit `.expected` file may leave out the forward (`x`, `y`): the state dict and the
 * dequantised weight are then checked alone, and the line says the forward was not checked.
 */
import type { Gpu } from '../gpu/runtime';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors';
import { NF4_CODE, NF4_MIDPOINTS, NF4_BLOCKSIZE } from './tables';
import {
  castToDtype,
  dequantizeNF4,
  effectiveAbsmax,
  meanOffset,
  nf4Codes,
  quantizeNested,
  quantizeNF4,
  restoreAbsmax,
  unpackCodes,
  type Nf4Dtype,
  type Nf4Quantized,
} from './reference';
import { linear4bitPrefixes, linear4bitTensors, quantStateJson, readLinear4bit } from './state-dict';
import { caseDtype, companionOf, f32Ulps, fixtureKind } from './fixture-case';
import { dequantizeGpu, downloadNf4, quantizeToGpu, releaseNf4, uploadNf4, type Nf4Shaders, type Nf4Source } from './gpu';
import { nf4LinearForward } from '../kernels/nf4-matmul';
import { linear4bitForwardCpu } from './linear-reference';

export interface CheckResult {
  name: string;
  ok: boolean;
  /** What failed, each naming the tensor and the first differing index. */
  failures: string[];
  /** Facts worth printing (GPU tie flips, offset ulps). */
  notes: string[];
}

export interface FolderReader {
  list(): Promise<string[]>;
  read(name: string): Promise<Uint8Array>;
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

export class Checker {
  readonly failures: string[] = [];
  readonly notes: string[] = [];
  same(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
    if (got.length !== want.length) {
      this.failures.push(`${what}: length ${got.length}, expected ${want.length}`);
      return;
    }
    const i = firstDiff(got, want);
    if (i >= 0) this.failures.push(`${what}: first difference at index ${i}: ${got[i]} vs ${want[i]}`);
  }
  within(what: string, value: number, limit: number): void {
    if (!(value <= limit)) this.failures.push(`${what}: ${value} exceeds ${limit}`);
  }
  result(name: string): CheckResult {
    return { name, ok: this.failures.length === 0, failures: this.failures, notes: this.notes };
  }
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let r = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (Number.isNaN(x)) return Infinity;
    d = Math.max(d, x);
    r = Math.max(r, Math.abs(b[i]));
  }
  return r === 0 ? d : d / r;
}

const DTYPE_TOLERANCE: Record<Nf4Dtype, number> = { float32: 1e-5, bfloat16: 1e-2, float16: 1e-2 };

/** The input as the GPU quantiser takes it: f32, or the raw 16-bit bits. */
function gpuSource(file: SafetensorsFile, name: string): Nf4Source {
  const dtype = file.info(name).dtype;
  if (dtype === 'F32') return file.f32(name);
  const raw = file.raw(name);
  return { bits: new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2), dtype: dtype === 'BF16' ? 'bf16' : 'f16' };
}

/**
 * GPU codes vs the reference codes: equal except ±1 where the reference's normalised value
 * lies within 4 ulp of the midpoint between the two codes (GPU division/reciprocal rounding).
 */
function compareCodes(c: Checker, what: string, got: Uint8Array, want: Uint8Array, input: Float32Array, absmax: Float32Array): void {
  let flips = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    const lo = Math.min(got[i], want[i]);
    const a = Math.max(absmax[Math.floor(i / NF4_BLOCKSIZE)], Math.fround(1e-38));
    const s = Math.fround(input[i] / a);
    if (Math.abs(got[i] - want[i]) !== 1 || f32Ulps(s, NF4_MIDPOINTS[lo]) > 4) {
      c.failures.push(`${what}: code ${got[i]} vs ${want[i]} at element ${i} (normalised ${s}), not a tie`);
      return;
    }
    flips++;
  }
  if (flips) c.notes.push(`${what}: ${flips} tie flip(s)`);
}

const SMALLEST_NORMAL_F32 = 2 ** -126;
const isSubnormal = (a: number): boolean => a !== 0 && Math.abs(a) < SMALLEST_NORMAL_F32;

/**
 * GPU dequantisation vs the reference: bit-exact, or within 1 ulp of absmax' when
 * double-quantised; in blocks whose absmax is subnormal, +0 and −0 compare equal.
 */
export function compareDequant(c: Checker, what: string, got: Float32Array, q: Nf4Quantized, dtype: Nf4Dtype, want: Uint8Array): void {
  const gotBytes = bytesOf(castToDtype(got, dtype));
  if (firstDiff(gotBytes, want) < 0) return;
  const absmax = effectiveAbsmax(q);
  const ref = dequantizeNF4(q);
  // Signed zeros in blocks with a subnormal absmax: count them, then compare the rest.
  let signedZeros = 0;
  const zeroBlocks = new Set<number>();
  const settled = new Float32Array(got);
  for (let i = 0; i < got.length; i++) {
    const b = Math.floor(i / NF4_BLOCKSIZE);
    if (got[i] === 0 && ref[i] === 0 && !Object.is(got[i], ref[i]) && isSubnormal(absmax[b])) {
      settled[i] = ref[i];
      signedZeros++;
      zeroBlocks.add(b);
    }
  }
  if (signedZeros) {
    const example = absmax[[...zeroBlocks][0]];
    c.notes.push(`${what}: ${signedZeros} element(s) in ${zeroBlocks.size} block(s) whose absmax is subnormal (${example.toPrecision(2)}) compared with +0 = −0`);
  }
  const settledBytes = bytesOf(castToDtype(settled, dtype));
  if (firstDiff(settledBytes, want) < 0) return;
  if (!q.nested) {
    c.same(what, settledBytes, want);
    return;
  }
  const codes = unpackCodes(q.packed, got.length);
  const up = new Float32Array(1);
  const upBits = new Uint32Array(up.buffer);
  let fused = 0;
  for (let i = 0; i < got.length; i++) {
    if (Object.is(settled[i], ref[i])) continue;
    const a = absmax[Math.floor(i / NF4_BLOCKSIZE)];
    up[0] = a;
    const candidates = [upBits[0] + 1, upBits[0] - 1].map((b) => {
      upBits[0] = b;
      return Math.fround(q.quantMap[codes[i]] * up[0]);
    });
    if (!candidates.some((v) => Object.is(v, settled[i]))) {
      c.failures.push(`${what}: element ${i} is ${got[i]}, expected ${ref[i]} (absmax' ${a}, code ${codes[i]})`);
      return;
    }
    fused++;
  }
  c.notes.push(`${what}: ${fused} element(s) off by 1 ulp of absmax' (fused multiply-add)`);
}

/**
 * A power of two that keeps every nonzero x·w product of the fused-forward check a normal
 * float32 (1 when they already are): weights as small as 1e-37 would otherwise give subnormal
 * products that WGSL may flush, which says nothing about the kernel. Scaling by 2^k is exact.
 */
function normalProductScale(x: Float32Array, w: Float32Array): number {
  const minAbs = (a: Float32Array) => a.reduce((m, v) => (v !== 0 && Math.abs(v) < m ? Math.abs(v) : m), Infinity);
  const smallest = minAbs(x) * minAbs(w);
  if (!(smallest < 2 ** -120)) return 1;
  return 2 ** Math.ceil(Math.log2(2 ** -120 / smallest));
}

async function readGpuF32(gpu: Gpu, run: (out: ReturnType<Gpu['alloc']>) => void, count: number): Promise<Float32Array> {
  const out = gpu.alloc(count * 4, 'scratch', 'nf4-check-out');
  gpu.fill(out, 0x7fc0dead);
  run(out);
  const values = await gpu.readF32(out, count);
  gpu.release(out);
  return values;
}

/** One quantisation case file (`input`, `packed`, `absmax`, `dq.*`, …). */
export async function checkCase(file: SafetensorsFile, gpu: Gpu | null, shaders: Nf4Shaders | null): Promise<CheckResult> {
  const c = new Checker();
  const input = file.f32('input');
  const shape = file.info('input').shape;
  const dtype = caseDtype(file);
  const storedOffset = file.f32('dq.offset')[0];
  const wantAbsmax = file.f32('absmax');

  // CPU reference.
  const { codes, absmax } = nf4Codes(input);
  c.same('cpu codes', codes, file.raw('codes'));
  c.same('cpu absmax', bits(absmax), bits(wantAbsmax));
  const plain = quantizeNF4(input, shape, { doubleQuant: false });
  c.same('cpu packed', plain.packed, file.raw('packed'));
  c.same('cpu dequant', bytesOf(castToDtype(dequantizeNF4(plain), dtype)), file.raw('dequant'));
  const offsetUlps = f32Ulps(meanOffset(absmax), storedOffset);
  c.within('cpu offset ulps', offsetUlps, 2);
  const nested = quantizeNested(wantAbsmax, storedOffset);
  c.same('cpu absmax - offset', bits(Float32Array.from(wantAbsmax, (a) => Math.fround(a - storedOffset))), bits(file.f32('dq.absmax_minus_offset')));
  c.same('cpu qabsmax', nested.qabsmax, file.raw('dq.qabsmax'));
  c.same('cpu nested_absmax', bits(nested.nestedAbsmax), bits(file.f32('dq.nested_absmax')));
  c.same('cpu absmax_dequant', bits(restoreAbsmax(nested)), bits(file.f32('dq.absmax_dequant')));
  const dq: Nf4Quantized = { ...plain, absmax: undefined, nested };
  c.same('cpu dq.dequant', bytesOf(castToDtype(dequantizeNF4(dq), dtype)), file.raw('dq.dequant'));

  if (gpu && shaders) {
    const n = input.length;
    // Dequantise the stored states.
    const storedPlain: Nf4Quantized = { shape, packed: file.raw('packed'), absmax: wantAbsmax, quantMap: NF4_CODE };
    const storedDq: Nf4Quantized = { shape, packed: file.raw('packed'), nested, quantMap: NF4_CODE };
    for (const [label, q, want] of [['gpu dequant', storedPlain, 'dequant'], ['gpu dq.dequant', storedDq, 'dq.dequant']] as const) {
      const w = uploadNf4(gpu, q);
      compareDequant(c, label, await readGpuF32(gpu, (out) => dequantizeGpu(gpu, shaders, w, out), n), q, dtype, file.raw(want));
      releaseNf4(gpu, w);
    }
    // Quantise on the GPU (small chunks, so chunking is exercised too).
    const w = await quantizeToGpu(gpu, shaders, gpuSource(file, 'input'), shape, { doubleQuant: true, chunkBlocks: 7 });
    const got = await downloadNf4(gpu, w);
    compareCodes(c, 'gpu codes', unpackCodes(got.packed, n), codes, input, absmax);
    const gotOffsetUlps = f32Ulps(got.nested!.offset, storedOffset);
    c.within('gpu offset ulps', gotOffsetUlps, 2);
    const gpuAbsmax = quantizeNested(absmax, got.nested!.offset);
    c.same('gpu qabsmax (at its own offset)', got.nested!.qabsmax, gpuAbsmax.qabsmax);
    c.same('gpu nested_absmax (at its own offset)', bits(got.nested!.nestedAbsmax), bits(gpuAbsmax.nestedAbsmax));
    releaseNf4(gpu, w);
    const wPlain = await quantizeToGpu(gpu, shaders, gpuSource(file, 'input'), shape, { doubleQuant: false });
    c.same('gpu absmax', bits((await downloadNf4(gpu, wPlain)).absmax!), bits(wantAbsmax));
    releaseNf4(gpu, wPlain);
    // The fused matmul on this tensor as a [rows, cols] weight, from the stored double-quant state.
    if (shape.length === 2) {
      const M = 3;
      const x = Float32Array.from({ length: M * shape[1] }, (_, i) => Math.sin(i * 0.37 + 0.1));
      const scale = normalProductScale(x, dequantizeNF4(storedDq));
      if (scale !== 1) {
        for (let i = 0; i < x.length; i++) x[i] *= scale;
        c.notes.push(`gpu fused forward: input scaled by 2^${Math.log2(scale)} so that x·w products stay normal float32 (WGSL may flush subnormals)`);
      }
      const wq = uploadNf4(gpu, storedDq);
      const xg = gpu.upload(x, 'scratch');
      const y = await readGpuF32(gpu, (out) => nf4LinearForward(gpu, shaders, { x: xg, weight: wq, y: out, M }), M * shape[0]);
      c.within('gpu fused forward rel err', relErr(y, linear4bitForwardCpu(x, storedDq, null, M)), 1e-5);
      gpu.release(xg);
      releaseNf4(gpu, wq);
    }
  }
  if (offsetUlps) c.notes.push(`offset ${offsetUlps} ulp from bitsandbytes'`);
  return c.result(file.file);
}

/** One Linear4bit state dict with its `.expected.safetensors` companion. */
export async function checkStateDict(file: SafetensorsFile, expected: SafetensorsFile | null, gpu: Gpu | null, shaders: Nf4Shaders | null): Promise<CheckResult> {
  const c = new Checker();
  const prefixes = linear4bitPrefixes(file);
  if (!prefixes.length) c.failures.push('no weight.quant_state.bitsandbytes__nf4 tensor');
  for (const prefix of prefixes) {
    const state = readLinear4bit(file, prefix);
    const q = state.quant;
    const stateName = `${prefix}weight.quant_state.bitsandbytes__nf4`;
    c.same(`${stateName} JSON`, new TextEncoder().encode(quantStateJson(q, state.dtype)), file.raw(stateName));
    for (const t of linear4bitTensors(state)) c.same(`round trip ${t.name}`, bytesOf(t.data), file.raw(t.name));
    if (prefixes.length === 1) c.same('round trip file bytes', writeSafetensors(linear4bitTensors(state), file.header.metadata), file.bytes);
    if (!expected) {
      c.notes.push(`no ${companionOf(file.file)}: layer output not checked`);
      continue;
    }
    const companion = expected.file;
    const n = q.shape.reduce((a, b) => a * b, 1);
    if (!expected.has('dequant_weight')) {
      c.failures.push(`${companion}: no "dequant_weight" tensor`);
      continue;
    }
    const dequantWant = expected.raw('dequant_weight');
    c.same('cpu dequant_weight', bytesOf(castToDtype(dequantizeNF4(q), state.dtype)), dequantWant);
    // The input weight lets the quantiser be checked too; without it only the stored state is.
    const inputWeight = expected.has('input_weight') ? expected.f32('input_weight') : null;
    if (inputWeight) {
      const requant = quantizeNF4(inputWeight, q.shape, { doubleQuant: !!q.nested, offset: q.nested?.offset });
      c.same('cpu requantised packed', requant.packed, q.packed);
      if (q.nested) c.same('cpu requantised qabsmax', requant.nested!.qabsmax, q.nested.qabsmax);
      else c.same('cpu requantised absmax', bits(requant.absmax!), bits(q.absmax!));
    } else c.notes.push(`no "input_weight" in ${companion}: quantisation not checked`);
    // The forward (`x`, `y`) is optional; one without the other is a broken file.
    const hasX = expected.has('x');
    const hasY = expected.has('y');
    let forward: { x: Float32Array; M: number; bias: Float32Array | null; yWant: Float32Array; tol: number } | null = null;
    if (hasX !== hasY) c.failures.push(`${companion}: has "${hasX ? 'x' : 'y'}" without "${hasX ? 'y' : 'x'}"`);
    else if (hasX) {
      forward = {
        x: expected.f32('x'),
        M: expected.info('x').shape[0],
        bias: expected.has('input_bias') ? expected.f32('input_bias') : null,
        yWant: expected.f32('y'),
        tol: DTYPE_TOLERANCE[state.dtype],
      };
      c.within('cpu y rel err', relErr(linear4bitForwardCpu(forward.x, q, forward.bias, forward.M), forward.yWant), forward.tol);
    } else c.notes.push(`no "x", "y" in ${companion}: forward not checked (state dict and dequantised weight only)`);

    if (gpu && shaders) {
      const w = uploadNf4(gpu, q);
      compareDequant(c, 'gpu dequant_weight', await readGpuF32(gpu, (out) => dequantizeGpu(gpu, shaders, w, out), n), q, state.dtype, dequantWant);
      if (forward) {
        const { x, M, bias, yWant, tol } = forward;
        const xg = gpu.upload(x, 'scratch');
        const bg = bias ? gpu.upload(bias, 'scratch') : undefined;
        const [N] = q.shape;
        for (const tiledOnly of [false, true]) {
          const y = await readGpuF32(gpu, (out) => nf4LinearForward(gpu, shaders, { x: xg, weight: w, bias: bg, y: out, M, tiledOnly }), M * N);
          c.within(`gpu y rel err (${tiledOnly ? 'tiled' : 'gemv'})`, relErr(y, yWant), tol);
        }
        gpu.release(xg, bg);
      }
      releaseNf4(gpu, w);
      if (inputWeight) {
        const wq = await quantizeToGpu(gpu, shaders, gpuSource(expected, 'input_weight'), q.shape, { doubleQuant: !!q.nested });
        const got = await downloadNf4(gpu, wq);
        const { codes, absmax } = nf4Codes(inputWeight);
        compareCodes(c, 'gpu requantised codes', unpackCodes(got.packed, n), codes, inputWeight, absmax);
        releaseNf4(gpu, wq);
      }
    }
  }
  return c.result(file.file);
}

export interface FolderSummary {
  ok: boolean;
  cases: number;
  failed: string[];
  results: CheckResult[];
}

/** Checks every case file and state dict of a folder; `report` gets one result per file as it finishes. */
export async function checkNf4Folder(reader: FolderReader, gpu: Gpu | null, shaders: Nf4Shaders | null, report: (r: CheckResult) => void): Promise<FolderSummary> {
  const names = (await reader.list()).sort();
  const results: CheckResult[] = [];
  const load = async (name: string) => new SafetensorsFile(await reader.read(name), name);
  for (const name of names) {
    const kind = fixtureKind(name);
    if (kind !== 'case' && kind !== 'state-dict') continue;
    let result: CheckResult;
    try {
      if (kind === 'case') result = await checkCase(await load(name), gpu, shaders);
      else {
        const companion = companionOf(name);
        result = await checkStateDict(await load(name), names.includes(companion) ? await load(companion) : null, gpu, shaders);
      }
    } catch (err) {
      result = { name, ok: false, failures: [`error: ${(err as Error).message}`], notes: [] };
    }
    results.push(result);
    report(result);
  }
  const failed = results.filter((r) => !r.ok).map((r) => r.name);
  return { ok: results.length > 0 && failed.length === 0, cases: results.length, failed, results };
}
