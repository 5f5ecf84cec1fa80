/**
 * Writes quantisation cases and Linear4bit state dicts in the bnb-nf4 fixture format, from
 * our own CPU reference, for shapes and seeds the bitsandbytes fixtures do not cover. Such a
 * folder proves only that the GPU kernels and the state-dict code agree with the CPU
 * reference (which the bitsandbytes fixtures pin down), not agreement with bitsandbytes itself.
 */
import { writeSafetensors, type DType, type TensorToWrite } from '../formats/safetensors';
import { f32ArrayToBf16, f32ArrayToF16, bf16ArrayToF32, f16ArrayToF32 } from '../formats/float16';
import { castToDtype, dequantizeNF4, meanOffset, numel, quantizeNF4, restoreAbsmax, nf4Codes, type Nf4Dtype } from './reference';
import { linear4bitTensors, type Linear4bitState } from './state-dict';
import { seededNormals as normals } from '../util/random';


const ST_DTYPE: Record<Nf4Dtype, DType> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' };

/** Rounds f32 values to the dtype and back, so the case's input is exactly representable. */
function inDtype(values: Float32Array, dtype: Nf4Dtype): { f32: Float32Array; stored: ArrayBufferView } {
  if (dtype === 'bfloat16') {
    const bits = f32ArrayToBf16(values);
    return { f32: bf16ArrayToF32(bits), stored: bits };
  }
  if (dtype === 'float16') {
    const bits = f32ArrayToF16(values);
    return { f32: f16ArrayToF32(bits), stored: bits };
  }
  return { f32: values, stored: values };
}

export interface GeneratedCase {
  name: string;
  shape: number[];
  dtype: Nf4Dtype;
  seed: number;
  /** Row scales are drawn from 10^[-spread, spread]; every 7th block is zeroed when `zeroBlocks`. */
  spread: number;
  zeroBlocks: boolean;
}

/** A case file: input, packed, codes, absmax, dequant and the dq.* tensors. */
export function caseFile(c: GeneratedCase): Uint8Array {
  const n = numel(c.shape);
  const raw = normals(n, c.seed);
  const cols = c.shape[c.shape.length - 1];
  const rowScale = normals(Math.ceil(n / cols), c.seed ^ 0x5bd1e995);
  for (let i = 0; i < n; i++) {
    raw[i] *= 10 ** (c.spread * Math.tanh(rowScale[Math.floor(i / cols)]));
    if (c.zeroBlocks && Math.floor(i / 64) % 7 === 3) raw[i] = 0;
  }
  return caseFileFromValues({ ...c, description: 'generated from the CPU reference (not bitsandbytes output)' }, raw);
}

/** A case file of the given values (rounded to the case's dtype first). */
export function caseFileFromValues(c: { name: string; shape: number[]; dtype: Nf4Dtype; description: string; seed?: number }, raw: Float32Array): Uint8Array {
  const n = numel(c.shape);
  if (raw.length !== n) throw new RangeError(`${c.name}: ${raw.length} values for shape [${c.shape.join(', ')}]`);
  const { f32: input, stored } = inDtype(raw, c.dtype);
  const { codes } = nf4Codes(input);
  const plain = quantizeNF4(input, c.shape, { doubleQuant: false });
  const absmax = plain.absmax!;
  const dq = quantizeNF4(input, c.shape, { doubleQuant: true });
  const nested = dq.nested!;
  const offset = meanOffset(absmax);
  const t = (name: string, dtype: DType, shape: number[], data: ArrayBufferView): TensorToWrite => ({ name, dtype, shape, data });
  const dt = ST_DTYPE[c.dtype];
  return writeSafetensors(
    [
      t('input', dt, c.shape, stored),
      t('packed', 'U8', [(n + 1) >> 1, 1], plain.packed),
      t('codes', 'U8', [n], codes),
      t('absmax', 'F32', [absmax.length], absmax),
      t('dequant', dt, c.shape, castToDtype(dequantizeNF4(plain), c.dtype)),
      t('dq.offset', 'F32', [1], new Float32Array([offset])),
      t('dq.absmax_minus_offset', 'F32', [absmax.length], Float32Array.from(absmax, (a) => Math.fround(a - offset))),
      t('dq.qabsmax', 'U8', [absmax.length], nested.qabsmax),
      t('dq.nested_absmax', 'F32', [nested.nestedAbsmax.length], nested.nestedAbsmax),
      t('dq.absmax_dequant', 'F32', [absmax.length], restoreAbsmax(nested)),
      t('dq.dequant', dt, c.shape, castToDtype(dequantizeNF4(dq), c.dtype)),
    ],
    { case: c.name, description: c.description, ...(c.seed === undefined ? {} : { seed: String(c.seed) }), shape: JSON.stringify(c.shape) },
  );
}

/**
 * A case whose all-zero first block gets a negative subnormal absmax' from double quantisation
 * (about −1.6e-39: the 8-bit code nearest to −offset lands just past it). The reference
 * dequantises that block to −0; a GPU that flushes subnormals gives +0. Every input and every
 * other dequantised value is a normal float32 (|x| ≥ 2e-38), so only that block can differ.
 */
export function subnormalAbsmaxCase(name = 'gen_subnormal_absmax_3x64'): Uint8Array {
  const scales = [0, 2, 7].map((k) => k * 1e-37);
  const raw = new Float32Array(scales.length * 64);
  for (let b = 1; b < scales.length; b++) {
    for (let i = 0; i < 64; i++) raw[b * 64 + i] = scales[b] * (i === 0 ? 1 : (i % 2 ? -1 : 1) * (0.1 + 0.9 * Math.abs(Math.sin(i * 0.7 + b))));
  }
  const shape = [scales.length, 64];
  const q = quantizeNF4(raw, shape, { doubleQuant: true });
  const restored = restoreAbsmax(q.nested!);
  const subnormal = (v: number) => v !== 0 && Math.abs(v) < 2 ** -126;
  if (!(restored[0] < 0 && subnormal(restored[0])) || raw.some(subnormal) || dequantizeNF4(q).slice(64).some(subnormal)) {
    throw new Error(`${name}: the construction no longer isolates one subnormal absmax' (block 0: ${restored[0]})`);
  }
  return caseFileFromValues({ name, shape, dtype: 'float32', description: "all-zero block 0 with a negative subnormal double-quantised absmax' (CPU reference, not bitsandbytes output)" }, raw);
}

export interface GeneratedLayer {
  name: string;
  prefix: string;
  inFeatures: number;
  outFeatures: number;
  dtype: Nf4Dtype;
  doubleQuant: boolean;
  seed: number;
  /** false: the `.expected` file has no forward (`x`, `y`), which the format allows. */
  forward?: boolean;
}

/** A Linear4bit state dict and its `.expected` companion (input_weight, input_bias, dequant_weight, x, y). */
export function layerFiles(l: GeneratedLayer): { stateDict: Uint8Array; expected: Uint8Array } {
  const shape = [l.outFeatures, l.inFeatures];
  const scale = (v: Float32Array, s: number) => v.map((x) => x * s);
  const w = inDtype(scale(normals(l.outFeatures * l.inFeatures, l.seed), 0.02), l.dtype);
  const b = inDtype(scale(normals(l.outFeatures, l.seed + 1), 0.1), l.dtype);
  const M = 3;
  const x = inDtype(normals(M * l.inFeatures, l.seed + 2), l.dtype);
  const quant = quantizeNF4(w.f32, shape, { doubleQuant: l.doubleQuant });
  const dequant = dequantizeNF4(quant);
  // y as the layer computes it in its dtype: from the dtype-rounded dequantised weight.
  const wq = inDtype(dequant, l.dtype).f32;
  const y = new Float32Array(M * l.outFeatures);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < l.outFeatures; j++) {
      let acc = b.f32[j];
      for (let k = 0; k < l.inFeatures; k++) acc += x.f32[m * l.inFeatures + k] * wq[j * l.inFeatures + k];
      y[m * l.outFeatures + j] = acc;
    }
  }
  const dt = ST_DTYPE[l.dtype];
  const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const state: Linear4bitState = { prefix: l.prefix, dtype: l.dtype, quant, bias: { dtype: dt, shape: [l.outFeatures], bytes: bytesOf(b.stored) } };
  const stateDict = writeSafetensors(linear4bitTensors(state), { format: 'pt' });
  const forward: TensorToWrite[] = [
    { name: 'x', dtype: dt, shape: [M, l.inFeatures], data: x.stored },
    { name: 'y', dtype: dt, shape: [M, l.outFeatures], data: castToDtype(y, l.dtype) },
  ];
  const expected = writeSafetensors(
    [
      { name: 'input_weight', dtype: dt, shape, data: w.stored },
      { name: 'input_bias', dtype: dt, shape: [l.outFeatures], data: b.stored },
      { name: 'dequant_weight', dtype: dt, shape, data: castToDtype(dequant, l.dtype) },
      ...(l.forward === false ? [] : forward),
    ],
    { prefix: l.prefix, note: 'generated from the CPU reference (not bitsandbytes output)' },
  );
  return { stateDict, expected };
}

/** The default generated set: shapes and dtypes beyond the fixtures (odd sizes, >2 nested blocks, 16-bit). */
export function defaultGeneratedSet(seed: number): { cases: GeneratedCase[]; layers: GeneratedLayer[] } {
  return {
    cases: [
      { name: 'gen_randn_7x300', shape: [7, 300], dtype: 'float32', seed, spread: 0, zeroBlocks: false },
      { name: 'gen_wide_3x1001', shape: [3, 1001], dtype: 'float32', seed: seed + 1, spread: 1, zeroBlocks: true },
      { name: 'gen_many_blocks_40x1700', shape: [40, 1700], dtype: 'float32', seed: seed + 2, spread: 0.5, zeroBlocks: false },
      { name: 'gen_bf16_19x129', shape: [19, 129], dtype: 'bfloat16', seed: seed + 3, spread: 2, zeroBlocks: true },
      { name: 'gen_fp16_5x77', shape: [5, 77], dtype: 'float16', seed: seed + 4, spread: 0.3, zeroBlocks: false },
      { name: 'gen_vector_1000', shape: [1000], dtype: 'float32', seed: seed + 5, spread: 0, zeroBlocks: false },
    ],
    layers: [
      { name: 'gen_linear4bit_f32', prefix: 'model.layers.3.self_attn.q_proj.', inFeatures: 130, outFeatures: 37, dtype: 'float32', doubleQuant: true, seed: seed + 10 },
      { name: 'gen_linear4bit_f16_nodq', prefix: 'transformer.h.1.mlp.fc1.', inFeatures: 72, outFeatures: 50, dtype: 'float16', doubleQuant: false, seed: seed + 11 },
    ],
  };
}
