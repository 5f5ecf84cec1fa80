/**
 * bitsandbytes Linear4bit state dicts: `<prefix>weight` (packed codes), `weight.absmax`
 * (uint8 codes with double quant, float32 otherwise), `weight.quant_map`, `weight.nested_absmax`,
 * `weight.nested_quant_map` and `weight.quant_state.bitsandbytes__nf4` (UTF-8 JSON written by
 * Python's json.dumps). Reading them lets pre-quantised "bnb-4bit" checkpoints load without
 * requantising; writing them gives files bitsandbytes loads as they are.
 */
import { SafetensorsError, type DType, type SafetensorsFile, type TensorToWrite } from '../formats/safetensors';
import { NF4_BLOCKSIZE, NESTED_BLOCKSIZE } from './tables';
import { blockCount, numel, type Nf4Dtype, type Nf4Quantized } from './reference';

export const QUANT_STATE_SUFFIX = 'weight.quant_state.bitsandbytes__nf4';

export interface Linear4bitState {
  /** Key prefix including the trailing dot, e.g. `transformer.h.0.mlp.dense_h_to_4h.`. */
  prefix: string;
  /** The layer dtype (bias dtype and the dtype dequantised weights come back in). */
  dtype: Nf4Dtype;
  quant: Nf4Quantized;
  /** Bias as stored (raw little-endian bytes of `dtype`), if the layer has one. */
  bias?: { dtype: DType; shape: number[]; bytes: Uint8Array };
}

export interface QuantStateFields {
  quant_type: string;
  blocksize: number;
  dtype: Nf4Dtype;
  shape: number[];
  nested_blocksize?: number;
  nested_dtype?: string;
  nested_offset?: number;
}

/** Python's repr() of a float (the shortest round-trip digits, Python's notation rules). */
export function pythonFloatRepr(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const [mant, expText] = value.toExponential().split('e');
  const exp = Number(expText);
  const negative = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  let body: string;
  if (exp >= -4 && exp < 16) {
    // Fixed notation, as Python uses for 1e-4 <= |x| < 1e16; integers keep a trailing ".0".
    if (exp < 0) body = `0.${'0'.repeat(-exp - 1)}${digits}`;
    else if (digits.length <= exp + 1) body = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
    else body = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  } else {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    body = `${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  return negative ? `-${body}` : body;
}

/** The quant_state JSON exactly as `json.dumps(QuantState.as_dict(packed=True)[...])` writes it. */
export function quantStateJson(q: Nf4Quantized, dtype: Nf4Dtype): string {
  const parts = [`"quant_type": "nf4"`, `"blocksize": ${NF4_BLOCKSIZE}`, `"dtype": "${dtype}"`, `"shape": [${q.shape.join(', ')}]`];
  if (q.nested) {
    parts.push(`"nested_blocksize": ${NESTED_BLOCKSIZE}`, `"nested_dtype": "float32"`, `"nested_offset": ${pythonFloatRepr(q.nested.offset)}`);
  }
  return `{${parts.join(', ')}}`;
}

/** Every `<prefix>` in a file that has a Linear4bit quant state. */
export function linear4bitPrefixes(file: SafetensorsFile): string[] {
  return file.names.filter((n) => n.endsWith(QUANT_STATE_SUFFIX)).map((n) => n.slice(0, -QUANT_STATE_SUFFIX.length));
}

function floatView(file: SafetensorsFile, name: string, dtype: DType, length?: number): Float32Array {
  const info = file.info(name);
  if (info.dtype !== dtype) throw new SafetensorsError(file.file, `dtype ${info.dtype}, expected ${dtype}`, name);
  const values = file.f32(name);
  if (length !== undefined && values.length !== length) throw new SafetensorsError(file.file, `has ${values.length} elements, expected ${length}`, name);
  return values;
}

const DTYPES: Nf4Dtype[] = ['float32', 'bfloat16', 'float16'];

/** Reads the Linear4bit layer stored under `prefix` (as listed by `linear4bitPrefixes`). */
export function readLinear4bit(file: SafetensorsFile, prefix: string): Linear4bitState {
  const key = (suffix: string) => `${prefix}${suffix}`;
  const stateName = key(QUANT_STATE_SUFFIX);
  let fields: QuantStateFields;
  try {
    fields = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(file.raw(stateName))) as QuantStateFields;
  } catch (err) {
    throw new SafetensorsError(file.file, `quant state is not UTF-8 JSON: ${(err as Error).message}`, stateName);
  }
  if (fields.quant_type !== 'nf4') throw new SafetensorsError(file.file, `quant_type "${fields.quant_type}" is not supported (only nf4)`, stateName);
  if (fields.blocksize !== NF4_BLOCKSIZE) throw new SafetensorsError(file.file, `blocksize ${fields.blocksize} is not supported (only ${NF4_BLOCKSIZE})`, stateName);
  if (!DTYPES.includes(fields.dtype)) throw new SafetensorsError(file.file, `dtype "${fields.dtype}" is not one of ${DTYPES.join(', ')}`, stateName);
  if (!Array.isArray(fields.shape) || !fields.shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new SafetensorsError(file.file, `shape ${JSON.stringify(fields.shape)} is not a list of positive integers`, stateName);
  }
  const n = numel(fields.shape);
  const blocks = blockCount(n);
  // With a non-uint8 quant_storage the same bytes are viewed as another dtype: take the bytes.
  const packed = file.raw(key('weight'));
  if (packed.byteLength !== (n + 1) >> 1) throw new SafetensorsError(file.file, `holds ${packed.byteLength} bytes; shape [${fields.shape.join(', ')}] packs into ${(n + 1) >> 1}`, key('weight'));
  const quantMap = floatView(file, key('weight.quant_map'), 'F32', 16);
  const quant: Nf4Quantized = { shape: [...fields.shape], packed, quantMap };
  const doubleQuant = file.has(key('weight.nested_absmax'));
  if (doubleQuant) {
    if (fields.nested_blocksize !== NESTED_BLOCKSIZE) throw new SafetensorsError(file.file, `nested_blocksize ${fields.nested_blocksize} is not supported (only ${NESTED_BLOCKSIZE})`, stateName);
    if (typeof fields.nested_offset !== 'number') throw new SafetensorsError(file.file, 'nested_offset is missing', stateName);
    const absInfo = file.info(key('weight.absmax'));
    if (absInfo.dtype !== 'U8') throw new SafetensorsError(file.file, `dtype ${absInfo.dtype}, expected U8 with double quantisation`, key('weight.absmax'));
    const qabsmax = file.raw(key('weight.absmax'));
    if (qabsmax.length !== blocks) throw new SafetensorsError(file.file, `has ${qabsmax.length} codes, expected ${blocks} blocks`, key('weight.absmax'));
    quant.nested = {
      qabsmax,
      nestedAbsmax: floatView(file, key('weight.nested_absmax'), 'F32', blockCount(blocks, NESTED_BLOCKSIZE)),
      offset: Math.fround(fields.nested_offset),
      nestedMap: floatView(file, key('weight.nested_quant_map'), 'F32', 256),
    };
  } else {
    quant.absmax = floatView(file, key('weight.absmax'), 'F32', blocks);
  }
  const state: Linear4bitState = { prefix, dtype: fields.dtype, quant };
  if (file.has(key('bias'))) {
    const b = file.info(key('bias'));
    state.bias = { dtype: b.dtype, shape: b.shape, bytes: file.raw(key('bias')) };
  }
  return state;
}

/** The tensors of a Linear4bit state dict, for `writeSafetensors(tensors, { format: 'pt' })`. */
export function linear4bitTensors(state: Linear4bitState): TensorToWrite[] {
  const { prefix, quant } = state;
  const n = numel(quant.shape);
  const out: TensorToWrite[] = [{ name: `${prefix}weight`, dtype: 'U8', shape: [(n + 1) >> 1, 1], data: quant.packed }];
  if (state.bias) out.push({ name: `${prefix}bias`, dtype: state.bias.dtype, shape: state.bias.shape, data: state.bias.bytes });
  if (quant.nested) {
    out.push(
      { name: `${prefix}weight.absmax`, dtype: 'U8', shape: [quant.nested.qabsmax.length], data: quant.nested.qabsmax },
      { name: `${prefix}weight.nested_absmax`, dtype: 'F32', shape: [quant.nested.nestedAbsmax.length], data: quant.nested.nestedAbsmax },
      { name: `${prefix}weight.nested_quant_map`, dtype: 'F32', shape: [quant.nested.nestedMap.length], data: quant.nested.nestedMap },
    );
  } else if (quant.absmax) {
    out.push({ name: `${prefix}weight.absmax`, dtype: 'F32', shape: [quant.absmax.length], data: quant.absmax });
  } else {
    throw new Error(`${prefix}weight: NF4 state has neither absmax nor nested absmax`);
  }
  out.push({ name: `${prefix}weight.quant_map`, dtype: 'F32', shape: [16], data: quant.quantMap });
  const json = new TextEncoder().encode(quantStateJson(quant, state.dtype));
  out.push({ name: `${prefix}${QUANT_STATE_SUFFIX}`, dtype: 'U8', shape: [json.length], data: json });
  return out;
}
