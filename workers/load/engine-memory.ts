/**
 * The engine's GPU memory, found by running the engine: CausalLM.load with its LoRA modules,
 * the optimizer's step (every AdamW moment page made resident), then forward+backward steps, all
 * on a counting device (workers/gpu/counting-device.ts) whose buffer pool counts exactly what a
 * real device's would. Nothing here describes what the engine allocates, so nothing here can
 * drift from it: a change to the model, the kernels, the quantizer or the optimizer changes the
 * plan by itself. tests/gpu/planner-measured.test.ts compares the plan with real devices.
 *
 * The weights are zeros from `PlanningWeights`, which reaches the GPU the way the chosen load
 * path does (the same quantizer, chunk sizes and readbacks), without holding a tensor on the CPU.
 */
import { countingGpu, type LargestRequest } from '../gpu/counting-device';
import type { ByCategory } from '../gpu/pool';
import type { Gpu } from '../gpu/runtime';
import { CausalLM } from '../model/causal-lm';
import type { ModelConfig } from '../model/config';
import { architectureNames, tensorShapes } from '../model/architecture';
import type { ModelShaders, OptimizerShaders } from '../kernels/shaders';
import type { Batch } from '../model/types';
import type { WeightInfo, WeightSource } from '../model/weights';
import { AdamWOptimizer } from '../train/optimizer';
import { readBackNf4, gpuNf4FromChunks, type Nf4StateSink } from './gpu-target';
import { quantizeStreamToGpu, type Nf4GpuWeight, type Nf4Shaders } from '../nf4/gpu';
import { DYNAMIC_MAP, NF4_BLOCKSIZE, NF4_CODE } from '../nf4/tables';
import type { Nf4Quantized } from '../nf4/reference';
import { isNf4, weightModeOf, type QuantSettings } from './presets';

/** How the base linear weights reach the GPU while CausalLM.load runs. */
export type LinearLoadPath =
  /** The engine quantizes f32 data on the GPU (quantizeToGpu, default chunks). */
  | { kind: 'quantize-f32' }
  /**
   * The source streams the stored bytes into the GPU quantizer (the studio's download on a real
   * GPU): chunks of `chunkBytes` of the checkpoint's dtype, then, with `readbackBytes`, the
   * NF4 state read back for the cache in windows of that size.
   */
  | { kind: 'stream'; chunkBytes: number; readbackBytes: number | null }
  /** Stored NF4 states uploaded as they are (a cache hit, the CPU quantizer). */
  | { kind: 'stored' };

export const QUANTIZE_F32: LinearLoadPath = { kind: 'quantize-f32' };

// The counting device compiles nothing: the kernels' sources are not needed.
const NO_SHADERS = new Proxy({}, { get: () => '' }) as ModelShaders & OptimizerShaders;

/** Zeros of any length from one shared buffer, grown as needed (views never outlive their use). */
class Zeros {
  private buffer = new ArrayBuffer(0);

  bytes(n: number): Uint8Array {
    if (this.buffer.byteLength < n) this.buffer = new ArrayBuffer(Math.ceil(n / 4) * 4);
    return new Uint8Array(this.buffer, 0, n);
  }

  f32(n: number): Float32Array {
    return new Float32Array(this.bytes(4 * n).buffer, 0, n);
  }
}

const NULL_SINK: Nf4StateSink = { array: () => ({ push: async () => undefined, end: () => undefined }) };

/**
 * A weight source of zeros with the config's tensors: the embedding and lm_head in the
 * checkpoint's dtype, the rest f32; linear weights go to the GPU through the load path's own
 * quantizer (or upload) code, or, for an unquantized base, as the f32 the exact mode reads.
 */
export class PlanningWeights implements WeightSource {
  readonly label = 'planned model';
  private readonly shapes: Map<string, number[]>;
  private readonly tables: Set<string>;
  private readonly linears: Set<string>;
  private readonly zeros = new Zeros();
  private readonly storedDtype: 'F32' | 'F16' | 'BF16';

  constructor(
    config: ModelConfig,
    private readonly quant: QuantSettings,
    private readonly path: LinearLoadPath,
  ) {
    const names = architectureNames(config);
    this.shapes = tensorShapes(config, names);
    this.linears = new Set(names.layers.flatMap((l) => l.linears.map((s) => `${s.path}.weight`)));
    this.tables = new Set([names.embedding, names.lmHeadWeight]);
    // A 16-bit checkpoint stores every large tensor 16-bit; anything else is planned as f32.
    this.storedDtype = config.storedDtype === 'F16' || config.storedDtype === 'BF16' ? config.storedDtype : 'F32';
  }

  names(): string[] {
    return [...this.shapes.keys()];
  }

  info(name: string): WeightInfo | undefined {
    const shape = this.shapes.get(name);
    if (!shape) return undefined;
    return { dtype: this.tables.has(name) ? this.storedDtype : 'F32', shape };
  }

  private numel(name: string): number {
    return this.shapes.get(name)!.reduce((a, b) => a * b, 1);
  }

  async readF32(name: string): Promise<Float32Array> {
    return this.zeros.f32(this.numel(name));
  }

  async readRaw(name: string): Promise<Uint8Array> {
    return this.zeros.bytes(this.numel(name) * (this.info(name)!.dtype === 'F32' ? 4 : 2));
  }

  /** 16-bit tables in 1 MiB pieces, as a streamed source gives them. */
  async *readRawChunks(name: string): AsyncIterable<Uint8Array> {
    const total = this.numel(name) * (this.info(name)!.dtype === 'F32' ? 4 : 2);
    const piece = 1 << 20;
    for (let at = 0; at < total; at += piece) yield this.zeros.bytes(Math.min(piece, total - at));
  }

  async readNf4Gpu(name: string, gpu: Gpu, shaders: Nf4Shaders, label: string): Promise<Nf4GpuWeight | null> {
    const quant = this.quant;
    if (!this.linears.has(name) || !isNf4(quant)) return null;
    const shape = this.shapes.get(name)!;
    const n = this.numel(name);
    const path = this.path;
    if (path.kind === 'quantize-f32') {
      // What quantizeToGpu does with the f32 array CausalLM would have read.
      return quantizeStreamToGpu(gpu, shaders, shape, 'f32', (_, count) => this.zeros.f32(count), { label, doubleQuant: quant.doubleQuant });
    }
    if (path.kind === 'stored') return null;
    // The studio's download: the stored dtype's chunks into the GPU quantizer, then the state read back for the cache.
    const elemBytes = this.storedDtype === 'F32' ? 4 : 2;
    const chunkElems = Math.max(NF4_BLOCKSIZE, Math.floor(path.chunkBytes / elemBytes / NF4_BLOCKSIZE) * NF4_BLOCKSIZE);
    const zeros = this.zeros;
    const chunks = (async function* () {
      for (let at = 0; at < n; at += chunkElems) yield zeros.bytes(Math.min(chunkElems, n - at) * elemBytes);
    })();
    const weight = await gpuNf4FromChunks(gpu, shaders, name, shape, quant.doubleQuant, { dtype: this.storedDtype, chunkElems, chunks }, label);
    if (path.readbackBytes !== null) await readBackNf4(gpu, weight, NULL_SINK, path.readbackBytes);
    return weight;
  }

  /** A stored state of zeros (a cache hit), uploaded by the engine as it is. */
  async readNf4(name: string): Promise<Nf4Quantized | null> {
    const quant = this.quant;
    if (this.path.kind !== 'stored' || !this.linears.has(name) || !isNf4(quant)) return null;
    const n = this.numel(name);
    const blocks = Math.ceil(n / quant.blocksize);
    const shape = this.shapes.get(name)!;
    if (!quant.doubleQuant) return { shape, packed: this.zeros.bytes((n + 1) >> 1), absmax: new Float32Array(blocks), quantMap: NF4_CODE };
    const nested = { qabsmax: new Uint8Array(blocks), nestedAbsmax: new Float32Array(Math.ceil(blocks / quant.nestedBlocksize)), offset: 0, nestedMap: DYNAMIC_MAP };
    return { shape, packed: this.zeros.bytes((n + 1) >> 1), quantMap: NF4_CODE, nested };
  }
}

export interface StepShape {
  seq: number;
  batch: number;
  checkpointing: boolean;
  /** LoRA dropout > 0 (the engine then keeps a dropped copy of each adapted input). */
  dropout: boolean;
  /** The batch has padding (the engine uploads an attention mask). */
  padded: boolean;
}

export interface EngineModelInput {
  rank: number;
  targets: string[] | string;
  quant: QuantSettings;
  /** maxStorageBufferBindingSize the NF4 weights are split by. */
  maxPartBytes: number;
  /** Count AdamW moments (and the gradient-norm scratch) as resident. */
  includeOptimizer: boolean;
  /** LoRA dropout > 0. */
  dropout: boolean;
  load?: LinearLoadPath;
}

export interface EnginePlan {
  peakTotal: number;
  /** Each category's own highest live bytes over the step (like the pool's `peak`). */
  atPeak: ByCategory;
  largest: LargestRequest;
  /** Bytes that stay allocated between steps (weights, LoRA, optimizer). */
  persistent: ByCategory;
  /** CausalLM.load alone: its peak, and its scratch category's peak. */
  load: { peakTotal: number; scratchPeak: number };
}

function batchOf(c: ModelConfig, s: StepShape): Batch {
  const n = s.batch * s.seq;
  const inputIds = new Int32Array(n);
  // One padded position in the last row is enough for the engine to upload a mask.
  const attentionMask = new Int32Array(n).fill(1);
  if (s.padded) attentionMask[n - 1] = 0;
  const labels = new Int32Array(n).fill(Math.min(1, c.vocabSize - 1));
  return { inputIds, attentionMask, labels, batch: s.batch, seq: s.seq };
}

/**
 * A model loaded on a counting device, ready to measure steps of any shape: the load and the
 * optimizer run once, each step shape runs one forward+backward from the same state.
 */
export class EngineMemory {
  private constructor(
    private readonly gpu: Gpu,
    /** The counting device's record of the largest buffer, reset to the load's for each step. */
    private readonly largest: LargestRequest,
    private readonly loadLargest: LargestRequest,
    private readonly model: CausalLM,
    readonly persistent: ByCategory,
    readonly loadPeak: { peakTotal: number; scratchPeak: number },
    private readonly loadAtPeak: ByCategory,
  ) {}

  static async load(config: ModelConfig, input: EngineModelInput): Promise<EngineMemory> {
    const { gpu, largest } = countingGpu({ maxStorageBufferBindingSize: input.maxPartBytes });
    // The device's lifetime buffers (the uniform arena, the dummy binding) come first, as on a real device.
    gpu.lifetimeBuffers();
    const targets = input.targets;
    const model = await CausalLM.load(gpu, NO_SHADERS, config, new PlanningWeights(config, input.quant, input.load ?? QUANTIZE_F32), {
      // An unquantized base loads in the exact mode (f32 linear weights and tables), as loadRunModel does.
      mode: weightModeOf(input.quant),
      lora: {
        settings: { r: input.rank, alpha: 2 * input.rank, dropout: input.dropout ? 0.05 : 0, targetModules: typeof targets === 'string' ? [targets] : targets, targetRegex: typeof targets === 'string' },
        init: { seed: 0 },
      },
    });
    const loaded = gpu.pool.stats();
    const loadPeak = { peakTotal: loaded.peakTotal, scratchPeak: loaded.peak.scratch };
    if (input.includeOptimizer) {
      // One step makes every moment page resident, as every step after the first has them.
      const params = model.lora.map((t) => ({ key: t.key, weight: t.weight, grad: t.grad, numel: t.shape[0] * t.shape[1] }));
      await new AdamWOptimizer(gpu, NO_SHADERS, params, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }).step(0, 1);
    }
    await gpu.done();
    const persistent = { ...gpu.pool.stats().live };
    return new EngineMemory(gpu, largest, { ...largest }, model, persistent, loadPeak, loaded.atPeak);
  }

  /** Steps run one at a time: each measures the device's pool from its own start. */
  private queue: Promise<unknown> = Promise.resolve();

  /** One forward+backward of this shape on top of what the load and the optimizer left; the peak is the larger of the step's and the load's. */
  step(shape: StepShape): Promise<EnginePlan> {
    const run = this.queue.then(() => this.measureStep(shape));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async measureStep(shape: StepShape): Promise<EnginePlan> {
    const gpu = this.gpu;
    // Cached free buffers go, so every buffer of the step is a new request the device sees.
    gpu.pool.trim();
    gpu.pool.resetPeak();
    Object.assign(this.largest, this.loadLargest);
    this.model.checkpointing = shape.checkpointing;
    await this.model.forwardBackward(batchOf(this.model.config, shape), { gradScale: 1, dropoutSeed: 1, step: 0 });
    await gpu.done();
    const stats = gpu.pool.stats();
    const stepWins = stats.peakTotal >= this.loadPeak.peakTotal;
    return {
      peakTotal: Math.max(stats.peakTotal, this.loadPeak.peakTotal),
      atPeak: stepWins ? stats.atPeak : this.loadAtPeak,
      largest: { ...this.largest },
      persistent: this.persistent,
      load: this.loadPeak,
    };
  }
}
