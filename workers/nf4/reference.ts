/**
 * CPU reference of bitsandbytes' NF4 quantisation (blocksize 64) with and without double
 * quantisation of absmax, bit-exact with bitsandbytes' default backend. Every float32 step is
 * one `Math.fround` so the rounding sequence is the one bitsandbytes performs (no fused
 * multiply-add). The rules are written out in tests/fixtures/bnb-nf4/README.md.
 */
import { ABSMAX_FLOOR, DYNAMIC_MAP, NESTED_BLOCKSIZE, NF4_BLOCKSIZE, NF4_CODE, codeMidpoints } from './tables';
import { f32ArrayToBf16, f32ArrayToF16 } from '../formats/float16';

const fr = Math.fround;

/** The 16-bit dtypes a layer may have besides float32. */
export type Nf4Dtype = 'float32' | 'bfloat16' | 'float16';

/** Double-quantised absmax: 8-bit codes into the dynamic map, per-256-block scales and the mean offset. */
export interface NestedAbsmax {
  /** uint8 codes, one per 64-block (what a checkpoint stores as `weight.absmax`). */
  qabsmax: Uint8Array;
  /** float32 absmax of each block of 256 of `absmax - offset`. */
  nestedAbsmax: Float32Array;
  /** float32 mean of the plain absmax. */
  offset: number;
  /** The 256-entry table the codes index (bitsandbytes' dynamic map unless a checkpoint says otherwise). */
  nestedMap: Float32Array;
}

export interface Nf4Quantized {
  /** Tensor shape (the flattened element count is what gets blocked). */
  shape: number[];
  /** Packed 4-bit codes, (n+1)/2 bytes: element 2k in the high nibble of byte k. */
  packed: Uint8Array;
  /** Plain per-64-block absmax (float32). Present when not double-quantised. */
  absmax?: Float32Array;
  /** Double-quantised absmax. Present when double-quantised. */
  nested?: NestedAbsmax;
  /** The 16-entry NF4 table (a checkpoint's `quant_map`; bitsandbytes' NF4 table by default). */
  quantMap: Float32Array;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
export const blockCount = (n: number, blocksize = NF4_BLOCKSIZE): number => Math.ceil(n / blocksize);

const NF4_MID = codeMidpoints(NF4_CODE);
const DYNAMIC_MID = codeMidpoints(DYNAMIC_MAP);

/** Index of the nearest code: #{ i : mid[i] < s }, so an exact midpoint takes the lower code. */
export function nearestCode(s: number, mid: Float32Array): number {
  let lo = 0;
  let hi = mid.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (mid[m] < s) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/**
 * Per-block absmax and normalised values, the shared first half of both blockwise quantisers:
 * full blocks multiply by the float32 reciprocal of max(absmax, 1e-38); the partial last block
 * divides, and its stored absmax is clamped to >= 1e-38 (bitsandbytes' quirks).
 */
function blockwiseCodes(input: Float32Array, blocksize: number, mid: Float32Array, codes: Uint8Array | null): Float32Array {
  const n = input.length;
  const blocks = blockCount(n, blocksize);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(n, start + blocksize);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(input[i]));
    const partial = end - start < blocksize;
    const stored = partial ? Math.max(m, ABSMAX_FLOOR) : m;
    absmax[b] = stored;
    if (!codes) continue;
    const denom = Math.max(stored, ABSMAX_FLOOR);
    const inv = fr(1 / denom);
    for (let i = start; i < end; i++) {
      let s = partial ? fr(input[i] / denom) : fr(input[i] * inv);
      s = Math.min(Math.max(s, -1), 1);
      codes[i] = nearestCode(s, mid);
    }
  }
  return absmax;
}

/** NF4 codes (one per element) and the plain absmax. */
export function nf4Codes(input: Float32Array): { codes: Uint8Array; absmax: Float32Array } {
  const codes = new Uint8Array(input.length);
  const absmax = blockwiseCodes(input, NF4_BLOCKSIZE, NF4_MID, codes);
  return { codes, absmax };
}

/** Packs codes two per byte, element 2k in the high nibble; an odd count pads with code 7 (0.0). */
export function packCodes(codes: Uint8Array): Uint8Array {
  const n = codes.length;
  const out = new Uint8Array((n + 1) >> 1);
  for (let k = 0; k < out.length; k++) {
    const hi = codes[2 * k];
    const lo = 2 * k + 1 < n ? codes[2 * k + 1] : 7;
    out[k] = (hi << 4) | lo;
  }
  return out;
}

export function unpackCodes(packed: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i & 1 ? packed[i >> 1] & 15 : packed[i >> 1] >> 4;
  return out;
}

/** mean(absmax) in float64, rounded once to float32 (within 1 ulp of torch.mean; see the fixture README). */
export function meanOffset(absmax: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i];
  return fr(sum / absmax.length);
}

/**
 * Double quantisation of absmax given the offset: `quantize_blockwise(absmax - offset, dynamic, 256)`.
 * Taking the offset as an argument lets tests start from bitsandbytes' own offset.
 */
export function quantizeNested(absmax: Float32Array, offset: number, nestedMap: Float32Array = DYNAMIC_MAP): NestedAbsmax {
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = fr(absmax[i] - offset);
  const qabsmax = new Uint8Array(absmax.length);
  const mid = nestedMap === DYNAMIC_MAP ? DYNAMIC_MID : codeMidpoints(nestedMap);
  const nestedAbsmax = blockwiseCodes(centred, NESTED_BLOCKSIZE, mid, qabsmax);
  return { qabsmax, nestedAbsmax, offset: fr(offset), nestedMap };
}

/** absmax'[b] = f32(f32(map[q[b]] · nested[b / 256]) + offset): two roundings, as bitsandbytes does. */
export function restoreAbsmax(nested: NestedAbsmax): Float32Array {
  const { qabsmax, nestedAbsmax, offset, nestedMap } = nested;
  const out = new Float32Array(qabsmax.length);
  for (let b = 0; b < out.length; b++) out[b] = fr(fr(nestedMap[qabsmax[b]] * nestedAbsmax[Math.floor(b / NESTED_BLOCKSIZE)]) + offset);
  return out;
}

export interface QuantizeOptions {
  /** bitsandbytes' compress_statistics. */
  doubleQuant: boolean;
  /** Use this offset instead of the computed mean (to reproduce a stored state exactly). */
  offset?: number;
}

/** `quantize_4bit(input, blocksize=64, quant_type='nf4', compress_statistics=doubleQuant)`. */
export function quantizeNF4(input: Float32Array, shape: number[], options: QuantizeOptions): Nf4Quantized {
  if (numel(shape) !== input.length) throw new RangeError(`quantizeNF4: shape [${shape.join(', ')}] has ${numel(shape)} elements, input has ${input.length}`);
  const { codes, absmax } = nf4Codes(input);
  const packed = packCodes(codes);
  const base = { shape: [...shape], packed, quantMap: NF4_CODE };
  if (!options.doubleQuant) return { ...base, absmax };
  return { ...base, nested: quantizeNested(absmax, options.offset ?? meanOffset(absmax)) };
}

/** The absmax a quantised tensor dequantises with (restored when double-quantised). */
export function effectiveAbsmax(q: Nf4Quantized): Float32Array {
  if (q.nested) return restoreAbsmax(q.nested);
  if (!q.absmax) throw new Error('NF4 state has neither absmax nor nested absmax');
  return q.absmax;
}

/** `dequantize_4bit` in float32: out[i] = f32(quantMap[code[i]] · absmax[i / 64]). */
export function dequantizeNF4(q: Nf4Quantized): Float32Array {
  const n = numel(q.shape);
  const absmax = effectiveAbsmax(q);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = q.packed[i >> 1];
    const code = i & 1 ? byte & 15 : byte >> 4;
    out[i] = fr(q.quantMap[code] * absmax[Math.floor(i / NF4_BLOCKSIZE)]);
  }
  return out;
}

/** Casts a float32 result to the layer dtype's raw bits (round to nearest even, like torch's `.to()`). */
export function castToDtype(values: Float32Array, dtype: Nf4Dtype): Float32Array | Uint16Array {
  if (dtype === 'bfloat16') return f32ArrayToBf16(values);
  if (dtype === 'float16') return f32ArrayToF16(values);
  return values;
}
