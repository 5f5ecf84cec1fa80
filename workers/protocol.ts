/**
 * The engine worker's typed API and event stream, shared by the worker and the page.
 * The page never touches the GPU: it calls these methods through comlink and renders events.
 * Everything here is plain data (structured-clone safe).
 */
import type { AdapterDescription } from './gpu/device';
import type { PoolStats, ByCategory } from './gpu/pool';
import type { ErrorInfo } from './errors';
import type { RunSettings } from './run/settings';

/** Posted once by the worker when its comlink API is listening. */
export const ENGINE_READY = 'qlora-studio:engine-ready';

export type EngineStatus = 'starting' | 'ready' | 'busy' | 'no-webgpu' | 'device-lost';

/** Where in the studio something happened: errors are shown in that section. */
export type Section = 'model' | 'data' | 'settings' | 'train' | 'chat' | 'export';

export type TrainState = 'idle' | 'loading' | 'running' | 'pausing' | 'paused' | 'stopping' | 'stopped' | 'done' | 'failed';

export type EngineEvent =
  | { type: 'status'; status: EngineStatus }
  /** A long task (download, quantize, tokenize, checkpoint): `done`/`total` in `unit`. */
  | { type: 'progress'; task: string; done: number; total: number; unit?: 'bytes' | 'tensors' | 'rows' | 'steps'; detail?: string }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  /** One training record: `values` holds loss, lr, grad_norm, tokens_per_s, epoch, val_loss… */
  | { type: 'metrics'; step: number; values: Record<string, number> }
  | { type: 'memory'; stats: PoolStats }
  /** A failure of background work (a run): what it is, where, and what to do (workers/errors.ts). */
  | { type: 'error'; where: Section; error: ErrorInfo }
  | { type: 'device-lost'; reason: string; message: string }
  | { type: 'train-state'; state: TrainState; step: number; totalSteps: number; message?: string }
  | { type: 'sample'; step: number; prompt: string; text: string }
  /** Streaming chat output: the reply so far (it replaces the previous one); `done` closes the stream. */
  | { type: 'chat-token'; stream: ChatStream; reply: string; done: boolean }
  /** Another tab opened or closed a run: what `resumable()` answers may have changed. */
  | { type: 'runs-changed' }
  /**
   * A model download stopped for want of a connection. What finished is kept (whole tensors, in
   * the cache): loading again resumes from there. `done`/`total`: bytes of this attempt.
   */
  | { type: 'load-interrupted'; done: number; total: number; message: string };

export type ChatStream = 'base' | 'adapter';

export interface EngineInit {
  status: EngineStatus;
  adapter: AdapterDescription | null;
  /** Why WebGPU is unavailable, in words for a person, when status is 'no-webgpu'. */
  problem?: string;
}

/** The run contract lives in workers/run/settings.ts; the engine checks every one it receives. */
export type { RunSettings, Schedule } from './run/settings';
export type { ErrorCode, ErrorInfo } from './errors';

export interface PresetSummary {
  name: string;
  /** Hub repo id or the local path of the built-in model. */
  model: string;
  architecture: string;
  /** Linear layers LoRA can target in this architecture. */
  targetModules: string[];
  /** The dataset template this preset expects, if any. */
  template: string | null;
  description: string;
  defaults: RunSettings;
  /** Prompts the run samples from every `sampleEvery` steps. */
  samplePrompts: string[];
}

export type ModelSource =
  /** A hub preset's `revision` overrides the preset's (a run pins the commit it started on). */
  | { kind: 'preset'; name: string; revision?: string }
  | { kind: 'hub'; id: string; revision?: string }
  | { kind: 'local'; files: File[] };

export type Verdict = 'fits' | 'does-not-fit' | 'fits-shorter';

export interface MemoryPlan {
  peakBytes: number;
  byCategory: ByCategory;
  largestBuffer: number;
  storageBytes: number;
  /** The GPU's per-buffer and per-binding limits, which a single tensor must respect. */
  maxBufferSize: number;
  maxBindingSize: number;
  verdict: Verdict;
  /** Why, in words for a person (e.g. "fits with sequence 256"). */
  reason: string;
  /** The GPU memory planned against: browsers do not reveal it, so it is an assumed laptop GPU. */
  gpuMemoryBytes: number;
  /** A sequence length and batch that fit, when the verdict is fits-shorter. */
  suggestion: { seq: number; batch: number } | null;
  /** Bytes the download reads (the published 16-bit checkpoint). */
  downloadBytes: number;
  /** Whether training recomputes each layer's activations in backward (where they would be large). */
  checkpointing: boolean;
}

export interface ModelInfo {
  id: string;
  architecture: string;
  parameters: number;
  layers: number;
  targetModules: string[];
  fromCache: boolean;
  /** How the base is stored: 'nf4' (QLoRA) or 'none' (unquantized, f32 on the GPU). */
  quantization: 'nf4' | 'none';
}

export interface CachedModel {
  key: string;
  id: string;
  bytes: number;
  savedAt: number;
}

export interface StorageInfo {
  usage: number;
  quota: number;
  persisted: boolean;
}

export type ColumnMapping =
  | { kind: 'prompt-response'; prompt: string; response: string }
  | { kind: 'text'; text: string }
  | { kind: 'messages'; messages: string };

export type DatasetSource = { kind: 'file'; file: File } | { kind: 'hub'; id: string };

export interface DatasetRequest {
  /** null re-maps and re-tokenizes the dataset loaded last (new mapping, length or split). */
  source: DatasetSource | null;
  /** A template preset (ds1000, counseling) or an explicit mapping; neither = detect. */
  template?: string | null;
  mapping?: ColumnMapping | null;
  seqLength: number;
  validationFraction: number;
  seed: number;
  /** The tokenizer of the model being trained (a preset name or a model id). */
  model: ModelSource;
}

/** A dataset problem located in the file the user gave (line/column null when they do not apply). */
export interface DataError {
  file: string;
  line: number | null;
  column: number | null;
  message: string;
}

export interface DatasetSummary {
  file: string;
  rows: number;
  columns: string[];
  mapping: ColumnMapping | null;
  template: string | null;
  train: number;
  validation: number;
  tokens: {
    mean: number;
    p95: number;
    max: number;
    truncated: number;
    labelTokens: number;
    histogram: { edges: number[]; counts: number[] };
  } | null;
  /** One formatted example: the masked part (no loss) and the learned part. */
  /** The first example as trained: its text in order, each part learned (loss) or masked. */
  preview: { masked: string; learned: string; parts: { text: string; learn: boolean }[] } | null;
  warnings: string[];
}

export type DatasetResult = { ok: true; summary: DatasetSummary } | { ok: false; error: DataError };

/** A run that can be continued: the latest valid checkpoint of an interrupted run. */
export interface ResumableRun {
  runId: string;
  step: number;
  totalSteps: number;
  savedAt: number;
  model: string;
  dataset: string;
  /** The base it trains on: 'nf4' (QLoRA) or 'none' (unquantized, f32): it resumes on the same. */
  quantization: 'nf4' | 'none';
  /** The run is open (training or paused) in another tab of this browser: continue it there. */
  openElsewhere: boolean;
}

export interface GenerateRequest {
  prompt: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  streams: ChatStream[];
}

/** What the README model card of an exported adapter says. */
export interface ModelCardFacts {
  finalTrainLoss: number | null;
  finalValidationLoss: number | null;
  steps: number;
  dataset: string;
}

/**
 * The export formats: PEFT folder, llama.cpp GGUF adapter (+ Ollama Modelfile), merged 16-bit
 * model, and the run bundle (docs/RUN-BUNDLE.md: the run at its newest checkpoint, to continue elsewhere).
 */
export type ExportFormat = 'peft' | 'gguf' | 'merged' | 'run';

/** What an export will write, known before anything is: every file with its size. */
export interface ExportPlan {
  format: ExportFormat;
  files: { name: string; bytes: number }[];
  totalBytes: number;
  /** Why llama.cpp cannot take this adapter (GGUF only); non-empty means nothing can be written. */
  refusals: string[];
  /** The base model as the adapter names it, and the commit. */
  baseModel: string;
  revision: string | null;
  /** Merged only: which weights the delta goes into. */
  mergedInto?: 'original' | 'dequantized-nf4';
}

/**
 * Receives an export's bytes, in order: a file starts, its chunks follow (each owned by the
 * receiver), then the next file. Awaited, so a slow disk holds the engine back.
 */
export type ExportChunk = { type: 'file'; name: string; bytes: number } | { type: 'chunk'; data: Uint8Array };
export type ExportSink = (chunk: ExportChunk) => Promise<void>;

export interface ImportedAdapter {
  baseModel: string;
  rank: number;
  alpha: number;
  targetModules: string[];
  tensors: number;
}

/** How a model load stores the base and treats the memory planner's verdict. */
export interface LoadOptions {
  /** Load even when the plan for these settings is "does-not-fit" on this GPU (refused with code 'does-not-fit' otherwise). */
  anyway?: boolean;
  /**
   * Quantize the base's linear weights to NF4 with double quantization (QLoRA; the default). false:
   * plain LoRA on the unquantized base, held in f32 on the GPU (4 bytes per parameter instead of
   * about 0.56), bit-for-bit the checkpoint's values.
   */
  quantize?: boolean;
}

export interface EngineApi {
  /** Acquire the GPU and report the adapter. Events arrive through `listener`. */
  init(listener: (event: EngineEvent) => void): Promise<EngineInit>;
  memory(): Promise<PoolStats | null>;
  presets(): Promise<PresetSummary[]>;
  /**
   * The hub access token for gated or private repos (null forgets it). Held in the engine's
   * memory only, sent to the hub's own hosts only, never logged, never in an error or event.
   */
  setHubToken(token: string | null): Promise<void>;
  /** Predict peak GPU memory before anything downloads (`options.quantize` as the load will have it; `anyway` plays no part). */
  plan(model: ModelSource, settings: RunSettings, options?: LoadOptions): Promise<MemoryPlan>;
  /** Load the base model with fresh LoRA adapters for `settings` (Chat can use it before any training). */
  loadModel(model: ModelSource, settings: RunSettings, options?: LoadOptions): Promise<ModelInfo>;
  cachedModels(): Promise<CachedModel[]>;
  deleteCachedModel(key: string): Promise<void>;
  storage(): Promise<StorageInfo>;
  /** Parse, map, tokenize and split; bad input comes back as a value, never a throw. */
  loadDataset(request: DatasetRequest): Promise<DatasetResult>;
  /** Start a fresh run (loads the model if needed); returns when it has started. */
  train(model: ModelSource, settings: RunSettings, options?: LoadOptions): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
  /** The interrupted run a reload can continue, if any. */
  resumable(): Promise<ResumableRun | null>;
  /** Continue an interrupted run from its checkpoint (after a reload or a crash). */
  resumeRun(runId: string): Promise<void>;
  discardRun(runId: string): Promise<void>;
  /** Generate from the base model and/or the adapter; tokens arrive as `chat-token` events. */
  generate(request: GenerateRequest): Promise<void>;
  /** One zip: adapter_model.safetensors, adapter_config.json (PEFT), README.md. */
  exportAdapter(card: ModelCardFacts): Promise<Uint8Array>;
  /** An export's files and sizes (and, for GGUF, llama.cpp's refusals) before writing. */
  exportPlan(format: ExportFormat, card: ModelCardFacts): Promise<ExportPlan>;
  /** Writes an export into `sink` file by file, chunk by chunk; `progress` events with task 'export'. */
  exportWrite(format: ExportFormat, card: ModelCardFacts, sink: ExportSink): Promise<void>;
  importAdapter(files: File[]): Promise<ImportedAdapter>;
  /** A run bundle (a folder's files or one zip) as this browser's interrupted run (`resumeRun` continues it); Chat uses its adapter. */
  importRun(files: File[]): Promise<{ run: ResumableRun; adapter: ImportedAdapter }>;
}
