/**
 * The engine worker: owns the GPU device and runs everything that touches it. DOM-free.
 * It turns the page's requests (workers/protocol.ts) into calls on the engine modules
 * (load, data, model, train) and reports back through events.
 */
import * as Comlink from 'comlink';
import { Gpu } from './gpu/runtime';
import { WebGpuUnavailableError, isEmulated } from './gpu/device';
import { PRESETS, type Preset } from './load/presets';
import { archFromConfig } from './load/arch';
import { planMemory } from './load/planner';
import { ModelCache } from './load/cache';
import { collectRows, readRows } from './data/source';
import { toErrorInfo } from './data/errors';
import { detectColumns } from './data/columns';
import { prepareDataset } from './data/prepare';
import { PRESETS as DATA_TEMPLATES } from './data/templates';
import { hubRows } from './data/hub';
import { makeBatch } from './data/batch';
import type { Example, PreparedDataset, PresetName, Row } from './data/types';
import { Trainer, type TrainEvent, type TrainSettings as TrainerSettings } from './train/trainer';
import { ShuffledExamples } from './train/batches';
import { CheckpointStore } from './train/checkpoint-store';
import { SHADERS as OPTIMIZER_SHADERS } from './kernels/shader-sources';
import { CausalLM } from './model/causal-lm';
import { parseModelConfig } from './model/config';
import { parsePeftConfig } from './model/lora-adapter';
import { SHADERS as MODEL_SHADERS } from './kernels/shader-sources';
import { HubClient } from './load/hub';
import { filesFor, pinnedSource } from './load/model-source';
import { openLoad } from './load/load-model';
import { DEFAULT_CHUNK_BYTES } from './load/quantize-on-load';
import type { Quantizer } from './load/stream-source';
import { TextStream } from './tokenizer/text-stream';
import { ProgressTracker } from './load/progress';
import { browserStorage } from './load/storage';
import { DEFAULT_QUANT } from './load/presets';
import { SafetensorsFile } from './formats/safetensors';
import { strToU8, zipSync } from 'fflate';
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { tokenizerFromFiles, tokenizerFromHub, tokenizerFromUrl, type TextTokenizer } from './tokenizer';
import { ENGINE_READY } from './protocol';
import type {
  ColumnMapping, DatasetRequest, DatasetResult, DatasetSummary, EngineApi, EngineEvent, EngineInit, ModelCardFacts, ModelSource,
  PresetSummary, TrainSettings, TrainState,
} from './protocol';

let gpu: Gpu | null = null;
let emit: (event: EngineEvent) => void = () => {};

/** The rows of the dataset loaded last, kept so a new mapping or split needs no re-read. */
let lastDataset: { file: string; rows: Row[]; columns: string[] } | null = null;

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

/**
 * The data template for these columns: the preset's own when the file has its columns,
 * otherwise any template whose columns are all present (a counseling CSV under the demo preset).
 */
function chooseTemplate(columns: string[], preferred: string | null): PresetName | null {
  const names = Object.keys(DATA_TEMPLATES) as PresetName[];
  const ordered = preferred && names.includes(preferred as PresetName) ? [preferred as PresetName, ...names.filter((n) => n !== preferred)] : names;
  return ordered.find((name) => Object.values(DATA_TEMPLATES[name].columns).every((c) => columns.includes(c))) ?? null;
}

function templateMapping(template: PresetName | null): ColumnMapping | null {
  if (!template) return null;
  const { prompt, response } = DATA_TEMPLATES[template].columns;
  return { kind: 'prompt-response', prompt, response };
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
  let file: string;
  let rows: Row[];
  if (request.source.kind === 'hub') {
    file = request.source.id;
    rows = await collectRows(hubRows(file));
  } else {
    const blob = request.source.file;
    file = blob.name;
    if (blob.size === 0) throw new Error(`${file} is empty: it holds no rows.`);
    rows = await collectRows(readRows(blob, file));
  }
  if (rows.length === 0) throw new Error(`${file} holds no rows.`);
  lastDataset = { file, rows, columns: detectColumns(rows) };
  return lastDataset;
}

/** Tokenizers by model, loaded once: the demo's is served by the studio itself. */
const tokenizers = new Map<string, Promise<TextTokenizer>>();

function tokenizerFor(model: ModelSource): Promise<TextTokenizer> {
  const key = model.kind === 'preset' ? `preset:${model.name}` : model.kind === 'hub' ? `hub:${model.id}` : `local:${model.files.map((f) => f.name).join(',')}`;
  let loading = tokenizers.get(key);
  if (!loading) {
    loading = loadTokenizer(model);
    tokenizers.set(key, loading);
    loading.catch(() => tokenizers.delete(key));
  }
  return loading;
}

async function loadTokenizer(model: ModelSource): Promise<TextTokenizer> {
  if (model.kind === 'preset') {
    const location = PRESETS[model.name]?.tokenizer;
    if (!location) throw new Error(`unknown preset "${model.name}"`);
    return location.kind === 'url' ? tokenizerFromUrl(new URL(location.baseUrl, self.location.origin).href) : tokenizerFromHub(location.repo, { revision: location.revision });
  }
  if (model.kind === 'hub') return tokenizerFromHub(model.id, { revision: model.revision });
  const byName = (name: string) => model.files.find((f) => f.name === name || f.webkitRelativePath.endsWith(`/${name}`));
  const json = byName('tokenizer.json');
  if (!json) throw new Error('The model folder has no tokenizer.json: add it to the folder and choose the folder again.');
  const config = byName('tokenizer_config.json');
  return tokenizerFromFiles(await json.text(), config ? await config.text() : null);
}

/** The dataset the next run trains on, as prepared for the page's last request. */
interface Prepared {
  data: PreparedDataset;
  file: string;
  tokenizer: TextTokenizer;
  request: DatasetRequest;
  template: PresetName | null;
  mapping: ColumnMapping | null;
}
let prepared: Prepared | null = null;


// ---------------------------------------------------------------------------------------
// Runs: the model being trained, its trainer, and what a reload needs to continue it.

/** What a run needs besides its checkpoint: kept in IndexedDB so a reload can resume it. */
interface RunRecord {
  runId: string;
  /** Preset or hub model (dropped files cannot be re-read after a reload). */
  model: Extract<ModelSource, { kind: 'preset' | 'hub' }>;
  modelLabel: string;
  dataset: string;
  settings: TrainSettings;
  totalSteps: number;
  train: Example[];
  validation: Example[];
  samplePrompts: number[][];
  state: 'active' | 'finished';
  step: number;
  savedAt: number;
}

interface RunsDb extends DBSchema {
  runs: { key: string; value: RunRecord };
}

let runsDb: Promise<IDBPDatabase<RunsDb>> | null = null;
function runs(): Promise<IDBPDatabase<RunsDb>> {
  runsDb ??= openDB<RunsDb>('qlora-studio-runs', 1, { upgrade: (db) => void db.createObjectStore('runs', { keyPath: 'runId' }) });
  return runsDb;
}

let checkpointStore: Promise<CheckpointStore> | null = null;
function checkpoints(): Promise<CheckpointStore> {
  checkpointStore ??= CheckpointStore.open();
  return checkpointStore;
}

/** A model ready to train: the causal LM with its LoRA tensors, and how to export them. */
interface LoadedLm {
  /** The model keys it answers: as asked for, and pinned to the commit it was loaded at (how a run resumes). */
  keys: string[];
  model: CausalLM;
  /** What the PEFT config names as the base model. */
  baseModel: string;
  /** The hub commit the base model was loaded at (null for the demo and dropped files). */
  commit: string | null;
  tokenizer: TextTokenizer;
  settings: TrainSettings;
  parameters: number;
  fromCache: boolean;
}

/** The run's state as the trainer last reported it. */
let trainerState: TrainState = 'idle';

let current: { lm: LoadedLm; trainer: Trainer | null; run: RunRecord | null; running: Promise<void> | null } | null = null;

/** A PEFT adapter the person imported: the next model load starts from it instead of fresh weights. */
let importedAdapter: { file: SafetensorsFile; settings: ReturnType<typeof parsePeftConfig> } | null = null;

function modelKey(source: ModelSource, s: TrainSettings): string {
  const id = source.kind === 'preset' ? `preset:${source.name}@${source.revision ?? ''}` : source.kind === 'hub' ? `hub:${source.id}@${source.revision ?? ''}` : `local:${source.files.map((f) => f.name).join(',')}`;
  return `${id}|r${s.rank}|a${s.alpha}|d${s.dropout}|${[...s.targetModules].sort().join(',')}|seed${s.seed}`;
}

/** Who quantizes a download: the GPU, except an emulated one, where the CPU reference is faster. */
function quantizerFor(g: Gpu): Quantizer {
  return isEmulated(g.adapter) ? 'cpu' : 'gpu';
}

/**
 * Loads (or reuses) the base model with LoRA adapters for these settings. Tensors come one at a
 * time in the order the files (or the cache) store them and go straight to the GPU: a download
 * is quantized to NF4 as it streams (on the GPU, or on the CPU where the GPU is emulated and
 * slower) and cached on its way; a cached copy is uploaded as stored. The worker holds about one
 * tensor of model data at a time.
 */
async function causalLm(source: ModelSource, s: TrainSettings): Promise<LoadedLm> {
  const imported = importedAdapter ? `|import:${importedAdapter.file.file}` : '';
  const key = modelKey(source, s) + imported;
  if (current && current.lm.keys.includes(key)) return current.lm;
  const g = requireGpu();
  if (current) {
    current.trainer?.dispose();
    current.lm.model.dispose();
    current = null;
  }
  const tracker = new ProgressTracker((p) => emit({ type: 'progress', task: 'download', done: p.done, total: p.total, unit: 'bytes', detail: p.file }));
  const client = new HubClient({ onBytes: (file, bytes) => tracker.add(file, bytes) });
  const { files, baseModel, cacheId } = filesFor(source, client, self.location.origin);
  const quant = source.kind === 'preset' ? (PRESETS[source.name]?.quant ?? DEFAULT_QUANT) : DEFAULT_QUANT;
  // The hub says which commit the revision is at; that commit's cached copy needs no download.
  const load = await openLoad({
    files,
    quant,
    cacheId,
    cache: cacheId ? await modelCache() : null,
    storage: browserStorage(),
    progress: tracker,
    quantizer: quantizerFor(g),
    onRead: (name, done, total) => emit({ type: 'progress', task: 'quantize', done, total, unit: 'tensors', detail: name }),
  });
  if (load.fromCache) emit({ type: 'log', level: 'info', message: `${files.label}: loaded from this browser's cache` });
  const config = parseModelConfig(JSON.stringify(load.config), `${files.label} config.json`);
  const lora = importedAdapter
    ? { settings: importedAdapter.settings, init: { adapter: importedAdapter.file } }
    : { settings: { r: s.rank, alpha: s.alpha, dropout: s.dropout, targetModules: s.targetModules }, init: { seed: s.seed } };
  let model: CausalLM | null = null;
  try {
    model = await CausalLM.load(g, MODEL_SHADERS, config, load.weights, { mode: 'nf4', lora, checkpointing: true });
    await load.finish();
  } catch (err) {
    model?.dispose();
    await load.abort();
    throw err;
  }
  emit({ type: 'memory', stats: g.pool.stats() });
  const tokenizer = await tokenizerFor(source);
  const commit = load.identity?.commit ?? null;
  const keys = [key, modelKey(pinnedSource(source, baseModel, commit), s) + imported];
  const lm: LoadedLm = { keys, model, baseModel, commit, tokenizer, settings: s, parameters: load.arch.parameters, fromCache: load.fromCache };
  current = { lm, trainer: null, run: null, running: null };
  return lm;
}

/** The README of an exported adapter: what it was trained from and how. */
function modelCard(baseModel: string, s: TrainSettings, card: ModelCardFacts): string {
  const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(4));
  return `---
library_name: peft
base_model: ${baseModel}
tags: [lora, qlora]
---

# LoRA adapter for ${baseModel}

Trained with QLoRA Studio in the browser (WebGPU): NF4 base weights (blocksize 64, double quantization), LoRA in f32.

Load it with PEFT:

\`\`\`python
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "path/to/this/folder")
\`\`\`

## Training

| setting | value |
| --- | --- |
| dataset | ${card.dataset} |
| optimizer steps | ${card.steps} |
| LoRA rank / alpha / dropout | ${s.rank} / ${s.alpha} / ${s.dropout} |
| target modules | ${s.targetModules.join(', ')} |
| learning rate, schedule | ${s.learningRate}, ${s.schedule} (warmup ${s.warmupSteps > 0 ? `${s.warmupSteps} steps` : `ratio ${s.warmupRatio}`}) |
| epochs / max steps | ${s.epochs} / ${s.maxSteps || 'none'} |
| batch × accumulation | ${s.batchSize} × ${s.gradAccum} (token-weighted loss over the accumulated micro-batches) |
| sequence length | ${s.seqLength} |
| seed | ${s.seed} |

## Results

- final training loss: ${fmt(card.finalTrainLoss)}
- final validation loss: ${fmt(card.finalValidationLoss)}
`;
}

/** config.json of a model, before any weights are read (a preset carries its own). */
async function configOf(source: ModelSource): Promise<Record<string, unknown>> {
  if (source.kind === 'preset') {
    const preset = PRESETS[source.name];
    if (!preset) throw new Error(`unknown preset "${source.name}"`);
    return preset.config;
  }
  if (source.kind === 'hub') {
    const text = await new HubClient().text(source.id, source.revision ?? 'main', 'config.json');
    if (text === null) throw new Error(`${source.id} has no config.json on the hub: is the id right?`);
    return JSON.parse(text) as Record<string, unknown>;
  }
  const file = source.files.find((f) => f.name === 'config.json');
  if (!file) throw new Error('The model folder has no config.json: choose the folder that holds config.json and the .safetensors files.');
  return JSON.parse(await file.text()) as Record<string, unknown>;
}

let cacheDb: Promise<ModelCache> | null = null;
function modelCache(): Promise<ModelCache> {
  cacheDb ??= ModelCache.open();
  return cacheDb;
}

function requireGpu(): Gpu {
  if (!gpu) throw new Error('The GPU is not available: reload the page (a lost device comes back after a reload).');
  return gpu;
}

/** The prompt part (labels -100) of up to two validation examples: what samples continue. */
function samplePromptsOf(examples: Example[]): number[][] {
  const prompts: number[][] = [];
  for (const e of examples) {
    const firstLearned = e.labels.findIndex((l) => l !== -100);
    if (firstLearned > 0) prompts.push(Array.from(e.inputIds.subarray(0, firstLearned)));
    if (prompts.length === 2) break;
  }
  return prompts;
}

function trainerSettings(s: TrainSettings): Partial<TrainerSettings> {
  return {
    lr: s.learningRate,
    schedule: { name: s.schedule, warmupRatio: s.warmupRatio, warmupSteps: s.warmupSteps > 0 ? s.warmupSteps : undefined },
    gradAccum: s.gradAccum,
    epochs: s.epochs,
    maxSteps: s.maxSteps > 0 ? s.maxSteps : undefined,
    seed: s.seed,
    evalEvery: s.evalEvery,
    sampleEvery: s.sampleEvery,
    checkpointEvery: s.checkpointEvery,
  };
}

/** Trainer events → page events (steps count from 1: "steps done"). */
function relay(run: RunRecord, tokenizer: TextTokenizer, g: Gpu, stepsPerEpoch: () => number): (e: TrainEvent) => void {
  return (e) => {
    switch (e.type) {
      case 'step':
        // Epochs as Hugging Face reports them: fractional, steps done over steps per epoch.
        emit({ type: 'metrics', step: e.step + 1, values: { loss: e.loss, lr: e.lr, grad_norm: e.gradNorm, tokens_per_s: e.tokensPerS, epoch: (e.step + 1) / stepsPerEpoch() } });
        emit({ type: 'train-state', state: 'running', step: e.step + 1, totalSteps: e.totalSteps });
        emit({ type: 'memory', stats: g.pool.stats() });
        break;
      case 'eval':
        emit({ type: 'metrics', step: e.step, values: { val_loss: e.loss } });
        break;
      case 'sample':
        emit({ type: 'sample', step: e.step, prompt: tokenizer.decode(e.prompt), text: e.text ?? tokenizer.decode(e.tokens) });
        break;
      case 'checkpoint':
        void runs().then((db) => db.put('runs', { ...run, step: e.step, savedAt: Date.now() }));
        emit({ type: 'log', level: 'info', message: `checkpoint saved at step ${e.step} (${e.reason})` });
        break;
      case 'status': {
        const state = e.status === 'error' || e.status === 'device-lost' ? 'failed' : e.status;
        trainerState = state;
        emit({ type: 'train-state', state, step: e.step, totalSteps: run.totalSteps, message: e.message });
        if (e.status === 'error') emit({ type: 'error', where: 'train', message: e.message ?? 'training failed', hint: 'Lower the learning rate or the sequence length and train again.' });
        if (e.status === 'device-lost') emit({ type: 'error', where: 'train', message: e.message ?? 'the GPU was lost', hint: 'Reload the page and resume from the last checkpoint.' });
        break;
      }
    }
  };
}

/** Builds the trainer for a run on the loaded model, restores its checkpoint if any, and runs it in the background. */
async function startRun(run: RunRecord, lm: LoadedLm, resume: boolean): Promise<void> {
  const g = requireGpu();
  const store = await checkpoints();
  const padId = lm.tokenizer.padTokenId;
  const trainer: Trainer = new Trainer(
    {
      gpu: g,
      model: lm.model,
      shaders: OPTIMIZER_SHADERS,
      train: new ShuffledExamples({ examples: run.train, microBatchSize: run.settings.batchSize, seed: run.settings.seed, shuffle: true, collate: (ex) => makeBatch(ex, padId) }),
      validation: chunk(run.validation, run.settings.batchSize).map((ex) => makeBatch(ex, padId)),
      samplePrompts: run.samplePrompts,
      eosTokenIds: [lm.tokenizer.eosTokenId],
      decode: (ids) => lm.tokenizer.decode(ids),
      checkpoints: store.sink(run.runId),
      onEvent: relay(run, lm.tokenizer, g, (): number => trainer.windowsPerEpoch),
    },
    trainerSettings(run.settings),
  );
  run.totalSteps = trainer.totalSteps;
  if (resume) {
    const loaded = await store.loadLatest(run.runId);
    if (!loaded) throw new Error('This run has no checkpoint left to resume from; start a new run.');
    for (const w of loaded.warnings) emit({ type: 'log', level: 'warn', message: w });
    trainer.restore(loaded.snapshot);
    // Redraw the curve up to the checkpoint.
    const byStep = new Map<number, Record<string, number>>();
    for (const h of loaded.snapshot.history) byStep.set(h.step + 1, { loss: h.loss, lr: h.lr, grad_norm: h.gradNorm, epoch: (h.step + 1) / trainer.windowsPerEpoch });
    for (const ev of loaded.snapshot.evals) byStep.set(ev.step, { ...byStep.get(ev.step), val_loss: ev.loss });
    for (const [step, values] of [...byStep].sort((a, b) => a[0] - b[0])) emit({ type: 'metrics', step, values });
  }
  await (await runs()).put('runs', run);
  if (current) current.trainer?.dispose();
  current = { lm, trainer, run, running: null };
  emit({ type: 'train-state', state: 'running', step: trainer.step, totalSteps: trainer.totalSteps });
  const running = trainer.run().then(async (result) => {
    if (result.status === 'done') await (await runs()).put('runs', { ...run, state: 'finished', step: result.step, savedAt: Date.now() });
  });
  current.running = running.catch((err) => {
    emit({ type: 'error', where: 'train', message: (err as Error).message });
  });
}

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Re-tokenizes the loaded dataset when the run's length, split or seed differ from the preview's. */
async function preparedFor(s: TrainSettings, source: ModelSource): Promise<Prepared> {
  if (!prepared) throw new Error('Load a dataset first (step 2).');
  const r = prepared.request;
  if (r.seqLength === s.seqLength && r.validationFraction === s.validationFraction && r.seed === s.seed) return prepared;
  const result = await api.loadDataset({ ...r, mapping: prepared.mapping, template: prepared.template, seqLength: s.seqLength, validationFraction: s.validationFraction, seed: s.seed, model: source });
  if (!result.ok) throw new Error(`${result.error.file}: ${result.error.message}`);
  return prepared;
}

function isActive(): boolean {
  return !!current?.trainer && !!current.running && !current.trainer.done && current.run?.state === 'active';
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

  async plan(source, settings) {
    const g = requireGpu();
    const config = await configOf(source);
    const plan = await planMemory({
      config,
      seq: settings.seqLength,
      batch: settings.batchSize,
      rank: settings.rank,
      targets: settings.targetModules,
      checkpointing: true,
      dropout: settings.dropout > 0,
      limits: { maxBufferSize: g.limits.maxBufferSize, maxStorageBufferBindingSize: g.limits.maxStorageBufferBindingSize },
      // A first visit's load as causalLm() runs it: streamed into the GPU quantizer and read back for
      // the cache, or quantized on the CPU and uploaded as stored states.
      load: quantizerFor(g) === 'gpu' ? { kind: 'stream', chunkBytes: DEFAULT_CHUNK_BYTES, readbackBytes: DEFAULT_CHUNK_BYTES } : { kind: 'stored' },
    });
    return {
      peakBytes: plan.peakBytes,
      byCategory: plan.byCategory,
      largestBuffer: plan.largestBuffer.bytes,
      storageBytes: plan.storageBytes,
      maxBufferSize: plan.limits.maxBufferSize,
      maxBindingSize: plan.limits.maxStorageBufferBindingSize,
      verdict: plan.verdict,
      reason: plan.reason,
      gpuMemoryBytes: plan.gpuMemoryBytes,
      suggestion: plan.suggestion,
      downloadBytes: plan.downloadBytes,
    };
  },

  async loadModel(source, settings) {
    if (isActive()) throw new Error('A run is in progress: the model in use cannot change now.');
    const lm = await causalLm(source, settings);
    const c = lm.model.config;
    const perBlock = lm.model.names.layers[0]?.linears ?? [];
    return {
      id: lm.baseModel,
      architecture: c.arch,
      parameters: lm.parameters,
      layers: c.layers,
      targetModules: [...new Set(perBlock.map((l) => l.name))],
      fromCache: lm.fromCache,
    };
  },

  async cachedModels() {
    const cache = await modelCache();
    // A copy names the commit it was made from: after an update of the repo the old one stays listed until deleted.
    return (await cache.list()).map((m) => ({ key: m.key, id: `${m.repo}@${m.revision}${m.commit && m.commit !== m.revision ? ` (commit ${m.commit.slice(0, 7)})` : ''}`, bytes: m.bytes, savedAt: m.savedAt }));
  },

  async deleteCachedModel(key) {
    await (await modelCache()).delete(key);
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
      const template = request.mapping ? null : chooseTemplate(columns, request.template ?? null);
      const mapping = request.mapping ?? (template ? null : guessMapping(columns));
      if (!template && !mapping) {
        return { ok: false, error: { file, line: null, column: null, message: `choose which columns to learn from; the columns are: ${columns.join(', ')}` } };
      }
      const tokenizer = await tokenizerFor(request.model);
      const data = await prepareDataset(rows, {
        preset: template ?? undefined,
        mapping: mapping ?? undefined,
        tokenizer,
        maxLength: request.seqLength,
        validationFraction: request.validationFraction,
        seed: request.seed,
        file,
      });
      prepared = { data, file, tokenizer, request: { ...request, source: null }, template, mapping };
      const { stats } = data;
      const summary: DatasetSummary = {
        file,
        rows: stats.rows,
        columns,
        mapping: mapping ?? templateMapping(template),
        template,
        train: stats.train,
        validation: stats.validation,
        tokens: stats.tokens,
        preview: stats.preview ? { masked: stats.preview.masked, learned: stats.preview.learned } : null,
        warnings: stats.warnings,
      };
      return { ok: true, summary };
    } catch (err) {
      return { ok: false, error: toErrorInfo(name, err) };
    }
  },

  async train(source, settings) {
    if (isActive()) throw new Error('A run is already in progress: stop it first.');
    if (source.kind === 'local') emit({ type: 'log', level: 'warn', message: 'A run on dropped model files cannot be resumed after a reload.' });
    emit({ type: 'train-state', state: 'loading', step: 0, totalSteps: 0 });
    try {
      const data = await preparedFor(settings, source);
      if (data.data.train.length === 0) throw new Error('The training split is empty: the dataset needs more rows.');
      // A new run starts from fresh adapters (or the imported ones), not from the last run's.
      if (current?.run) {
        current.trainer?.dispose();
        current.lm.model.dispose();
        current = null;
      }
      const lm = await causalLm(source, settings);
      const run: RunRecord = {
        runId: `run-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`,
        model: pinnedSource(source, lm.baseModel, lm.commit),
        modelLabel: lm.baseModel,
        dataset: data.file,
        settings,
        totalSteps: 0,
        train: data.data.train,
        validation: data.data.validation,
        samplePrompts: samplePromptsOf(data.data.validation.length ? data.data.validation : data.data.train),
        state: 'active',
        step: 0,
        savedAt: Date.now(),
      };
      // An earlier unfinished run is replaced by this one.
      const db = await runs();
      for (const old of await db.getAll('runs')) {
        if (old.state === 'active') await db.put('runs', { ...old, state: 'finished' });
      }
      await startRun(run, lm, false);
    } catch (err) {
      emit({ type: 'train-state', state: 'failed', step: 0, totalSteps: 0, message: (err as Error).message });
      throw err;
    }
  },
  async pause() {
    if (!current?.trainer) throw new Error('Nothing is training.');
    emit({ type: 'train-state', state: 'pausing', step: current.trainer.step, totalSteps: current.trainer.totalSteps });
    current.trainer.pause();
  },
  async resume() {
    if (!current?.trainer) throw new Error('Nothing is paused.');
    current.trainer.resume();
  },
  async stop() {
    if (!current?.trainer) throw new Error('Nothing is training.');
    emit({ type: 'train-state', state: 'stopping', step: current.trainer.step, totalSteps: current.trainer.totalSteps });
    current.trainer.stop();
    await current.running;
  },
  async resumable() {
    if (isActive()) return null;
    const db = await runs();
    const active = (await db.getAll('runs')).filter((r) => r.state === 'active').sort((a, b) => b.savedAt - a.savedAt)[0];
    if (!active) return null;
    const saved = await (await checkpoints()).list(active.runId);
    if (!saved.length) return null;
    const latest = saved[0];
    return { runId: active.runId, step: latest.step, totalSteps: active.totalSteps, savedAt: latest.createdAt, model: active.modelLabel, dataset: active.dataset };
  },
  async resumeRun(runId) {
    if (isActive()) throw new Error('A run is already in progress.');
    const run = await (await runs()).get('runs', runId);
    if (!run) throw new Error('That run is no longer stored in this browser.');
    emit({ type: 'train-state', state: 'loading', step: run.step, totalSteps: run.totalSteps });
    try {
      const lm = await causalLm(run.model, run.settings);
      await startRun(run, lm, true);
    } catch (err) {
      emit({ type: 'train-state', state: 'failed', step: run.step, totalSteps: run.totalSteps, message: (err as Error).message });
      throw err;
    }
  },
  async discardRun(runId) {
    const db = await runs();
    const run = await db.get('runs', runId);
    if (run) await db.put('runs', { ...run, state: 'finished' });
    await (await checkpoints()).deleteRun(runId);
  },
  async generate(request) {
    if (isActive() && current?.trainer && !['paused'].includes(trainerState)) throw new Error('The GPU is busy training: pause or stop the run to chat.');
    if (!current) throw new Error('Load a model first (step 1), or train one.');
    const { model, tokenizer } = current.lm;
    const prompt = tokenizer.encode(request.prompt);
    if (prompt.length === 0) throw new Error('Type a prompt first.');
    for (const stream of request.streams) {
      const text = new TextStream(tokenizer);
      let shown = '';
      await model.generate(prompt, {
        maxNewTokens: request.maxTokens,
        temperature: request.temperature,
        topP: request.topP,
        eosTokenIds: [tokenizer.eosTokenId],
        seed: Date.now() >>> 0,
        noLora: stream === 'base',
        onToken: (token) => {
          const reply = text.push(token);
          if (reply !== shown) emit({ type: 'chat-token', stream, reply, done: false });
          shown = reply;
        },
      });
      emit({ type: 'chat-token', stream, reply: text.finish(), done: true });
    }
  },

  async exportAdapter(card) {
    if (!current) throw new Error('There is no adapter yet: train one first.');
    if (isActive() && trainerState === 'running') throw new Error('Pause or stop training before downloading the adapter.');
    const { model, baseModel, settings } = current.lm;
    const peft = await model.exportAdapter(baseModel, current.lm.commit);
    const zip = zipSync({
      'adapter_model.safetensors': peft.adapterModel,
      'adapter_config.json': strToU8(peft.adapterConfig),
      'README.md': strToU8(modelCard(baseModel, settings, card)),
    });
    return Comlink.transfer(zip, [zip.buffer]);
  },

  async importAdapter(files) {
    const config = files.find((f) => f.name === 'adapter_config.json');
    const weights = files.find((f) => f.name.endsWith('.safetensors'));
    if (!config || !weights) throw new Error('Choose both adapter_config.json and adapter_model.safetensors of the PEFT adapter.');
    const settings = parsePeftConfig(await config.text(), config.name);
    const file = new SafetensorsFile(new Uint8Array(await weights.arrayBuffer()), weights.name);
    importedAdapter = { file, settings };
    // The next model load (Train, Chat) starts from these weights.
    if (current && !isActive()) {
      current.trainer?.dispose();
      current.lm.model.dispose();
      current = null;
    }
    return { baseModel: settings.baseModel ?? 'unknown', rank: settings.r, alpha: settings.alpha, targetModules: settings.targetModules, tensors: file.names.length };
  },
};

Comlink.expose(api);
self.postMessage(ENGINE_READY);
