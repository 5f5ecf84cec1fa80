/** The page's state, driven by engine events and the user's choices. */
import { create } from 'zustand';
import { explain } from './explain';
import type { AdapterDescription } from '../workers/gpu/device';
import type { PoolStats } from '../workers/gpu/pool';
import type {
  CachedModel, DataError, DatasetSummary, EngineEvent, EngineStatus, ExportFormat, ExportPlan, ImportedAdapter, MemoryPlan, ModelInfo,
  PresetSummary, ResumableRun, Section, StorageInfo, RunSettings, TrainState,
} from '../workers/protocol';

export interface TaskProgress {
  task: string;
  done: number;
  total: number;
  unit?: string;
  detail?: string;
  startedAt: number;
  /** Units per second since the task started. */
  rate: number;
  /** Seconds left at that rate; NaN when unknown. */
  eta: number;
}

export interface MetricPoint {
  step: number;
  loss?: number;
  valLoss?: number;
  lr?: number;
  tokensPerS?: number;
  epoch?: number;
  gradNorm?: number;
}

export interface Sample { step: number; prompt: string; text: string }

export interface SectionProblem {
  message: string;
  hint?: string;
  /** Set when the page offers to try regardless: a load the memory planner predicts does not fit. */
  anyway?: boolean;
}

export type ModelChoice = { kind: 'preset'; name: string } | { kind: 'hub'; id: string } | { kind: 'local'; files: File[] };

/** The Export section: the chosen format, what it will write, and the write in progress. */
export interface ExportState {
  format: ExportFormat;
  plan: ExportPlan | null;
  planning: boolean;
  writing: boolean;
  /** Where the last export went, in words ("3 files in the folder …", "qlora-adapter-gguf.zip"). */
  written: string | null;
}

export interface StudioState {
  status: EngineStatus;
  adapter: AdapterDescription | null;
  problem: string | null;
  memory: PoolStats | null;
  log: { level: string; message: string }[];
  errors: Partial<Record<Section, SectionProblem>>;

  presets: PresetSummary[];
  model: ModelChoice;
  plan: MemoryPlan | null;
  modelInfo: ModelInfo | null;
  /** A model download that stopped for want of a connection: what it kept, and which action to run again. */
  interruptedLoad: { action: 'model' | 'train'; done: number; total: number; message: string } | null;
  /** Which action is loading a model now (the one a Resume runs again). */
  loadingFor: 'model' | 'train' | null;
  progress: Record<string, TaskProgress>;
  cached: CachedModel[];
  storage: StorageInfo | null;
  /** The hub access token for gated or private models: in memory; in localStorage only if `rememberToken`. */
  hubToken: string;
  rememberToken: boolean;
  /** Quantize the base to NF4 (QLoRA, the default); off: plain LoRA on the unquantized base (f32 on the GPU). */
  quantizeBase: boolean;

  datasetFile: string | null;
  dataset: DatasetSummary | null;
  dataError: DataError | null;
  dataBusy: boolean;

  settings: RunSettings | null;

  train: { state: TrainState; step: number; totalSteps: number; message?: string; startedAt: number; startStep: number };
  metrics: MetricPoint[];
  samples: Sample[];
  resumable: ResumableRun | null;

  chat: { base: string; adapter: string; running: boolean };
  imported: ImportedAdapter | null;
  exporting: ExportState;

  setInit(status: EngineStatus, adapter: AdapterDescription | null, problem?: string): void;
  onEvent(event: EngineEvent): void;
  setError(section: Section, problem: SectionProblem | null): void;
}

const idleTrain = { state: 'idle' as TrainState, step: 0, totalSteps: 0, startedAt: 0, startStep: 0 };

export const useStudio = create<StudioState>((set) => ({
  status: 'starting',
  adapter: null,
  problem: null,
  memory: null,
  log: [],
  errors: {},
  presets: [],
  model: { kind: 'preset', name: 'demo' },
  plan: null,
  modelInfo: null,
  interruptedLoad: null,
  loadingFor: null,
  progress: {},
  cached: [],
  storage: null,
  hubToken: '',
  rememberToken: false,
  quantizeBase: true,
  datasetFile: null,
  dataset: null,
  dataError: null,
  dataBusy: false,
  settings: null,
  train: idleTrain,
  metrics: [],
  samples: [],
  resumable: null,
  chat: { base: '', adapter: '', running: false },
  imported: null,
  exporting: { format: 'peft', plan: null, planning: false, writing: false, written: null },

  setInit: (status, adapter, problem) => set({ status, adapter, problem: problem ?? null }),
  setError: (section, problem) =>
    set((s) => {
      const errors = { ...s.errors };
      if (problem) errors[section] = problem;
      else delete errors[section];
      return { errors };
    }),
  onEvent: (event) =>
    set((s) => {
      switch (event.type) {
        case 'status':
          return { status: event.status };
        case 'memory':
          return { memory: event.stats };
        case 'log':
          return { log: appendLog(s.log, event.level, event.message) };
        case 'error': {
          const problem = explain(event.error);
          return {
            log: appendLog(s.log, 'error', `${event.where}: ${problem.message}`),
            errors: { ...s.errors, [event.where]: problem },
          };
        }
        case 'device-lost':
          return {
            status: 'device-lost',
            problem: `The GPU stopped responding (${event.reason}): ${event.message}. Reload the page; training can resume from its last checkpoint.`,
          };
        case 'load-interrupted':
          return { interruptedLoad: { action: s.loadingFor ?? 'model', done: event.done, total: event.total, message: event.message } };
        case 'progress':
          return { progress: { ...s.progress, [event.task]: nextProgress(s.progress[event.task], event) } };
        case 'metrics':
          return { metrics: mergeMetrics(s.metrics, event.step, event.values) };
        case 'sample':
          return { samples: [...s.samples, { step: event.step, prompt: event.prompt, text: event.text }] };
        case 'train-state': {
          const starting = event.state === 'running' && s.train.state !== 'running';
          return {
            train: {
              state: event.state,
              step: event.step,
              totalSteps: event.totalSteps,
              message: event.message,
              startedAt: starting ? performance.now() : s.train.startedAt,
              startStep: starting ? event.step : s.train.startStep,
            },
          };
        }
        case 'chat-token': {
          const chat = { ...s.chat, [event.stream]: event.reply };
          return { chat };
        }
        default:
          return {};
      }
    }),
}));

function appendLog(log: StudioState['log'], level: string, message: string) {
  return [...log.slice(-199), { level, message }];
}

function nextProgress(prev: TaskProgress | undefined, e: Extract<EngineEvent, { type: 'progress' }>): TaskProgress {
  const now = performance.now();
  const restarted = !prev || e.done < prev.done;
  const startedAt = restarted ? now : prev.startedAt;
  const elapsed = (now - startedAt) / 1000;
  const rate = elapsed > 0 ? e.done / elapsed : 0;
  const eta = rate > 0 ? (e.total - e.done) / rate : NaN;
  return { task: e.task, done: e.done, total: e.total, unit: e.unit, detail: e.detail, startedAt, rate, eta };
}

const METRIC_KEYS: Record<string, keyof MetricPoint> = {
  loss: 'loss',
  val_loss: 'valLoss',
  lr: 'lr',
  tokens_per_s: 'tokensPerS',
  epoch: 'epoch',
  grad_norm: 'gradNorm',
};

function mergeMetrics(points: MetricPoint[], step: number, values: Record<string, number>): MetricPoint[] {
  const last = points[points.length - 1];
  const point: MetricPoint = last && last.step === step ? { ...last } : { step };
  for (const [name, value] of Object.entries(values)) {
    const key = METRIC_KEYS[name];
    if (key && key !== 'step') point[key] = value;
  }
  if (last && last.step === step) return [...points.slice(0, -1), point];
  // A resumed run replays from its checkpoint: drop points past it so the curve stays one line.
  const kept = last && last.step > step ? points.filter((p) => p.step < step) : points;
  return [...kept, point];
}
