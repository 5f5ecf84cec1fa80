/**
 * The causal language model on the GPU, for any registered family (workers/model/families/):
 * loading, the embedding, the layers (each family's block), the final norm, the head and the
 * loss, backward into the LoRA adapters only, optional per-layer gradient checkpointing, and
 * KV-cache decoding. What happens inside a layer is the family's block.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { matmul } from '../kernels/matmul';
import { embedding, type TableFormat } from '../kernels/embedding';
import { rotaryTables } from '../kernels/rotary';
import { crossEntropy, shiftLabels } from '../kernels/cross-entropy';
import { argmax } from '../kernels/argmax';
import { dequantizeGpu, quantizeToGpu, releaseNf4, uploadNf4, type Nf4GpuWeight } from '../nf4/gpu';
import type { ModelConfig } from './config';
import { architectureNames, type ArchitectureNames, type LinearRole, type LinearSpec, type NormSpec } from './architecture';
import { familyOf } from './families';
import type { Block } from './block';
import { LayerKit, type KvCache, type LayerWeights, type LinearEntry, type NormWeights, type RunContext } from './layer-kit';
import { F32Linear, Nf4Linear, type FrozenLinear } from './frozen-linear';
import { seededRandom } from '../util/random';
import { createLoraModules, exportPeftAdapter, type LoraInit, type LoraModule, type PeftExport } from './lora-adapter';
import type { ModelShaders } from '../kernels/shaders';
import { checkSamplingOptions, isGreedy, sampleToken } from './sampling';
import { BRIDGE_ROWS, scoredRuns } from './scored-rows';
import type {
  Batch,
  ForwardBackwardOptions,
  GenerateOptions,
  GenerateResult,
  LoraSettings,
  LoraTensor,
  LossResult,
  TrainableCausalLM,
} from './types';
import type { WeightInfo, WeightSource } from './weights';

export type WeightMode = 'exact' | 'nf4';

/** Rotary table length when the caller names none: long-context models (Llama 3.2: 131072) need not build tables they will not use. */
export const DEFAULT_MAX_POSITIONS = 16384;

export interface LoadOptions {
  /** exact: f32 base weights; nf4: base linear layers NF4 (double quant), the rest f32. */
  mode: WeightMode;
  lora?: { settings: LoraSettings; init: LoraInit } | null;
  /** Recompute each layer's forward during backward instead of keeping its activations. */
  checkpointing?: boolean;
  /** Rotary table length (default: the config's max_position_embeddings, at most DEFAULT_MAX_POSITIONS). */
  maxPositions?: number;
  /** Logits rows per lm_head/cross-entropy chunk (default: as many as fit in 32 MiB). */
  headChunkRows?: number;
  /** Unscored rows between two runs of scored ones that lm_head computes anyway (scored-rows.ts; tests). */
  headBridgeRows?: number;
}

/** What one generate call's decoding loop works with. */
interface DecodeRun {
  /** The prompt's ids. */
  prompt: GpuBuffer;
  promptLength: number;
  /** One id: the token the next step feeds. */
  next: GpuBuffer;
  caches: KvCache[];
  ctx: RunContext;
  options: GenerateOptions;
  eos: Set<number>;
  result: GenerateResult;
}

export interface ForwardResult extends LossResult {
  /** [batch, seq, vocab] logits (every position). */
  logits: Float32Array;
  /** [batch, seq, hidden] hidden states entering layer 0. */
  embeddingOutput: Float32Array;
}

export interface BackwardCapture {
  /** Read back d(gradScale · lossSum)/d(embedding output), [batch, seq, hidden]. */
  embeddingGrad?: boolean;
}

export class ModelInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelInputError';
  }
}

const TABLE_FORMATS: Partial<Record<WeightInfo['dtype'], TableFormat>> = { F16: 'f16', BF16: 'bf16' };

/** What CausalLM.load has put on the GPU so far, by tensor name (released together if loading fails). */
class BuiltWeights {
  readonly buffers = new Map<string, GpuBuffer>();
  readonly nf4 = new Map<string, Nf4GpuWeight>();

  constructor(private readonly gpu: Gpu) {}

  release(): void {
    this.gpu.release(...this.buffers.values());
    for (const w of this.nf4.values()) releaseNf4(this.gpu, w);
  }
}

/**
 * A base linear weight in NF4 on the GPU: quantized by the source as it streams in, or its
 * stored NF4 state uploaded as it is (a cached model: never widened, never requantized), or
 * quantized here from f32.
 */
async function nf4Weight(gpu: Gpu, shaders: ModelShaders, weights: WeightSource, name: string, shape: number[], label: string): Promise<Nf4GpuWeight> {
  const fromSource = (await weights.readNf4Gpu?.(name, gpu, shaders, label)) ?? null;
  const stored = fromSource ? null : weights.readNf4 ? await weights.readNf4(name) : null;
  const got = fromSource?.shape ?? stored?.shape;
  if (got && (got.length !== 2 || got[0] !== shape[0] || got[1] !== shape[1])) {
    if (fromSource) releaseNf4(gpu, fromSource);
    throw new ModelInputError(`${weights.label}: NF4 tensor "${name}" has shape [${got.join(', ')}], expected [${shape.join(', ')}]`);
  }
  if (fromSource) return fromSource;
  return stored ? uploadNf4(gpu, stored, { label }) : quantizeToGpu(gpu, shaders, await weights.readF32(name), shape, { label });
}

/**
 * A tensor's stored bytes (a 16-bit table) in a new buffer, piece by piece when the source
 * streams them: no whole CPU copy. writeBuffer takes 4-byte multiples, so an odd tail waits
 * for the next piece.
 */
async function uploadStored(gpu: Gpu, weights: WeightSource, name: string, bytes: number): Promise<GpuBuffer> {
  if (!weights.readRawChunks) return gpu.upload(await weights.readRaw(name), 'weights', name);
  const buf = gpu.alloc(bytes, 'weights', name);
  try {
    let offset = 0;
    let tail = new Uint8Array(0);
    for await (const piece of weights.readRawChunks(name)) {
      let data = piece;
      if (tail.byteLength > 0) {
        data = new Uint8Array(tail.byteLength + piece.byteLength);
        data.set(tail);
        data.set(piece, tail.byteLength);
      }
      const aligned = data.byteLength - (data.byteLength % 4);
      if (offset + data.byteLength > bytes) throw new ModelInputError(`${weights.label}: tensor "${name}" has more than the ${bytes} bytes its shape holds`);
      if (aligned > 0) gpu.write(buf, data.subarray(0, aligned), offset);
      offset += aligned;
      tail = data.slice(aligned);
    }
    if (tail.byteLength > 0) gpu.write(buf, tail, offset);
    if (offset + tail.byteLength !== bytes) throw new ModelInputError(`${weights.label}: tensor "${name}" has ${offset + tail.byteLength} of the ${bytes} bytes its shape holds`);
    return buf;
  } catch (err) {
    gpu.release(buf);
    throw err;
  }
}

export class CausalLM implements TrainableCausalLM {
  readonly lora: LoraTensor[];
  checkpointing: boolean;
  private readonly headChunkRows: number;
  private readonly headBridgeRows: number;
  /** The family's decoder block and what it is run with. */
  private readonly block: Block<unknown>;
  private readonly kit: LayerKit;

  private constructor(
    private readonly gpu: Gpu,
    private readonly shaders: ModelShaders,
    readonly config: ModelConfig,
    readonly names: ArchitectureNames,
    readonly mode: WeightMode,
    private readonly embed: GpuBuffer,
    /** How the embedding / lm_head matrices are stored (16-bit as the checkpoint has them, in NF4 mode). */
    private readonly tableFormat: TableFormat,
    private readonly layers: LayerWeights[],
    private readonly finalNorm: NormWeights,
    private readonly lmHead: { weight: GpuBuffer; bias: GpuBuffer | null; owned: boolean },
    private readonly rope: { cos: GpuBuffer; sin: GpuBuffer; positions: number },
    readonly loraModules: LoraModule[],
    readonly loraSettings: LoraSettings | null,
    options: LoadOptions,
  ) {
    this.block = familyOf(config).block;
    this.kit = new LayerKit(gpu, shaders, config, rope, loraSettings);
    this.lora = loraModules.flatMap((m) => [m.a, m.b]);
    this.checkpointing = options.checkpointing ?? false;
    this.headChunkRows = options.headChunkRows ?? Math.max(1, Math.floor((32 * 1024 * 1024) / (4 * config.vocabSize)));
    this.headBridgeRows = options.headBridgeRows ?? BRIDGE_ROWS;
  }

  /**
   * Builds the model on the GPU from HF-named weights. Every tensor's presence and shape is
   * checked first; then tensors are read one at a time, each going to the GPU as it is read, in
   * the source's `order()` when it has one (the order its files or cache hold them, so a
   * streamed source keeps nothing waiting), otherwise embedding → layers → head.
   */
  static async load(gpu: Gpu, shaders: ModelShaders, config: ModelConfig, weights: WeightSource, options: LoadOptions): Promise<CausalLM> {
    const names = architectureNames(config);
    const c = config;
    // QLoRA mode keeps a 16-bit checkpoint's embedding and lm_head 16-bit (half the bytes of
    // the largest tensors); exact mode and f32 checkpoints widen them to f32.
    const tableFormat: TableFormat = options.mode === 'nf4' ? (TABLE_FORMATS[weights.info(names.embedding)?.dtype ?? 'F32'] ?? 'f32') : 'f32';
    const built = new BuiltWeights(gpu);
    const reads = new Map<string, { shape: number[]; table: boolean; run: () => Promise<void> }>();
    const uploadF32 = async (name: string) => void built.buffers.set(name, gpu.upload(await weights.readF32(name), 'weights', name));
    const f32 = (name: string, shape: number[]) => {
      reads.set(name, { shape, table: false, run: () => uploadF32(name) });
    };
    const table = (name: string, shape: number[]) => {
      if (tableFormat === 'f32') return f32(name, shape);
      reads.set(name, { shape, table: true, run: async () => void built.buffers.set(name, await uploadStored(gpu, weights, name, 2 * shape[0] * shape[1])) });
    };
    const linear = (ls: LinearSpec) => {
      const name = `${ls.path}.weight`;
      const shape = [ls.outFeatures, ls.inFeatures];
      reads.set(name, {
        shape,
        table: false,
        run: async () => {
          if (options.mode === 'nf4') built.nf4.set(name, await nf4Weight(gpu, shaders, weights, name, shape, ls.path));
          else await uploadF32(name);
        },
      });
    };
    const norm = (n: NormSpec) => {
      f32(`${n.path}.weight`, [c.hidden]);
      if (n.bias) f32(`${n.path}.bias`, [c.hidden]);
    };
    table(names.embedding, [c.vocabSize, c.hidden]);
    for (const spec of names.layers) {
      for (const ls of spec.linears) {
        if (ls.bias) f32(`${ls.path}.bias`, [ls.outFeatures]);
        linear(ls);
      }
      spec.norms.forEach(norm);
    }
    norm(names.finalNorm);
    if (!c.tiedLmHead) table(names.lmHeadWeight, [c.vocabSize, c.hidden]);
    if (names.lmHeadBias) f32(names.lmHeadBias, [c.vocabSize]);

    for (const [name, r] of reads) {
      const info = weights.info(name);
      if (!info) throw new ModelInputError(`${weights.label}: tensor "${name}" is missing`);
      if (info.shape.length !== r.shape.length || info.shape.some((d, i) => d !== r.shape[i])) {
        throw new ModelInputError(`${weights.label}: tensor "${name}" has shape [${info.shape.join(', ')}], expected [${r.shape.join(', ')}]`);
      }
      if (r.table && TABLE_FORMATS[info.dtype] !== tableFormat) throw new ModelInputError(`${weights.label}: tensor "${name}" is ${info.dtype}, expected ${tableFormat} like the embedding`);
    }

    try {
      for (const name of [...(weights.order?.() ?? []), ...reads.keys()]) {
        const r = reads.get(name);
        if (!r) continue;
        reads.delete(name);
        await r.run();
      }
      const buffer = (name: string) => built.buffers.get(name)!;
      const optional = (name: string) => built.buffers.get(name) ?? null;
      const embed = buffer(names.embedding);
      const normWeights = (n: NormSpec): NormWeights => ({ spec: n, weight: buffer(`${n.path}.weight`), bias: n.bias ? buffer(`${n.path}.bias`) : null });
      const layers: LayerWeights[] = names.layers.map((spec, index) => {
        const linears = new Map<LinearRole, LinearEntry>();
        for (const ls of spec.linears) {
          const name = `${ls.path}.weight`;
          const bias = optional(`${ls.path}.bias`);
          const q = built.nf4.get(name);
          const base: FrozenLinear = q ? new Nf4Linear(gpu, shaders, q, bias, ls.outFeatures, ls.inFeatures) : new F32Linear(gpu, shaders, buffer(name), bias, ls.outFeatures, ls.inFeatures);
          linears.set(ls.role, { spec: ls, base, lora: null });
        }
        return { index, norms: new Map(spec.norms.map((n) => [n.role, normWeights(n)])), linears };
      });
      const finalNorm = normWeights(names.finalNorm);
      const lmHead = c.tiedLmHead
        ? { weight: embed, bias: null as GpuBuffer | null, owned: false }
        : { weight: buffer(names.lmHeadWeight), bias: null as GpuBuffer | null, owned: true };
      if (names.lmHeadBias) lmHead.bias = buffer(names.lmHeadBias);
      const positions = options.maxPositions ?? Math.min(c.maxPositions, DEFAULT_MAX_POSITIONS);
      const tables = rotaryTables(c.rotaryDim, c.ropeTheta, positions, c.ropeScaling);
      const rope = { cos: gpu.upload(tables.cos, 'weights', 'rotary.cos'), sin: gpu.upload(tables.sin, 'weights', 'rotary.sin'), positions };
      built.buffers.set('rotary.cos', rope.cos).set('rotary.sin', rope.sin);
      let loraModules: LoraModule[] = [];
      if (options.lora) {
        loraModules = createLoraModules(gpu, names, options.lora.settings, options.lora.init);
        for (const m of loraModules) {
          const layer = layers[names.layers.findIndex((l) => l.linears.includes(m.spec))];
          layer.linears.get(m.spec.role)!.lora = m;
        }
      }
      await gpu.done();
      return new CausalLM(gpu, shaders, c, names, options.mode, embed, tableFormat, layers, finalNorm, lmHead, rope, loraModules, options.lora?.settings ?? null, options);
    } catch (err) {
      // A failed read (a dropped connection, a corrupt cache part) leaves no GPU memory behind.
      built.release();
      throw err;
    }
  }

  // ---------------------------------------------------------------- layers

  private layerForward(li: number, x: GpuBuffer, ctx: RunContext, keep: boolean): { out: GpuBuffer; saved: unknown } {
    return this.block.forward(this.kit, this.layers[li], x, ctx, keep);
  }

  // ---------------------------------------------------------------- batches

  private checkBatch(b: Batch, needLabels: boolean): void {
    const n = b.batch * b.seq;
    if (!Number.isInteger(b.batch) || !Number.isInteger(b.seq) || b.batch <= 0 || b.seq <= 0) throw new ModelInputError(`batch shape [${b.batch}, ${b.seq}] is invalid`);
    if (b.inputIds.length !== n) throw new ModelInputError(`inputIds has ${b.inputIds.length} entries, expected batch·seq = ${n}`);
    if (b.attentionMask.length !== n) throw new ModelInputError(`attentionMask has ${b.attentionMask.length} entries, expected ${n}`);
    if (needLabels && b.labels.length !== n) throw new ModelInputError(`labels has ${b.labels.length} entries, expected ${n}`);
    if (b.seq > this.rope.positions) throw new ModelInputError(`sequence length ${b.seq} exceeds the ${this.rope.positions} rotary positions`);
    const V = this.config.vocabSize;
    for (let i = 0; i < n; i++) {
      const id = b.inputIds[i];
      if (!(id >= 0 && id < V)) throw new ModelInputError(`inputIds[${Math.floor(i / b.seq)}, ${i % b.seq}] = ${id} is outside the vocabulary (0..${V - 1})`);
      if (needLabels) {
        const l = b.labels[i];
        if (l !== -100 && !(l >= 0 && l < V)) throw new ModelInputError(`labels[${Math.floor(i / b.seq)}, ${i % b.seq}] = ${l} is neither -100 nor a token id`);
        // The label at t is scored from position t − 1; a padded position sees no key (transformers
        // then attends to every key of the row, the answer included), so no such score is meaningful.
        if (l !== -100 && i % b.seq > 0 && b.attentionMask[i - 1] === 0) {
          throw new ModelInputError(`labels[${Math.floor(i / b.seq)}, ${i % b.seq}] = ${l} is scored from padded position ${(i % b.seq) - 1} (attention_mask 0): set it to -100`);
        }
      }
    }
  }

  private startRun(b: Batch, noLora: boolean, dropout: RunContext['dropout']): { ctx: RunContext; ids: GpuBuffer } {
    const rows = b.batch * b.seq;
    const ids = this.gpu.upload(Int32Array.from(b.inputIds), 'scratch', 'input_ids');
    const padded = b.attentionMask.some((m) => m === 0);
    const mask = padded ? this.gpu.upload(Int32Array.from(b.attentionMask, (m) => (m ? 1 : 0)), 'scratch', 'attention_mask') : null;
    return { ctx: { batch: b.batch, seq: b.seq, rows, mask, noLora, dropout }, ids };
  }

  private embedTokens(ids: GpuBuffer, rows: number): GpuBuffer {
    const c = this.config;
    const x = this.gpu.alloc(rows * c.hidden * 4, 'activations', 'embedding.out');
    embedding(this.gpu, this.shaders.embedding, { ids, table: this.embed, out: x, rows, hidden: c.hidden, vocab: c.vocabSize, format: this.tableFormat });
    return x;
  }

  /** final LayerNorm of the last hidden states. */
  private finalNormForward(x: GpuBuffer, rows: number): { hf: GpuBuffer; stats: GpuBuffer } {
    const { y, stats } = this.kit.normForward(this.finalNorm, x, rows, 'activations', 'final_ln');
    return { hf: y, stats };
  }


  /** logits rows [r0, r0 + n) of hf into `logits` ([n, vocab]). */
  private headLogits(hf: GpuBuffer, r0: number, n: number, logits: GpuBuffer): void {
    const c = this.config;
    matmul(this.gpu, this.shaders.matmul, { a: hf, b: this.lmHead.weight, c: logits, M: n, N: c.vocabSize, K: c.hidden, transB: true, bias: this.lmHead.bias ?? undefined, offA: r0 * c.hidden, formatB: this.tableFormat });
  }

  /**
   * lm_head → cross-entropy (→ gradient) chunk by chunk, over the scored rows only (scored-rows.ts). With `dhf`, writes d/d(hf); with
   * `collect`, copies each chunk's logits out first. Returns the per-row losses buffer.
   */
  private async runHead(hf: GpuBuffer, rows: number, targets: Int32Array, opts: { dhf?: GpuBuffer; gradScale?: number; collect?: Float32Array }): Promise<Float64Array> {
    const gpu = this.gpu;
    const V = this.config.vocabSize;
    const H = this.config.hidden;
    const targetBuf = gpu.upload(targets, 'scratch', 'targets');
    const lossBuf = gpu.alloc(rows * 4, 'scratch', 'losses');
    // The chunk's size does not depend on the labels, so the planner's count holds for any batch.
    const chunk = Math.min(rows, this.headChunkRows);
    const logits = gpu.alloc(chunk * V * 4, 'scratch', 'logits.chunk');
    const runs: [number, number][] = opts.collect ? [[0, rows]] : scoredRuns(targets, this.headBridgeRows);
    const covered = runs.reduce((sum, [start, end]) => sum + end - start, 0);
    if (covered < rows) {
      // Rows left out score 0 and pass no gradient back.
      gpu.fill(lossBuf, 0);
      if (opts.dhf) gpu.fill(opts.dhf, 0, rows * H * 4);
    }
    for (const [start, end] of runs) {
      for (let r0 = start; r0 < end; r0 += chunk) {
        const n = Math.min(chunk, end - r0);
        this.headLogits(hf, r0, n, logits);
        if (opts.collect) opts.collect.set(await gpu.readF32(logits, n * V), r0 * V);
        crossEntropy(gpu, this.shaders.crossEntropy, { logits, targets: targetBuf, loss: lossBuf, rows: n, vocab: V, rowStart: r0, backward: !!opts.dhf, gradScale: opts.gradScale ?? 1 });
        if (opts.dhf) matmul(gpu, this.shaders.matmul, { a: logits, b: this.lmHead.weight, c: opts.dhf, M: n, N: H, K: V, offC: r0 * H, formatB: this.tableFormat });
      }
    }
    const losses = Float64Array.from(await gpu.readF32(lossBuf, rows));
    gpu.release(targetBuf, lossBuf, logits);
    return losses;
  }

  // ---------------------------------------------------------------- public API

  /** Adds gradScale · d(lossSum)/dθ into every LoRA gradient; returns the loss sum and label count. */
  async forwardBackward(b: Batch, options: ForwardBackwardOptions, capture: BackwardCapture = {}): Promise<LossResult & { embeddingGrad?: Float32Array }> {
    this.checkBatch(b, true);
    const gpu = this.gpu;
    const c = this.config;
    const dropout = { seed: options.dropoutSeed ?? 0, step: options.step ?? 0 };
    const { ctx, ids } = this.startRun(b, false, dropout);
    const { rows } = ctx;
    const { targets, count } = shiftLabels(b.labels, b.batch, b.seq);
    const x0 = this.embedTokens(ids, rows);
    const keep = !this.checkpointing;
    const xs = [x0];
    const saved: unknown[] = [];
    for (let l = 0; l < this.layers.length; l++) {
      const r = this.layerForward(l, xs[l], ctx, keep);
      xs.push(r.out);
      saved.push(r.saved);
    }
    const { hf, stats } = this.finalNormForward(xs[this.layers.length], rows);
    const dhf = gpu.alloc(rows * c.hidden * 4, 'scratch', 'final_ln.dout');
    const losses = await this.runHead(hf, rows, targets, { dhf, gradScale: options.gradScale });
    let dOut = gpu.alloc(rows * c.hidden * 4, 'scratch', 'final.dx');
    this.kit.normBackward(this.finalNorm, xs[this.layers.length], stats, dhf, dOut, rows, false);
    gpu.release(hf, stats, dhf, xs[this.layers.length]);
    for (let l = this.layers.length - 1; l >= 0; l--) {
      let s = saved[l];
      if (!s) {
        // Checkpointing: recompute this layer's forward to get what its backward needs.
        const again = this.layerForward(l, xs[l], ctx, true);
        gpu.release(again.out);
        s = again.saved!;
      }
      const dx = this.block.backward(this.kit, this.layers[l], xs[l], dOut, ctx, s);
      this.block.release(this.kit, s);
      gpu.release(dOut);
      if (l > 0) gpu.release(xs[l]);
      dOut = dx;
    }
    let embeddingGrad: Float32Array | undefined;
    if (capture.embeddingGrad) embeddingGrad = await gpu.readF32(dOut, rows * c.hidden);
    gpu.release(dOut, x0, ids, ctx.mask);
    await gpu.done();
    let lossSum = 0;
    for (const v of losses) lossSum += v;
    return { lossSum, tokens: count, embeddingGrad };
  }

  /** Loss without gradients (evaluation: no dropout). */
  async loss(b: Batch, options: { noLora?: boolean } = {}): Promise<LossResult> {
    const r = await this.forwardInternal(b, options.noLora ?? false, false);
    return { lossSum: r.lossSum, tokens: r.tokens };
  }

  /** Full logits, loss and embedding output (for checks on small vocabularies). */
  async forward(b: Batch, options: { noLora?: boolean } = {}): Promise<ForwardResult> {
    return this.forwardInternal(b, options.noLora ?? false, true) as Promise<ForwardResult>;
  }

  private async forwardInternal(b: Batch, noLora: boolean, collect: boolean): Promise<LossResult & Partial<ForwardResult>> {
    const labels = b.labels.length === b.batch * b.seq ? b.labels : new Int32Array(b.batch * b.seq).fill(-100);
    this.checkBatch({ ...b, labels }, true);
    const gpu = this.gpu;
    const c = this.config;
    const { ctx, ids } = this.startRun(b, noLora, null);
    const { rows } = ctx;
    const { targets, count } = shiftLabels(labels, b.batch, b.seq);
    const x0 = this.embedTokens(ids, rows);
    const embeddingOutput = collect ? await gpu.readF32(x0, rows * c.hidden) : undefined;
    let x = x0;
    for (let l = 0; l < this.layers.length; l++) {
      const { out } = this.layerForward(l, x, ctx, false);
      gpu.release(x);
      x = out;
    }
    const { hf, stats } = this.finalNormForward(x, rows);
    const logits = collect ? new Float32Array(rows * c.vocabSize) : undefined;
    const losses = await this.runHead(hf, rows, targets, { collect: logits });
    gpu.release(x, hf, stats, ids, ctx.mask);
    let lossSum = 0;
    for (const v of losses) lossSum += v;
    return { lossSum, tokens: count, logits, embeddingOutput };
  }

  // ---------------------------------------------------------------- decoding

  /**
   * Records one decoding step: `n` token ids read from `ids` on the GPU, fed at positions
   * pos.. (extending the caches). Returns the last position's [vocab] logits; the caller
   * releases them.
   */
  private decodeStep(ids: GpuBuffer, n: number, pos: number, caches: KvCache[], ctx: RunContext): GpuBuffer {
    const gpu = this.gpu;
    let x = this.embedTokens(ids, n);
    for (let l = 0; l < this.layers.length; l++) {
      const out = this.block.decode(this.kit, this.layers[l], x, n, pos, caches[l], ctx);
      gpu.release(x);
      x = out;
    }
    const { hf, stats } = this.finalNormForward(x, n);
    const logits = gpu.alloc(this.config.vocabSize * 4, 'scratch', 'logits.last');
    this.headLogits(hf, n - 1, 1, logits);
    gpu.release(x, hf, stats);
    return logits;
  }

  async generate(prompt: number[], options: GenerateOptions): Promise<GenerateResult> {
    const gpu = this.gpu;
    const c = this.config;
    if (prompt.length === 0) throw new ModelInputError('generate: the prompt is empty');
    for (const [i, id] of prompt.entries()) if (!(Number.isInteger(id) && id >= 0 && id < c.vocabSize)) throw new ModelInputError(`generate: prompt[${i}] = ${id} is outside the vocabulary`);
    if (!(Number.isInteger(options.maxNewTokens) && options.maxNewTokens >= 0)) throw new ModelInputError(`generate: maxNewTokens ${options.maxNewTokens} must be a whole number ≥ 0`);
    try {
      checkSamplingOptions(options);
    } catch (err) {
      throw new ModelInputError(`generate: ${(err as Error).message}`);
    }
    const maxLen = prompt.length + options.maxNewTokens;
    if (maxLen > this.rope.positions) throw new ModelInputError(`generate: ${maxLen} positions exceed the model's ${this.rope.positions}`);
    const result: GenerateResult = { tokens: [], stoppedBy: 'length' };
    if (options.maxNewTokens === 0) return result;
    const kvWidth = c.kvHeads * c.headDim;
    const caches = this.layers.map((_, l) => ({
      k: gpu.alloc(maxLen * kvWidth * 4, 'activations', `kv_cache.${l}.k`),
      v: gpu.alloc(maxLen * kvWidth * 4, 'activations', `kv_cache.${l}.v`),
    }));
    const run: DecodeRun = {
      prompt: gpu.upload(Int32Array.from(prompt), 'scratch', 'input_ids'),
      promptLength: prompt.length,
      // The id each step feeds the next one: written there by the GPU argmax or the CPU draw.
      next: gpu.alloc(4, 'scratch', 'next_token'),
      caches,
      ctx: { batch: 1, seq: 0, rows: 0, mask: null, noLora: options.noLora ?? false, dropout: null },
      options,
      eos: new Set(options.eosTokenIds ?? []),
      result,
    };
    try {
      await (isGreedy(options) ? this.decodeGreedy(run) : this.decodeSampled(run));
    } finally {
      for (const kv of caches) gpu.release(kv.k, kv.v);
      gpu.release(run.prompt, run.next);
    }
    return result;
  }

  /**
   * Greedy decoding with the argmax on the GPU: it writes each token into `run.next`, which the
   * following step embeds, so only ids come back (and logits when onLogits asks for them). Step
   * i + 1 is recorded before token i is awaited, so the CPU records while the GPU computes; when
   * token i is an EOS, the step recorded ahead is waited for and dropped (the KV-cache row it
   * wrote lies past the output).
   */
  private async decodeGreedy(run: DecodeRun): Promise<void> {
    const gpu = this.gpu;
    const V = this.config.vocabSize;
    const { options, result } = run;
    const launch = (ids: GpuBuffer, n: number, pos: number): Promise<{ token: number; logits: Float32Array | null }> => {
      const logits = this.decodeStep(ids, n, pos, run.caches, run.ctx);
      argmax(gpu, this.shaders.argmax, { logits, out: run.next, rows: 1, vocab: V });
      // Both reads are submitted now, ahead of the next step's argmax overwriting `next`.
      const token = gpu.readU32(run.next, 1);
      const values = options.onLogits ? gpu.readF32(logits, V) : Promise.resolve(null);
      gpu.release(logits);
      return Promise.all([token, values]).then(([t, l]) => ({ token: t[0], logits: l }));
    };
    let pending = launch(run.prompt, run.promptLength, 0);
    let ahead: typeof pending | null = null;
    try {
      for (let i = 0; i < options.maxNewTokens; i++) {
        ahead = i + 1 < options.maxNewTokens ? launch(run.next, 1, run.promptLength + i) : null;
        const { token, logits } = await pending;
        if (logits) options.onLogits!(logits, i);
        result.tokens.push(token);
        options.onToken?.(token, i);
        if (run.eos.has(token)) {
          result.stoppedBy = 'eos';
          break;
        }
        if (ahead) pending = ahead;
        ahead = null;
      }
    } finally {
      // Settle the reads of a step recorded ahead of an EOS or an error before the buffers go back.
      await ahead?.catch(() => undefined);
    }
  }

  /** Sampling: each step's logits come back and the CPU draws (sampling.ts); the token goes back through `run.next`. */
  private async decodeSampled(run: DecodeRun): Promise<void> {
    const gpu = this.gpu;
    const V = this.config.vocabSize;
    const { options, result } = run;
    const random = seededRandom(options.seed ?? 0);
    let logitsBuf = this.decodeStep(run.prompt, run.promptLength, 0, run.caches, run.ctx);
    for (let i = 0; ; i++) {
      const read = gpu.readF32(logitsBuf, V);
      gpu.release(logitsBuf);
      const logits = await read;
      options.onLogits?.(logits, i);
      const token = sampleToken(logits, options, random);
      result.tokens.push(token);
      options.onToken?.(token, i);
      if (run.eos.has(token)) {
        result.stoppedBy = 'eos';
        return;
      }
      if (i + 1 === options.maxNewTokens) return;
      gpu.write(run.next, Int32Array.of(token));
      logitsBuf = this.decodeStep(run.next, 1, run.promptLength + i, run.caches, run.ctx);
    }
  }

  // ---------------------------------------------------------------- adapters, memory, teardown

  /** Zeroes every LoRA gradient buffer. */
  zeroGrads(): void {
    for (const t of this.lora) this.gpu.fill(t.grad, 0);
  }

  /** PEFT adapter_model.safetensors + adapter_config.json of the current adapters. */
  /** `revision`: the base model's commit, when known (PEFT then loads that exact base). */
  async exportAdapter(baseModel: string, revision: string | null = null): Promise<PeftExport> {
    if (!this.loraSettings) throw new ModelInputError('exportAdapter: this model has no LoRA adapters');
    return exportPeftAdapter(this.gpu, this.loraModules, this.loraSettings, baseModel, revision);
  }

  /** NF4 mode: every base linear weight dequantized back to f32, by HF tensor name. */
  async dequantizedLinearWeights(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const l of this.layers) {
      for (const e of l.linears.values()) {
        if (!(e.base instanceof Nf4Linear)) continue;
        const buf = this.gpu.alloc(e.spec.outFeatures * e.spec.inFeatures * 4, 'scratch', 'dequantized');
        dequantizeGpu(this.gpu, this.shaders, e.base.weight, buf);
        out.set(`${e.spec.path}.weight`, await this.gpu.readF32(buf, e.spec.outFeatures * e.spec.inFeatures));
        this.gpu.release(buf);
      }
    }
    return out;
  }

  /** Bytes of frozen weights on the GPU (NF4 parts counted as stored). */
  get weightBytes(): number {
    const normBytes = (n: NormWeights) => n.weight.size + (n.bias?.size ?? 0);
    let bytes = this.embed.size + normBytes(this.finalNorm) + this.rope.cos.size + this.rope.sin.size;
    if (this.lmHead.owned) bytes += this.lmHead.weight.size;
    if (this.lmHead.bias) bytes += this.lmHead.bias.size;
    for (const l of this.layers) {
      for (const n of l.norms.values()) bytes += normBytes(n);
      for (const e of l.linears.values()) bytes += e.base.storedBytes;
    }
    return bytes;
  }

  dispose(): void {
    const gpu = this.gpu;
    gpu.release(this.embed, this.finalNorm.weight, this.finalNorm.bias, this.rope.cos, this.rope.sin, this.lmHead.bias);
    if (this.lmHead.owned) gpu.release(this.lmHead.weight);
    for (const l of this.layers) {
      for (const n of l.norms.values()) gpu.release(n.weight, n.bias);
      for (const e of l.linears.values()) e.base.dispose();
    }
    for (const t of this.lora) gpu.release(t.weight, t.grad);
  }
}
