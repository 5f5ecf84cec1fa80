/**
 * Random base weights with HF tensor names for any config, generated per tensor on demand
 * (deterministic from the seed and the name), so tests and benchmarks can build models of
 * real layer shapes without files.
 */
import type { ModelConfig } from './config';
import { architectureNames, tensorShapes } from './architecture';
import { familyOf } from './families';
import { randomWords, seededRandom } from '../util/random';
import type { WeightInfo, WeightSource } from './weights';
import { f32ArrayToBf16, f32ArrayToF16 } from '../formats/float16';
import { toF32 } from '../formats/safetensors';
import { blockCount, meanOffset, numel, quantizeNested, type Nf4Quantized } from '../nf4/reference';
import { NF4_CODE } from '../nf4/tables';

function hashName(name: string, seed: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Values with the given mean and standard deviation (uniform: cheap, and NF4 does not care). */
function fill(n: number, seed: number, std: number, mean: number): Float32Array {
  const out = new Float32Array(n);
  const next = seededRandom(seed);
  // Uniform in ±std·√3 (variance std²): one draw per value, since a falcon-7b-sized benchmark
  // model needs billions of them.
  const k = 2 * std * Math.sqrt(3);
  for (let i = 0; i < n; i++) out[i] = mean + (next() - 0.5) * k;
  return out;
}

/**
 * A double-quantised NF4 state with uniformly random codes and block absmax in [0.04, 0.09]
 * (weights of about the scale of `RandomWeights`' linear layers), made without quantizing
 * anything: a falcon-7b-sized model's 6.9 billion codes take seconds, not minutes.
 */
export function randomNf4(shape: number[], seed: number): Nf4Quantized {
  const n = numel(shape);
  const packed = new Uint8Array(randomWords(Math.ceil((n + 1) / 8), seed).buffer, 0, (n + 1) >> 1);
  const bits = randomWords(blockCount(n), seed ^ 0x5bd1e995);
  const absmax = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) absmax[i] = 0.04 + 0.05 * (bits[i] / 4294967296);
  return { shape: [...shape], packed, quantMap: NF4_CODE, nested: quantizeNested(absmax, meanOffset(absmax)) };
}

/**
 * The embedding and lm_head come in the config's `storedDtype` when it is 16-bit (as a real
 * phi-1_5 or falcon-7b checkpoint stores them); every other tensor is f32. With `nf4Linears`,
 * the blocks' linear weights are offered as random NF4 states (`readNf4`), as a cached model
 * offers its own, so QLoRA mode uploads them without generating or quantizing any floats.
 */
export class RandomWeights implements WeightSource {
  private readonly shapes = new Map<string, number[]>();
  private readonly tables: Set<string>;
  private readonly linears = new Set<string>();
  private readonly tableDtype: 'F32' | 'F16' | 'BF16';
  readonly label: string;

  constructor(
    config: ModelConfig,
    private readonly seed = 1,
    private readonly std = { linear: 0.05, embedding: 0.3, bias: 0.02, norm: 0.1 },
    private readonly options: { nf4Linears?: boolean } = {},
  ) {
    const names = architectureNames(config);
    const c = config;
    for (const [name, shape] of tensorShapes(c, names)) this.shapes.set(name, shape);
    for (const l of names.layers) for (const s of l.linears) this.linears.add(`${s.path}.weight`);
    this.tables = new Set([names.embedding, ...(c.tiedLmHead ? [] : [names.lmHeadWeight])]);
    this.tableDtype = c.storedDtype ?? 'F32';
    this.label = `random ${c.arch} weights (seed ${seed})`;
  }

  names(): string[] {
    return [...this.shapes.keys()];
  }

  info(name: string): WeightInfo | undefined {
    const shape = this.shapes.get(name);
    return shape ? { dtype: this.tables.has(name) ? this.tableDtype : 'F32', shape } : undefined;
  }

  /** The stored values widened to f32, as a safetensors reader widens them. */
  async readF32(name: string): Promise<Float32Array> {
    const raw = await this.readRaw(name);
    return toF32({ name, dtype: this.info(name)!.dtype, shape: this.shapes.get(name)!, begin: 0, end: raw.byteLength }, raw, this.label);
  }

  async readNf4(name: string): Promise<Nf4Quantized | null> {
    if (!this.options.nf4Linears || !this.linears.has(name)) return null;
    return randomNf4(this.shapes.get(name)!, hashName(name, this.seed));
  }

  async readRaw(name: string): Promise<Uint8Array> {
    const values = await this.generate(name);
    const dtype = this.info(name)!.dtype;
    const stored = dtype === 'F16' ? f32ArrayToF16(values) : dtype === 'BF16' ? f32ArrayToBf16(values) : values;
    return new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
  }

  private async generate(name: string): Promise<Float32Array> {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`${this.label}: no tensor "${name}"`);
    const n = shape.reduce((a, b) => a * b, 1);
    const s = hashName(name, this.seed);
    if (name.includes('norm') || name.includes('ln_f')) return fill(n, s, this.std.norm, name.endsWith('.weight') ? 1 : 0);
    if (name.endsWith('.bias')) return fill(n, s, this.std.bias, 0);
    if (shape.length === 2 && (name.includes('embed') || name.includes('word_embeddings'))) return fill(n, s, this.std.embedding, 0);
    return fill(n, s, this.std.linear, 0);
  }
}

/** A small config of a family for tests (sizes chosen not to be multiples of the kernels' tiles). */
export function tinyConfig(arch: string, overrides: Partial<ModelConfig> = {}): ModelConfig {
  return { ...familyOf({ arch }).tinyConfig, ...overrides };
}
