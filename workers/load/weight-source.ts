/**
 * The model engine's `WeightSource` (workers/model/weights.ts) over what this folder loads:
 * safetensors read by range from the hub, dropped files or the demo folder, and quantized
 * models from the IndexedDB cache.
 */
import { toF32 } from '../formats/safetensors';
import type { WeightInfo, WeightSource } from '../model/weights';
import { dequantizeNF4, type Nf4Quantized } from '../nf4/reference';
import { LAYER_DTYPE, storedBytes, type LoadedTensor } from './quantize-on-load';
import type { ModelWeights } from './weights';

/** Tensors streamed from safetensors files one at a time (nothing is kept after a read). */
export class RangeWeightSource implements WeightSource {
  constructor(
    private readonly weights: ModelWeights,
    readonly label: string,
    private readonly onRead?: (name: string, bytes: number) => void,
  ) {}

  names(): string[] {
    return this.weights.names();
  }

  info(name: string): WeightInfo | undefined {
    if (!this.weights.has(name)) return undefined;
    const t = this.weights.info(name);
    return { dtype: t.dtype, shape: t.shape };
  }

  async readRaw(name: string): Promise<Uint8Array> {
    const bytes = await this.weights.read(name);
    this.onRead?.(name, bytes.byteLength);
    return bytes;
  }

  async readF32(name: string): Promise<Float32Array> {
    const t = this.weights.info(name);
    return toF32(t, await this.readRaw(name), t.file.name);
  }
}

/**
 * A loaded (e.g. cached) quantized model. Dense tensors come back as stored; an NF4 weight
 * comes back dequantized by `readF32`/`readRaw`, for an engine that quantizes what it reads
 * (NF4 → dequantize → NF4 keeps every 4-bit code; only the double-quantized block scales are
 * rounded a second time, ~1e-5 relative), and as it is by `readNf4`, for an engine that uploads
 * NF4 states directly (`uploadNf4`, no requantization at all).
 */
export class LoadedWeightSource implements WeightSource {
  constructor(
    private readonly tensors: Map<string, LoadedTensor>,
    readonly label: string,
  ) {}

  names(): string[] {
    return [...this.tensors.keys()];
  }

  private get(name: string): LoadedTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.label}: no tensor "${name}"`);
    return t;
  }

  info(name: string): WeightInfo | undefined {
    const t = this.tensors.get(name);
    if (!t) return undefined;
    if (t.kind === 'dense') return { dtype: t.dtype, shape: t.shape };
    return { dtype: LAYER_DTYPE[t.dtype], shape: t.quant.shape };
  }

  /** The NF4 state of a quantized linear weight; null for a tensor kept dense. */
  async readNf4(name: string): Promise<Nf4Quantized | null> {
    const t = this.get(name);
    return t.kind === 'nf4' ? t.quant : null;
  }

  async readF32(name: string): Promise<Float32Array> {
    const t = this.get(name);
    if (t.kind === 'nf4') return dequantizeNF4(t.quant);
    return toF32({ name, dtype: t.dtype, shape: t.shape, begin: 0, end: t.data.byteLength }, t.data, this.label);
  }

  async readRaw(name: string): Promise<Uint8Array> {
    return storedBytes(this.get(name));
  }
}
