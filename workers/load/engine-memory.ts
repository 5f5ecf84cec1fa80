/**
 * The engine's GPU allocations replayed without a GPU: the same buffers, in the same order,
 * with the same sizes, 16-byte rounding and categories as CausalLM.load, forwardBackward and
 * the optimizer make them (workers/model/causal-lm.ts, frozen-linear.ts, lora-adapter.ts,
 * workers/kernels/lora.ts, workers/nf4/gpu.ts, workers/train/paged-moments.ts). Live bytes are
 * tracked like BufferPool does, so the peak is the engine's peak. When the engine changes its
 * allocation pattern this file must follow; tests/gpu/planner-measured.test.ts compares the
 * two on real models.
 */
import { MEMORY_CATEGORIES, type ByCategory, type MemoryCategory } from '../gpu/pool';
import { UNIFORM_ARENA_BYTES } from '../gpu/runtime';
import { architectureNames, type LinearSpec, type NormSpec } from '../model/architecture';
import type { ModelConfig } from '../model/config';
import { planParts } from '../nf4/gpu';
import { backwardScratchBytes, forwardScratchBytes } from '../kernels/attention';
import type { QuantSettings } from './presets';

const zero = (): ByCategory => ({ weights: 0, lora: 0, optimizer: 0, activations: 0, scratch: 0 });

/** Pool rounding: at least 16 bytes, a multiple of 16. */
export const poolSize = (bytes: number): number => Math.max(16, Math.ceil(bytes / 16) * 16);

export interface SimBuffer {
  readonly label: string;
  readonly category: MemoryCategory;
  readonly size: number;
}

/** Live and peak bytes of a replayed allocation sequence. */
export class MemorySim {
  private readonly live = zero();
  private liveTotal = 0;
  peakTotal = 0;
  /** Bytes per category at the moment of the peak (they sum to peakTotal). */
  atPeak = zero();
  /** Each category's own highest live bytes (like the pool's `peak`). */
  peakByCategory = zero();
  largest: SimBuffer = { label: '', category: 'scratch', size: 0 };
  private readonly liveSet = new Set<SimBuffer>();

  alloc(bytes: number, category: MemoryCategory, label: string): SimBuffer {
    const b: SimBuffer = { label, category, size: poolSize(bytes) };
    this.liveSet.add(b);
    this.live[category] += b.size;
    this.liveTotal += b.size;
    this.peakByCategory[category] = Math.max(this.peakByCategory[category], this.live[category]);
    if (this.liveTotal > this.peakTotal) {
      this.peakTotal = this.liveTotal;
      this.atPeak = { ...this.live };
    }
    if (b.size > this.largest.size) this.largest = b;
    return b;
  }

  release(...bufs: (SimBuffer | null | undefined)[]): void {
    for (const b of bufs) {
      if (!b) continue;
      if (!this.liveSet.delete(b)) throw new Error(`simulated buffer "${b.label}" released twice`);
      this.live[b.category] -= b.size;
      this.liveTotal -= b.size;
    }
  }

  get liveBytes(): number {
    return this.liveTotal;
  }

  liveByCategory(): ByCategory {
    return { ...this.live };
  }
}

export interface StepShape {
  seq: number;
  batch: number;
  rank: number;
  checkpointing: boolean;
  /** LoRA dropout > 0 (the engine then keeps a dropped copy of each adapted input). */
  dropout: boolean;
  /** The batch has padding (the engine uploads an attention mask). */
  padded: boolean;
}

interface ModelState {
  embed: SimBuffer;
  /** Adapted linear layers by module path. */
  adapted: Set<string>;
}

/** How the base linear weights reach the GPU while CausalLM.load runs. */
export type LinearLoadPath =
  /** CausalLM quantizes what `readF32` returns (quantizeToGpu: chunks of 1 Mi f32 elements). */
  | { kind: 'quantize-f32' }
  /**
   * The source streams the stored bytes into the GPU quantizer (the studio's download on a real
   * GPU): chunks of `chunkBytes` of the checkpoint's dtype, then, with `readbackBytes`, the
   * NF4 state read back for the cache in windows of that size.
   */
  | { kind: 'stream'; chunkBytes: number; readbackBytes: number | null }
  /** Stored NF4 states uploaded as they are (a cache hit, the CPU quantizer): no scratch. */
  | { kind: 'stored' };

export const QUANTIZE_F32: LinearLoadPath = { kind: 'quantize-f32' };

/** CausalLM.load in NF4 mode, then the LoRA modules (A, B and their gradients). */
export function simulateLoad(sim: MemorySim, cfg: ModelConfig, adapted: LinearSpec[], rank: number, quant: QuantSettings, maxPartBytes: number, path: LinearLoadPath = QUANTIZE_F32): ModelState {
  const names = architectureNames(cfg);
  const h = cfg.hidden;
  // A 16-bit checkpoint's embedding and lm_head stay 16-bit (CausalLM.load in NF4 mode).
  const tableBytes = cfg.storedDtype === 'F16' || cfg.storedDtype === 'BF16' ? 2 : 4;
  const embed = sim.alloc(cfg.vocabSize * h * tableBytes, 'weights', names.embedding);
  // The runtime's uniform arena: made by the first dispatch, kept for the device's lifetime.
  sim.alloc(UNIFORM_ARENA_BYTES, 'scratch', 'uniforms');
  let tables = false;
  const norm = (n: NormSpec) => {
    sim.alloc(h * 4, 'weights', `${n.path}.weight`);
    if (n.bias) sim.alloc(h * 4, 'weights', `${n.path}.bias`);
  };
  for (const layer of names.layers) {
    for (const ls of layer.linears) {
      if (ls.bias) sim.alloc(ls.outFeatures * 4, 'weights', `${ls.path}.bias`);
      // quantizeStreamToGpu / uploadNf4: packed parts, then (after the chunks) the absmax buffers and the shared tables.
      const parts = planParts(ls.outFeatures, ls.inFeatures, maxPartBytes);
      for (const [i, p] of parts.entries()) sim.alloc(Math.ceil(p.elemCount / 8) * 4, 'weights', `${ls.path}.packed${i}`);
      const n = ls.outFeatures * ls.inFeatures;
      const blocks = Math.ceil(n / quant.blocksize);
      if (path.kind !== 'stored') {
        // One chunk at a time: its input, packed codes and absmax, and the absmax readback.
        const elemBytes = path.kind === 'stream' ? tableBytes : 4;
        const chunkBlocks = path.kind === 'stream'
          ? Math.min(blocks, Math.max(1, Math.floor(path.chunkBytes / elemBytes / quant.blocksize)))
          : Math.min(16384, blocks);
        const chunk = [
          sim.alloc(Math.min(n, chunkBlocks * quant.blocksize) * elemBytes, 'scratch', `${ls.path}.chunk`),
          sim.alloc(chunkBlocks * 32, 'scratch', `${ls.path}.chunk-packed`),
          sim.alloc(chunkBlocks * 4, 'scratch', `${ls.path}.chunk-absmax`),
        ];
        const readback = sim.alloc(chunkBlocks * 4, 'scratch', 'readback');
        sim.release(readback, ...chunk);
      }
      if (quant.doubleQuant) {
        sim.alloc(blocks, 'weights', `${ls.path}.qabsmax`);
        sim.alloc(Math.ceil(blocks / quant.nestedBlocksize) * 4, 'weights', `${ls.path}.nested`);
      } else {
        sim.alloc(blocks * 4, 'weights', `${ls.path}.absmax`);
      }
      if (!tables) {
        sim.alloc((16 + 256) * 4, 'weights', 'nf4-tables');
        tables = true;
      }
      if (path.kind === 'stream' && path.readbackBytes !== null) {
        // readBackNf4: one staging window at a time (the largest is all that counts), then the absmax codes and nested absmax.
        const largestPart = Math.max(...parts.map((p) => Math.ceil(p.elemCount / 8) * 4));
        sim.release(sim.alloc(Math.min(Math.max(4, Math.floor(path.readbackBytes / 4) * 4), largestPart), 'scratch', 'readback'));
        sim.release(sim.alloc(quant.doubleQuant ? blocks : 4 * blocks, 'scratch', 'readback'));
        if (quant.doubleQuant) sim.release(sim.alloc(4 * Math.ceil(blocks / quant.nestedBlocksize), 'scratch', 'readback'));
      }
    }
    layer.norms.forEach(norm);
  }
  norm(names.finalNorm);
  if (!cfg.tiedLmHead) sim.alloc(cfg.vocabSize * h * tableBytes, 'weights', names.lmHeadWeight);
  if (names.lmHeadBias) sim.alloc(cfg.vocabSize * 4, 'weights', names.lmHeadBias);
  const half = cfg.rotaryDim / 2;
  sim.alloc(cfg.maxPositions * half * 4, 'weights', 'rotary.cos');
  sim.alloc(cfg.maxPositions * half * 4, 'weights', 'rotary.sin');
  for (const m of adapted) {
    for (const [key, numel] of [['lora_A', rank * m.inFeatures], ['lora_B', m.outFeatures * rank]] as const) {
      sim.alloc(numel * 4, 'lora', `${m.path}.${key}.grad`);
      sim.alloc(numel * 4, 'lora', `${m.path}.${key}`);
    }
  }
  return { embed, adapted: new Set(adapted.map((m) => m.path)) };
}

/** AdamW moments (exp_avg, exp_avg_sq) in pages of 1 Mi elements per LoRA tensor, all resident. */
export function simulateOptimizer(sim: MemorySim, adapted: LinearSpec[], rank: number, pageElems = 1 << 20): void {
  for (const m of adapted) {
    for (const numel of [rank * m.inFeatures, m.outFeatures * rank]) {
      for (let start = 0; start < numel; start += pageElems) {
        const count = Math.min(pageElems, numel - start);
        sim.alloc(count * 4, 'optimizer', `${m.path}.exp_avg`);
        sim.alloc(count * 4, 'optimizer', `${m.path}.exp_avg_sq`);
      }
    }
  }
}

/** One forward + backward (CausalLM.forwardBackward). */
export function simulateForwardBackward(sim: MemorySim, cfg: ModelConfig, state: ModelState, s: StepShape): void {
  const names = architectureNames(cfg);
  const rows = s.batch * s.seq;
  const h = cfg.hidden;
  const H = cfg.heads;
  const D = cfg.headDim;
  const kvW = cfg.kvHeads * D;
  const V = cfg.vocabSize;

  /**
   * Nf4Linear.forward runs the fused dequantize-matmul; its output overwrites, so an
   * accumulating forward (dense and fc2 add into the residual) goes through an [M, out] scratch.
   * backwardData accumulates in the kernel itself and allocates nothing.
   */
  const baseForward = (ls: LinearSpec, accumulate: boolean) => {
    if (accumulate) sim.release(sim.alloc(rows * ls.outFeatures * 4, 'scratch', 'nf4-acc'));
  };
  const isAdapted = (ls: LinearSpec) => state.adapted.has(ls.path);

  const linearForward = (ls: LinearSpec, keepH: SimBuffer[] | null, accumulate = false) => {
    baseForward(ls, accumulate);
    if (!isAdapted(ls)) return;
    const kept = keepH ? sim.alloc(rows * s.rank * 4, 'activations', `${ls.path}.lora_h`) : null;
    if (kept) keepH!.push(kept);
    const xd = s.dropout ? sim.alloc(rows * ls.inFeatures * 4, 'scratch', 'lora-xd') : null;
    const tmpH = kept ? null : sim.alloc(rows * s.rank * 4, 'scratch', 'lora-h');
    sim.release(tmpH, xd);
  };

  const linearBackward = (ls: LinearSpec) => {
    if (!isAdapted(ls)) return;
    const xd = s.dropout ? sim.alloc(rows * ls.inFeatures * 4, 'scratch', 'lora-xd') : null;
    const dh = sim.alloc(rows * s.rank * 4, 'scratch', 'lora-dh');
    if (s.dropout) sim.release(sim.alloc(rows * ls.inFeatures * 4, 'scratch', 'lora-dxd'));
    sim.release(dh, xd);
  };

  interface Saved {
    bufs: SimBuffer[];
  }

  // Attention's own scratch (key-chunk partials, per-slice dK/dV sums), live only during its dispatches.
  const attnShape = { batch: s.batch, tq: s.seq, tk: s.seq, heads: H, kvHeads: cfg.kvHeads, headDim: D, posOffset: 0 };
  const scratchWhile = (bytes: number, label: string) => {
    if (bytes > 0) sim.release(sim.alloc(bytes, 'scratch', label));
  };

  const layerForward = (li: number, keep: boolean): { out: SimBuffer; saved: Saved | null } => {
    const layer = names.layers[li];
    const cat: MemoryCategory = keep ? 'activations' : 'scratch';
    const byRole = new Map(layer.linears.map((l) => [l.role, l]));
    const bufs: SimBuffer[] = [];
    const keepH: SimBuffer[] | null = keep ? [] : null;
    bufs.push(sim.alloc(rows * h * 4, cat, 'ln.out'), sim.alloc(rows * 8, cat, 'ln.stats'));
    for (const role of byRole.has('qkv') ? ['qkv'] : ['q', 'k', 'v']) {
      const ls = byRole.get(role)!;
      bufs.push(sim.alloc(rows * ls.outFeatures * 4, cat, `${ls.path}.out`));
      linearForward(ls, keepH);
    }
    bufs.push(sim.alloc(rows * H * D * 4, cat, 'attn.out'), sim.alloc(s.batch * H * s.seq * 8, cat, 'attn.stats'));
    scratchWhile(forwardScratchBytes(attnShape), 'attn.chunks');
    const out = sim.alloc(rows * h * 4, 'activations', `layer${li}.out`);
    linearForward(byRole.get('dense')!, keepH, true);
    bufs.push(sim.alloc(rows * cfg.ffn * 4, cat, 'mlp.fc1'));
    linearForward(byRole.get('fc1')!, keepH);
    const act = sim.alloc(rows * cfg.ffn * 4, 'scratch', 'mlp.act');
    linearForward(byRole.get('fc2')!, keepH, true);
    sim.release(act);
    const saved = { bufs: [...bufs, ...(keepH ?? [])] };
    if (keep) return { out, saved };
    sim.release(...saved.bufs);
    return { out, saved: null };
  };

  const layerBackward = (li: number): SimBuffer => {
    const layer = names.layers[li];
    const byRole = new Map(layer.linears.map((l) => [l.role, l]));
    const dx = sim.alloc(rows * h * 4, 'scratch', `layer${li}.dx`);
    const act = sim.alloc(rows * cfg.ffn * 4, 'scratch', 'mlp.act');
    const dAct = sim.alloc(rows * cfg.ffn * 4, 'scratch', 'mlp.dact');
    linearBackward(byRole.get('fc2')!);
    sim.release(act);
    const dh = sim.alloc(rows * h * 4, 'scratch', 'ln.dout');
    linearBackward(byRole.get('fc1')!);
    sim.release(dAct);
    const dO = sim.alloc(rows * H * D * 4, 'scratch', 'attn.dout');
    linearBackward(byRole.get('dense')!);
    if (byRole.has('qkv')) {
      const qkv = byRole.get('qkv')!;
      const dqkv = sim.alloc(rows * qkv.outFeatures * 4, 'scratch', 'attn.dqkv');
      scratchWhile(backwardScratchBytes(attnShape), 'attn.dkv-slices');
      linearBackward(qkv);
      sim.release(dqkv);
    } else {
      const dq = sim.alloc(rows * H * D * 4, 'scratch', 'attn.dq');
      const dkv = sim.alloc(2 * rows * kvW * 4, 'scratch', 'attn.dkv');
      scratchWhile(backwardScratchBytes(attnShape), 'attn.dkv-slices');
      const dv = sim.alloc(rows * kvW * 4, 'scratch', 'attn.dv');
      for (const role of ['q', 'k', 'v'] as const) linearBackward(byRole.get(role)!);
      sim.release(dq, dkv, dv);
    }
    sim.release(dO, dh);
    return dx;
  };

  // gpu.dummy: bound where a kernel's optional input is absent; allocated once, on first use.
  sim.alloc(256, 'scratch', 'dummy');
  const ids = sim.alloc(rows * 4, 'scratch', 'input_ids');
  const mask = s.padded ? sim.alloc(rows * 4, 'scratch', 'attention_mask') : null;
  const x0 = sim.alloc(rows * h * 4, 'activations', 'embedding.out');
  const xs = [x0];
  const saved: (Saved | null)[] = [];
  const L = names.layers.length;
  for (let l = 0; l < L; l++) {
    const r = layerForward(l, !s.checkpointing);
    xs.push(r.out);
    saved.push(r.saved);
  }
  const hf = sim.alloc(rows * h * 4, 'activations', 'final_ln.out');
  const stats = sim.alloc(rows * 8, 'activations', 'final_ln.stats');
  const dhf = sim.alloc(rows * h * 4, 'scratch', 'final_ln.dout');
  // runHead: lm_head + cross-entropy in chunks of rows that fit 32 MiB of logits.
  const headChunkRows = Math.max(1, Math.floor((32 * 1024 * 1024) / (4 * V)));
  const targets = sim.alloc(rows * 4, 'scratch', 'targets');
  const losses = sim.alloc(rows * 4, 'scratch', 'losses');
  const logits = sim.alloc(Math.min(rows, headChunkRows) * V * 4, 'scratch', 'logits.chunk');
  sim.release(sim.alloc(rows * 4, 'scratch', 'readback'));
  sim.release(targets, losses, logits);
  let dOut = sim.alloc(rows * h * 4, 'scratch', 'final.dx');
  sim.release(hf, stats, dhf, xs[L]);
  for (let l = L - 1; l >= 0; l--) {
    let sv = saved[l];
    if (!sv) {
      const again = layerForward(l, true);
      sim.release(again.out);
      sv = again.saved!;
    }
    const dx = layerBackward(l);
    sim.release(...sv.bufs, dOut);
    if (l > 0) sim.release(xs[l]);
    dOut = dx;
  }
  sim.release(dOut, x0, ids, mask);
}

export interface EnginePlanInput extends StepShape {
  adapted: LinearSpec[];
  quant: QuantSettings;
  maxPartBytes: number;
  includeOptimizer: boolean;
  /** How the linear weights are loaded (default: CausalLM quantizing f32 reads). */
  load?: LinearLoadPath;
}

export interface EnginePlan {
  peakTotal: number;
  atPeak: ByCategory;
  largest: SimBuffer;
  /** Bytes that stay allocated between steps (weights, LoRA, optimizer). */
  persistent: ByCategory;
}

/** Load, optimizer state, one forward+backward: the peak the pool would measure. */
export function simulateTraining(cfg: ModelConfig, input: EnginePlanInput): EnginePlan {
  const sim = new MemorySim();
  const state = simulateLoad(sim, cfg, input.adapted, input.rank, input.quant, input.maxPartBytes, input.load);
  if (input.includeOptimizer) simulateOptimizer(sim, input.adapted, input.rank);
  const persistent = sim.liveByCategory();
  simulateForwardBackward(sim, cfg, state, input);
  return { peakTotal: sim.peakTotal, atPeak: sim.atPeak, largest: sim.largest, persistent };
}

export const sumCategories = (b: ByCategory): number => MEMORY_CATEGORIES.reduce((n, c) => n + b[c], 0);
