/**
 * The engine worker: owns the GPU device and runs everything that touches it. DOM-free.
 * It turns the page's requests (workers/protocol.ts) into calls on the engine modules
 * (load, data, model, train) and reports back through events.
 */
import * as Comlink from 'comlink';
import { Gpu } from './gpu/runtime';
import { WebGpuUnavailableError } from './gpu/device';
import { PRESETS, type Preset } from './load/presets';
import { archFromConfig } from './load/arch';
import { collectRows, readRows } from './data/source';
import { toErrorInfo } from './data/errors';
import type { Row } from './data/types';
import { ENGINE_READY } from './protocol';
import type {
  ColumnMapping, DatasetRequest, DatasetResult, DatasetSummary, EngineApi, EngineEvent, EngineInit, ModelSource, PresetSummary,
  TrainSettings,
} from './protocol';

let gpu: Gpu | null = null;
let emit: (event: EngineEvent) => void = () => {};

/** The rows of the dataset loaded last, kept so a new mapping or split needs no re-read. */
let lastDataset: { file: string; rows: Row[]; columns: string[] } | null = null;

/** Features that arrive with engine modules still being built: a clear message until then. */
class NotAvailableError extends Error {
  constructor(what: string) {
    super(`${what} is not available in this build of the studio yet.`);
    this.name = 'NotAvailableError';
  }
}

function presetDefaults(p: Preset): TrainSettings {
  return {
    rank: p.lora.r,
    alpha: p.lora.alpha,
    dropout: p.lora.dropout,
    targetModules: [...p.lora.targetModules],
    learningRate: p.train.learningRate,
    schedule: p.train.scheduler,
    warmupRatio: p.train.warmupRatio,
    warmupSteps: 0,
    epochs: p.train.epochs,
    maxSteps: 0,
    batchSize: p.train.microBatch,
    gradAccum: p.train.gradAccumulation,
    seqLength: p.train.seqLen,
    seed: 42,
    evalEvery: 10,
    sampleEvery: 20,
    checkpointEvery: 10,
    validationFraction: 0.1,
  };
}

function presetSummary(p: Preset): PresetSummary {
  const arch = archFromConfig(p.config, `${p.name} config.json`);
  return {
    name: p.name,
    model: p.model.kind === 'hub' ? p.model.repo : p.model.baseUrl,
    architecture: `${arch.family}, ${arch.layers} layers, hidden ${arch.hidden}, ${(arch.parameters / 1e6).toFixed(1)} M parameters`,
    targetModules: [...new Set(arch.linears.map((l) => l.module))],
    template: p.template,
    description: p.description,
    defaults: presetDefaults(p),
    samplePrompts: [],
  };
}

/** Every column name, nested objects as dotted paths (`metadata.library`). */
function columnsOf(rows: Row[]): string[] {
  const names = new Set<string>();
  const walk = (value: unknown, prefix: string) => {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(v, prefix ? `${prefix}.${k}` : k);
    } else if (prefix) names.add(prefix);
  };
  for (const row of rows.slice(0, 100)) walk(row, '');
  return [...names];
}

/** A first guess at the mapping from common column names; the person can change it. */
function guessMapping(columns: string[]): ColumnMapping | null {
  const find = (...names: string[]) => columns.find((c) => names.includes(c.toLowerCase()));
  const messages = find('messages', 'conversations');
  if (messages) return { kind: 'messages', messages };
  const prompt = find('prompt', 'instruction', 'question', 'context', 'input');
  const response = find('response', 'reference_code', 'completion', 'answer', 'output');
  if (prompt && response) return { kind: 'prompt-response', prompt, response };
  const text = find('text', 'content');
  return text ? { kind: 'text', text } : null;
}

async function readDataset(request: DatasetRequest): Promise<{ file: string; rows: Row[]; columns: string[] }> {
  if (request.source === null) {
    if (!lastDataset) throw new Error('No dataset is loaded yet: drop a file first.');
    return lastDataset;
  }
  if (request.source.kind === 'hub') throw new NotAvailableError('Loading datasets from the Hugging Face hub');
  const file = request.source.file;
  if (file.size === 0) throw new Error(`${file.name} is empty.`);
  const rows = await collectRows(readRows(file, file.name));
  if (rows.length === 0) throw new Error(`${file.name} holds no rows.`);
  lastDataset = { file: file.name, rows, columns: columnsOf(rows) };
  return lastDataset;
}

function holdOut(rows: number, fraction: number): number {
  return rows >= 2 ? Math.min(rows - 1, Math.max(1, Math.round(rows * fraction))) : 0;
}

const api: EngineApi = {
  async init(listener) {
    emit = listener;
    emit({ type: 'status', status: 'starting' });
    try {
      gpu = await Gpu.create({
        onLost: (info) => {
          gpu = null;
          emit({ type: 'device-lost', reason: info.reason, message: info.message });
          emit({ type: 'status', status: 'device-lost' });
        },
      });
    } catch (err) {
      const problem = err instanceof WebGpuUnavailableError ? err.message : `Could not start WebGPU: ${(err as Error).message}`;
      emit({ type: 'status', status: 'no-webgpu' });
      return { status: 'no-webgpu', adapter: null, problem } satisfies EngineInit;
    }
    emit({ type: 'status', status: 'ready' });
    return { status: 'ready', adapter: gpu.adapter };
  },

  async memory() {
    return gpu ? gpu.pool.stats() : null;
  },

  async presets() {
    return Object.values(PRESETS).map(presetSummary);
  },

  async plan(_model: ModelSource, _settings: TrainSettings) {
    throw new NotAvailableError('The memory planner');
  },

  async loadModel() {
    throw new NotAvailableError('Loading models');
  },

  async cachedModels() {
    return [];
  },

  async deleteCachedModel() {
    throw new NotAvailableError('The model cache');
  },

  async storage() {
    const estimate = await navigator.storage.estimate();
    const persisted = (await navigator.storage.persisted?.()) ?? false;
    return { usage: estimate.usage ?? 0, quota: estimate.quota ?? 0, persisted };
  },

  async loadDataset(request): Promise<DatasetResult> {
    const name = request.source?.kind === 'file' ? request.source.file.name : request.source?.kind === 'hub' ? request.source.id : (lastDataset?.file ?? 'dataset');
    try {
      const { file, rows, columns } = await readDataset(request);
      const mapping = request.mapping ?? guessMapping(columns);
      const validation = holdOut(rows.length, request.validationFraction);
      const summary: DatasetSummary = {
        file,
        rows: rows.length,
        columns,
        mapping,
        template: request.mapping ? null : (request.template ?? null),
        train: rows.length - validation,
        validation,
        tokens: null,
        preview: null,
        warnings: ['Tokenization and the loss-masked preview arrive with the data pipeline.'],
      };
      return { ok: true, summary };
    } catch (err) {
      return { ok: false, error: toErrorInfo(name, err) };
    }
  },

  async train() {
    throw new NotAvailableError('Training');
  },
  async pause() {
    throw new NotAvailableError('Training');
  },
  async resume() {
    throw new NotAvailableError('Training');
  },
  async stop() {
    throw new NotAvailableError('Training');
  },
  async resumable() {
    return null;
  },
  async resumeRun() {
    throw new NotAvailableError('Resuming a run');
  },
  async discardRun() {
    throw new NotAvailableError('Resuming a run');
  },
  async generate() {
    throw new NotAvailableError('Generation');
  },
  async exportAdapter() {
    throw new NotAvailableError('Adapter export');
  },
  async importAdapter() {
    throw new NotAvailableError('Adapter import');
  },
};

Comlink.expose(api);
self.postMessage(ENGINE_READY);
