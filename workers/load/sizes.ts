/** Bytes of a model's parts, as stored (cache) and as held on the GPU. */
import { DTYPE_BYTES, type DType } from '../formats/safetensors';
import { isQuantizedLinear, type ArchShape } from './arch';
import { isNf4, type Nf4QuantSettings, type QuantSettings } from './presets';

export interface Nf4Bytes {
  packed: number;
  /** absmax as stored: 1 byte per 64-block with double quantization, 4 without. */
  absmax: number;
  /** nested absmax (4 bytes per 256 blocks) with double quantization. */
  nested: number;
  /** The 16-entry NF4 table and, with double quantization, the 256-entry dynamic map (f32). */
  tables: number;
}

export function nf4Bytes(numel: number, quant: Nf4QuantSettings): Nf4Bytes {
  const blocks = Math.ceil(numel / quant.blocksize);
  if (!quant.doubleQuant) return { packed: Math.ceil(numel / 2), absmax: 4 * blocks, nested: 0, tables: 16 * 4 };
  return { packed: Math.ceil(numel / 2), absmax: blocks, nested: 4 * Math.ceil(blocks / quant.nestedBlocksize), tables: (16 + 256) * 4 };
}

export const sumNf4 = (b: Nf4Bytes): number => b.packed + b.absmax + b.nested + b.tables;

/** Bytes one tensor takes in the cache once loaded (NF4 for the blocks' linear weights, unless the base is not quantized). */
export function storedTensorBytes(arch: ArchShape, name: string, dtype: DType, shape: number[], quant: QuantSettings): number {
  const numel = shape.reduce((a, b) => a * b, 1);
  return isNf4(quant) && isQuantizedLinear(arch, name) ? sumNf4(nf4Bytes(numel, quant)) : numel * DTYPE_BYTES[dtype];
}
