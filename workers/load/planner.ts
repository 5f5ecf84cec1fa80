/**
 * Memory planner: predicts the GPU memory of a QLoRA (or plain LoRA) training step before anything is
 * downloaded, from config.json alone, and answers whether it fits. The numbers come from running
 * the engine itself on a counting device (`engine-memory.ts`): the buffers the engine would
 * allocate, with the pool's own accounting, for the persistent state and for the busiest moment
 * of a forward+backward step.
 */
import type { ByCategory, MemoryCategory } from '../util/memory-categories';
import { parseModelConfig, type ModelConfig } from '../model/config';
import { architectureNames, tensorShapes, type LinearSpec } from '../model/architecture';
import { isTargetModule } from '../model/target-modules';
import { checkConfigBounds } from '../model/config-bounds';
import { DEFAULT_QUANT, getPreset, isNf4, type HfConfig, type QuantSettings } from './presets';
import { nf4Bytes, sumNf4 } from './sizes';
import { EngineMemory, QUANTIZE_F32, type EnginePlan, type LinearLoadPath } from './engine-memory';

export type Verdict = 'fits' | 'does-not-fit' | 'fits-shorter';

export interface PlanRequest {
  config: HfConfig;
  seq: number;
  batch: number;
  rank: number;
  /** PEFT target_modules. */
  targets: string[];
  /** Gradient checkpointing; absent: the planner decides (`checkpointingPays`). */
  checkpointing?: boolean;
  quant?: QuantSettings;
  /** GPU memory to plan against (bytes); default 8 GiB, the laptop GPU the presets aim at. */
  gpuMemoryBytes?: number;
  /** The adapter's limits; defaults are common desktop values. */
  limits?: { maxBufferSize: number; maxStorageBufferBindingSize: number };
  /** LoRA dropout > 0 (the engine keeps a dropped copy of each adapted input); default true. */
  dropout?: boolean;
  /** Batches carry padding (an attention mask is uploaded); default true. */
  padded?: boolean;
  /** Count AdamW moments (off to compare with a bare forward+backward); default true. */
  includeOptimizer?: boolean;
  /** How the linear weights reach the GPU while loading (default: CausalLM quantizing f32 reads). */
  load?: LinearLoadPath;
}

export interface MemoryPlanResult {
  peakBytes: number;
  byCategory: ByCategory;
  largestBuffer: { label: string; bytes: number };
  /** Bytes of the model as the browser stores it (the IndexedDB cache): NF4, or the checkpoint's own for an unquantized base. */
  storageBytes: number;
  /** Bytes the download reads (the 16-bit checkpoint). */
  downloadBytes: number;
  parameters: number;
  trainableParameters: number;
  verdict: Verdict;
  reason: string;
  gpuMemoryBytes: number;
  limits: { maxBufferSize: number; maxStorageBufferBindingSize: number };
  /** Where a smaller setting fits when the verdict is fits-shorter. */
  suggestion: { seq: number; batch: number } | null;
  /** Bytes that stay allocated between steps (weights, LoRA, optimizer). */
  persistent: ByCategory;
  /** CausalLM.load alone: its peak, and the peak of its scratch (quantizer chunks, readbacks). */
  load: { peakBytes: number; scratchPeakBytes: number };
  /** Whether the plan (and a run with these settings) recomputes each layer's activations in backward. */
  checkpointing: boolean;
}

export const GIB = 1024 ** 3;
export const DEFAULT_GPU_MEMORY = 8 * GIB;
export const DEFAULT_LIMITS = { maxBufferSize: 2 * GIB, maxStorageBufferBindingSize: 2 * GIB - 4 };
/**
 * Gradient checkpointing recomputes every layer's forward in backward (about a third more work a
 * step) to keep one hidden state per layer instead of its activations. It pays where those are
 * large (phi-1_5 at 512 tokens: 968 MiB without, 132 MiB with); below this many bytes of
 * activations without it (the demo model: 8 MiB) the memory saved is not worth the time.
 */
export const CHECKPOINTING_ABOVE_BYTES = 64 * 1024 ** 2;

function adapted(config: ModelConfig, targets: string[]): LinearSpec[] {
  return architectureNames(config).layers.flatMap((l) => l.linears.filter((s) => isTargetModule(s.path, targets)));
}

/** Bytes of the checkpoint as published (16-bit) and of the model as cached (NF4 linear weights, or 16-bit as published when the base is not quantized). */
export function modelBytes(config: ModelConfig, quant: QuantSettings): { download: number; storage: number; parameters: number } {
  const names = architectureNames(config);
  const linears = new Set(names.layers.flatMap((l) => l.linears.map((s) => `${s.path}.weight`)));
  let linearParams = 0;
  let denseParams = 0;
  let storage = 0;
  for (const [name, shape] of tensorShapes(config, names)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (linears.has(name)) {
      linearParams += n;
      storage += isNf4(quant) ? sumNf4(nf4Bytes(n, quant)) : 2 * n;
    } else denseParams += n;
  }
  storage += 2 * denseParams;
  return { download: 2 * (linearParams + denseParams), storage, parameters: linearParams + denseParams };
}

type Settings = Required<Omit<PlanRequest, 'config'>>;

/** Engines loaded for recent plans: a new sequence or batch for the same model reuses its load. */
const engines = new Map<string, Promise<EngineMemory>>();
const KEPT_ENGINES = 4;

/** The engine loaded on a counting device with the request's model-side settings. */
function engineFor(cfg: ModelConfig, req: Settings): Promise<EngineMemory> {
  const input = {
    rank: req.rank,
    targets: req.targets,
    quant: req.quant,
    maxPartBytes: Math.floor(Math.min(req.limits.maxStorageBufferBindingSize, req.limits.maxBufferSize) / 16) * 16,
    includeOptimizer: req.includeOptimizer,
    dropout: req.dropout,
    load: req.load,
  };
  const key = JSON.stringify([cfg, input]);
  let engine = engines.get(key);
  if (!engine) {
    engine = EngineMemory.load(cfg, input);
    // A failed load is not kept.
    engine.catch(() => engines.delete(key));
    if (engines.size >= KEPT_ENGINES) engines.delete(engines.keys().next().value!);
  } else engines.delete(key);
  engines.set(key, engine);
  return engine;
}

function evaluate(engine: EngineMemory, req: Settings, seq = req.seq, batch = req.batch): Promise<EnginePlan> {
  return engine.step({ seq, batch, checkpointing: req.checkpointing, dropout: req.dropout, padded: req.padded });
}

export async function planMemory(request: PlanRequest): Promise<MemoryPlanResult> {
  return planModel(parseModelConfig(request.config), request);
}

/** A request's settings with every default filled in; checkpointing off until decided. */
function withDefaults(request: Omit<PlanRequest, 'config'>): Settings {
  return {
    seq: request.seq,
    batch: request.batch,
    rank: request.rank,
    targets: request.targets,
    checkpointing: false,
    quant: request.quant ?? DEFAULT_QUANT,
    gpuMemoryBytes: request.gpuMemoryBytes ?? DEFAULT_GPU_MEMORY,
    limits: request.limits ?? DEFAULT_LIMITS,
    dropout: request.dropout ?? true,
    padded: request.padded ?? true,
    includeOptimizer: request.includeOptimizer ?? true,
    load: request.load ?? QUANTIZE_F32,
  };
}

/**
 * The plan for an already parsed config (the engine's own ModelConfig). Sizes the engine cannot
 * represent are refused first, naming the key of `file`: the plan runs every block.
 */
export async function planModel(cfg: ModelConfig, request: Omit<PlanRequest, 'config'>, file = 'config.json'): Promise<MemoryPlanResult> {
  checkConfigBounds(cfg, file);
  const settings = withDefaults(request);
  for (const [key, v] of [['seq', settings.seq], ['batch', settings.batch], ['rank', settings.rank]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${key} must be a positive integer, got ${v}`);
  }
  if (settings.seq > cfg.maxPositions) throw new RangeError(`seq ${settings.seq} exceeds the model's max_position_embeddings (${cfg.maxPositions})`);
  const modules = adapted(cfg, settings.targets);
  if (modules.length === 0) throw new RangeError(`target modules ${JSON.stringify(settings.targets)} match no linear layer of this ${cfg.arch} model`);

  const engine = await engineFor(cfg, settings);
  const req = { ...settings, checkpointing: request.checkpointing ?? (await checkpointingPays(engine, settings)) };
  const plan = await evaluate(engine, req);
  const peak = plan.peakTotal;
  const largest = { label: plan.largest.label, bytes: plan.largest.size };
  const sizes = modelBytes(cfg, req.quant);
  const trainable = modules.reduce((n, m) => n + req.rank * (m.inFeatures + m.outFeatures), 0);

  const tooBig = largest.bytes > req.limits.maxBufferSize;
  const fitsMemory = peak <= req.gpuMemoryBytes;
  let verdict: Verdict = 'fits';
  let reason = `needs ${fmt(peak)} of ${fmt(req.gpuMemoryBytes)} GPU memory; largest buffer ${fmt(largest.bytes)} (${largest.label})`;
  let suggestion: { seq: number; batch: number } | null = null;
  if (tooBig || !fitsMemory) {
    suggestion = await smallerSetting(engine, req);
    const why = tooBig
      ? `buffer "${largest.label}" needs ${fmt(largest.bytes)} but this GPU allows ${fmt(req.limits.maxBufferSize)} per buffer`
      : `needs ${fmt(peak)} but the GPU has ${fmt(req.gpuMemoryBytes)}`;
    if (suggestion) {
      verdict = 'fits-shorter';
      reason = `${why}; fits with sequence ${suggestion.seq} and batch ${suggestion.batch}`;
    } else {
      verdict = 'does-not-fit';
      const base = await evaluate(engine, req, Math.min(16, req.seq), 1);
      reason = `${why}; even sequence 16, batch 1 needs ${fmt(base.peakTotal)} (weights ${fmt(base.persistent.weights)})`;
    }
  }
  return {
    peakBytes: peak,
    byCategory: plan.atPeak,
    largestBuffer: largest,
    storageBytes: sizes.storage,
    downloadBytes: sizes.download,
    parameters: sizes.parameters,
    trainableParameters: trainable,
    verdict,
    reason,
    gpuMemoryBytes: req.gpuMemoryBytes,
    limits: req.limits,
    suggestion,
    persistent: plan.persistent,
    load: { peakBytes: plan.load.peakTotal, scratchPeakBytes: plan.load.scratchPeak },
    checkpointing: req.checkpointing,
  };
}

/**
 * Whether a run with these settings trains with gradient checkpointing: the planner's own choice
 * (`planModel` without `checkpointing`), so the plan shown and the run agree.
 */
export async function checkpointingFor(cfg: ModelConfig, request: Omit<PlanRequest, 'config' | 'checkpointing'>): Promise<boolean> {
  const settings = withDefaults({ ...request, seq: Math.min(request.seq, cfg.maxPositions) });
  return checkpointingPays(await engineFor(cfg, settings), settings);
}

/** Checkpointing where a step without it keeps more than CHECKPOINTING_ABOVE_BYTES of activations or does not fit. */
async function checkpointingPays(engine: EngineMemory, settings: Settings): Promise<boolean> {
  const without = await evaluate(engine, { ...settings, checkpointing: false });
  return without.atPeak.activations > CHECKPOINTING_ABOVE_BYTES || without.peakTotal > settings.gpuMemoryBytes || without.largest.size > settings.limits.maxBufferSize;
}

/** The longest sequence (then the largest batch) that fits, halving from the request. */
async function smallerSetting(engine: EngineMemory, req: Settings): Promise<{ seq: number; batch: number } | null> {
  const fits = async (seq: number, batch: number) => {
    const r = await evaluate(engine, req, seq, batch);
    return r.peakTotal <= req.gpuMemoryBytes && r.largest.size <= req.limits.maxBufferSize;
  };
  for (let batch = req.batch; batch >= 1; batch = Math.floor(batch / 2)) {
    for (let seq = req.seq; seq >= 16; seq = Math.floor(seq / 2)) {
      if ((seq !== req.seq || batch !== req.batch) && (await fits(seq, batch))) return { seq, batch };
    }
  }
  return null;
}

export function fmt(bytes: number): string {
  if (bytes >= GIB) return `${(bytes / GIB).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The plan for a preset with optional overrides (what `npm run cli -- plan` prints). */
export function planPreset(name: string, overrides: Partial<Omit<PlanRequest, 'config'>> = {}): Promise<MemoryPlanResult> {
  const p = getPreset(name);
  return planMemory({
    config: p.config,
    seq: p.settings.seqLength,
    batch: p.settings.batchSize,
    rank: p.settings.rank,
    targets: p.settings.targetModules,
    quant: p.quant,
    ...overrides,
  });
}

export type { MemoryCategory };
