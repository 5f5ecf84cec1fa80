/**
 * The engine's session: the GPU, the model loaded with its adapters, the dataset the next run
 * trains on, the run in progress, and what a reload needs to resume it. Its methods are the
 * engine's API (workers/protocol.ts); the worker exposes them through comlink unchanged, and
 * the CLI's `train` assembles its run from the same parts (models.ts, datasets.ts, runs.ts).
 * Every request is checked here: run settings against workers/run/settings.ts, whoever sent them.
 */
import { Gpu } from '../gpu/runtime';
import { WebGpuUnavailableError } from '../gpu/device';
import { PRESETS, presetNamed, type HfConfig, type Preset, type QuantSettings } from '../load/presets';
import { archFromConfig } from '../load/arch';
import { planMemory } from '../load/planner';
import { ModelCache, cacheKey } from '../load/cache';
import { HF_ENDPOINT, HubClient, type HubOptions } from '../load/hub';
import { fetchWithHubToken } from '../load/hub-auth';
import { filesFor, pinnedSource } from '../load/model-source';
import { DEFAULT_CHUNK_BYTES } from '../load/quantize-on-load';
import { ProgressTracker } from '../load/progress';
import { browserStorage, persistenceNotice } from '../load/storage';
import { readRows } from '../data/source';
import { toErrorInfo } from '../data/errors';
import { detectColumns } from '../data/columns';
import { exampleList } from '../data/example-list';
import { hubRows } from '../data/hub';
import type { Row } from '../data/types';
import { ExampleStore, datasetKey, type StoredDataset } from '../data/example-store';
import { prepareToStore } from '../data/prepare-stream';
import { Sha256 } from '../util/sha256';
import type { Trainer, TrainEvent } from '../train/trainer';
import { CheckpointStore } from '../train/checkpoint-store';
import { parsePeftConfig } from '../model/lora-adapter';
import { chatPromptIds, chatStopTokenIds } from '../tokenizer/chat-turns';
import type { CausalLM } from '../model/causal-lm';
import { TextStream } from '../tokenizer/text-stream';
import type { TextTokenizer } from '../tokenizer';
import { SafetensorsFile } from '../formats/safetensors';
import { checkRunSettings, checkSomeSettings, type RunSettings } from '../run/settings';
import { EngineError, errorInfo } from '../errors';
import type {
  CachedModel, DatasetRequest, DatasetResult, EngineApi, EngineEvent, EngineInit, ExportFormat, ExportPlan, ExportSink, GenerateRequest, ImportedAdapter, MemoryPlan, ModelCardFacts,
  LoadOptions, ModelInfo, ModelSource, PresetSummary, ResumableRun, StorageInfo, TrainState,
} from '../protocol';
import { blobDigest, chooseTemplate, guessMapping, headOf, prepend, storedSummary, tokenizerFingerprint, type RowFormat } from './datasets';
import { loadRunModel, quantizerFor, configOf, quantOf, type ImportedAdapter as LoadedAdapter } from './models';
import { assembleRun, samplePrompts, storedRunExamples, storedSplit, type RunExamples } from './runs';
import { RunStore, type RunRecord } from './run-store';
import { holdRun, openRuns, runsChannel } from './run-lock';
import type { Release } from '../load/locks';
import { adapterGgufRefusals, adapterInput, baseWeightsOf, cachedBaseWeights, cardFacts, exportBase, ggufExport, mergedExport, peftExport, promptOf, zipFiles, type ExportFile } from './export';
import type { ExportInput } from '../export/bundle';
import type { BaseWeights } from '../export/merged';
import type { BaseModelName } from '../export/model-card';
import { crc32 } from '../util/crc32';
import { Tokenizers } from './tokenizers';
import { RunBundleStore } from '../export/run-bundle/run-record';
import { pageRunBundle, pageRunFacts, readPickedBundle, recordOfBundle } from './run-bundle';
import { peftAdapterModel } from '../export/peft';

/** The studio's starting settings for a preset, and what the page shows about it. */
export function presetSummary(p: Preset): PresetSummary {
  const arch = archFromConfig(p.config, `${p.name} config.json`);
  return {
    name: p.name,
    model: p.model.kind === 'hub' ? p.model.repo : p.model.baseUrl,
    architecture: `${arch.family}, ${arch.layers} layers, hidden ${arch.hidden}, ${(arch.parameters / 1e6).toFixed(1)} M parameters`,
    targetModules: [...new Set(arch.linears.map((l) => l.module))],
    template: p.template,
    description: p.description,
    defaults: structuredClone(p.settings),
    samplePrompts: [],
  };
}

/** A model ready to train: the causal LM with its LoRA tensors, and how to export them. */
interface LoadedLm {
  /** The model keys it answers: as asked for, and pinned to the commit it was loaded at (how a run resumes). */
  keys: string[];
  model: CausalLM;
  modules: string[];
  /** The loader's name for the base (a hub id, the demo's path, a folder): run labels and keys. */
  baseModel: string;
  /** What an exported adapter names as its base (workers/export/model-card.ts `baseModelName`). */
  exportBase: BaseModelName;
  commit: string | null;
  /** Where the base came from and its config.json: exports read them again. */
  source: ModelSource;
  config: HfConfig;
  tokenizer: TextTokenizer;
  /** Every token that ends generation: the chat template's end of turn, generation_config.json's list, the tokenizer's EOS. */
  stopTokenIds: number[];
  settings: RunSettings;
  parameters: number;
  fromCache: boolean;
  /** How the base is stored: NF4 (QLoRA) or not quantized (plain LoRA, f32 on the GPU). */
  quant: QuantSettings;
}

/** The dataset the next run trains on, as prepared for the page's last request. */
interface Prepared {
  /** Its examples, in the browser's storage under their content key (never all in memory). */
  stored: StoredDataset;
  file: string;
  /** crc32 of the dataset's bytes (a file) or of its rows (a hub dataset), for the model card. */
  fingerprint: string;
  format: RowFormat;
  request: DatasetRequest;
}

/** What a model with these adapters and this base storage is keyed by: a different key loads it again. */
function modelKey(source: ModelSource, s: RunSettings, quant: QuantSettings): string {
  const id = source.kind === 'preset' ? `preset:${source.name}@${source.revision ?? ''}` : source.kind === 'hub' ? `hub:${source.id}@${source.revision ?? ''}` : `local:${source.files.map((f) => f.name).join(',')}`;
  return `${id}|${quant.type}|r${s.rank}|a${s.alpha}|d${s.dropout}|${[...s.targetModules].sort().join(',')}|seed${s.seed}|len${s.seqLength + s.sampleTokens}`;
}

export interface SessionOptions {
  /** Where the studio is served: the demo model and tokenizer live under it. */
  origin: string;
  /** IndexedDB names, so tests can keep their own. */
  runsDb?: string;
  checkpointsDb?: string;
  bundlesDb?: string;
  datasetsDb?: string;
  /** GPU memory the planner plans against (bytes); the planner's default (8 GiB) when absent. */
  gpuMemoryBytes?: number;
}

/** Refuses load options the engine does not understand; what a load is asked for: whether to load anyway, and the base's storage. */
function checkLoadOptions(options: LoadOptions | undefined, source: ModelSource): { anyway: boolean; quant: QuantSettings } {
  if (options === undefined) return { anyway: false, quant: quantOf(source) };
  const bad = (why: string, field: string) => new EngineError('invalid-setting', `Load options: ${why}.`, { section: 'model', field });
  if (!options || typeof options !== 'object') throw bad('expected an object', 'anyway');
  const unknown = Object.keys(options).filter((k) => k !== 'anyway' && k !== 'quantize');
  if (unknown.length) throw bad(`unknown field ${unknown.join(', ')}`, unknown[0]);
  for (const field of ['anyway', 'quantize'] as const) {
    if (options[field] !== undefined && typeof options[field] !== 'boolean') throw bad(`"${field}" must be true or false`, field);
  }
  return { anyway: options.anyway === true, quant: quantOf(source, options.quantize !== false) };
}

export class Session implements EngineApi {
  private gpu: Gpu | null = null;
  private emit: (event: EngineEvent) => void = () => {};
  private readonly tokenizers: Tokenizers;
  private readonly runs: RunStore;
  private readonly bundles: RunBundleStore;
  private checkpointStore: Promise<CheckpointStore> | null = null;
  private cacheDb: Promise<ModelCache> | null = null;
  /** The dataset loaded last: how to read its rows again (a new mapping or length), its columns and hashes. */
  private lastDataset: DatasetSource | null = null;
  private exampleStore: Promise<ExampleStore> | null = null;
  private prepared: Prepared | null = null;
  /** The run's state as the trainer last reported it. */
  private trainerState: TrainState = 'idle';
  private current: { lm: LoadedLm; trainer: Trainer | null; run: RunRecord | null; running: Promise<void> | null } | null = null;
  /** A PEFT adapter the person imported: the next model load starts from it instead of fresh weights. */
  private importedAdapter: LoadedAdapter | null = null;
  private importedName: string | null = null;
  /** The hub access token (memory only: never logged, never in an event or error). */
  private hubToken: string | undefined;
  /** The run open in this tab, whose lock keeps other tabs from training it too. */
  private runLock: { runId: string; release: Release } | null = null;
  private readonly channel = runsChannel(() => this.emit({ type: 'runs-changed' }));

  constructor(private readonly options: SessionOptions) {
    this.tokenizers = new Tokenizers(options.origin, () => this.hubClient());
    this.runs = new RunStore(options.runsDb);
    this.bundles = new RunBundleStore(options.bundlesDb);
  }

  async init(listener: (event: EngineEvent) => void): Promise<EngineInit> {
    this.emit = listener;
    this.emit({ type: 'status', status: 'starting' });
    try {
      this.gpu = await Gpu.create({
        onLost: (info) => {
          this.gpu = null;
          this.emit({ type: 'device-lost', reason: info.reason, message: info.message });
          this.emit({ type: 'status', status: 'device-lost' });
        },
      });
    } catch (err) {
      const problem = err instanceof WebGpuUnavailableError ? err.message : `Could not start WebGPU: ${(err as Error).message}`;
      this.emit({ type: 'status', status: 'no-webgpu' });
      return { status: 'no-webgpu', adapter: null, problem };
    }
    this.emit({ type: 'status', status: 'ready' });
    return { status: 'ready', adapter: this.gpu.adapter };
  }

  async memory() {
    return this.gpu ? this.gpu.pool.stats() : null;
  }

  async presets(): Promise<PresetSummary[]> {
    return Object.values(PRESETS).map(presetSummary);
  }

  async setHubToken(token: string | null): Promise<void> {
    if (token !== null && typeof token !== 'string') throw new EngineError('invalid-model', 'The access token must be text.', { section: 'model' });
    const trimmed = token?.trim() ?? '';
    // Refused without echoing it: a token is one line of printable ASCII (hf_…).
    if (trimmed && !/^[\x21-\x7e]+$/.test(trimmed)) throw new EngineError('invalid-model', 'The access token holds spaces or characters a token never has: paste it again from huggingface.co/settings/tokens.', { section: 'model', hint: 'Paste the token again into the Access token field of the Model section.' });
    this.hubToken = trimmed || undefined;
  }

  /** A hub client that sends the access token, if one is set, to the hub's own hosts only. */
  private hubClient(options: Omit<HubOptions, 'token'> = {}): HubClient {
    return new HubClient({ ...options, token: this.hubToken });
  }

  async plan(source: ModelSource, settings: RunSettings, options?: LoadOptions): Promise<MemoryPlan> {
    checkRunSettings(settings);
    return this.planFor(source, settings, checkLoadOptions(options, source).quant);
  }

  private async planFor(source: ModelSource, settings: RunSettings, quant: QuantSettings): Promise<MemoryPlan> {
    const g = this.requireGpu();
    const config = await configOf(source, this.hubClient());
    const plan = await planMemory({
      config,
      seq: settings.seqLength,
      batch: settings.batchSize,
      rank: settings.rank,
      targets: settings.targetModules,
      quant,
      dropout: settings.dropout > 0,
      limits: { maxBufferSize: g.limits.maxBufferSize, maxStorageBufferBindingSize: g.limits.maxStorageBufferBindingSize },
      // A first visit's load as loadRunModel runs it: streamed into the GPU quantizer and read back
      // for the cache, or quantized on the CPU and uploaded as stored states.
      ...(this.options.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: this.options.gpuMemoryBytes } : {}),
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
      checkpointing: plan.checkpointing,
    };
  }

  async loadModel(source: ModelSource, settings: RunSettings, options?: LoadOptions): Promise<ModelInfo> {
    checkRunSettings(settings);
    const { anyway, quant } = checkLoadOptions(options, source);
    if (this.isActive()) throw new EngineError('not-ready', 'A run is in progress: the model in use cannot change now.', { section: 'model' });
    const lm = await this.causalLm(source, settings, anyway, quant);
    const c = lm.model.config;
    const perBlock = lm.model.names.layers[0]?.linears ?? [];
    return {
      id: lm.baseModel,
      architecture: c.arch,
      parameters: lm.parameters,
      layers: c.layers,
      targetModules: [...new Set(perBlock.map((l) => l.name))],
      fromCache: lm.fromCache,
      quantization: lm.quant.type,
    };
  }

  async cachedModels(): Promise<CachedModel[]> {
    const cache = await this.modelCache();
    // A copy names the commit it was made from: after an update of the repo the old one stays listed until deleted.
    // An unquantized copy (plain LoRA) is listed as such beside the NF4 one of the same commit.
    return (await cache.list()).map((m) => ({
      key: m.key,
      id: `${m.repo}@${m.revision}${m.commit && m.commit !== m.revision ? ` (commit ${m.commit.slice(0, 7)})` : ''}${m.quant.type === 'none' ? ', unquantized' : ''}`,
      bytes: m.bytes,
      savedAt: m.savedAt,
    }));
  }

  async deleteCachedModel(key: string): Promise<void> {
    await (await this.modelCache()).delete(key);
  }

  async storage(): Promise<StorageInfo> {
    const estimate = await navigator.storage.estimate();
    const persisted = (await navigator.storage.persisted?.()) ?? false;
    return { usage: estimate.usage ?? 0, quota: estimate.quota ?? 0, persisted };
  }

  async loadDataset(request: DatasetRequest): Promise<DatasetResult> {
    const name = request.source?.kind === 'file' ? request.source.file.name : request.source?.kind === 'hub' ? request.source.id : (this.lastDataset?.file ?? 'dataset');
    try {
      checkSomeSettings({ seqLength: request.seqLength, validationFraction: request.validationFraction, seed: request.seed });
      const source = await this.datasetSource(request);
      const rows = source.open()[Symbol.asyncIterator]();
      let stored: StoredDataset;
      let format: RowFormat;
      try {
        // The columns come from the first rows; the rest stream on from where those stopped.
        const { head } = await headOf(rows, COLUMN_ROWS);
        if (head.length === 0) throw new EngineError('invalid-data', `${source.file} holds no rows.`, { file: source.file });
        const columns = detectColumns(head);
        source.columns = columns;
        const template = request.mapping ? null : chooseTemplate(columns, request.template ?? null);
        const mapping = request.mapping ?? (template ? null : guessMapping(columns));
        if (!template && !mapping) {
          await rows.return?.();
          return { ok: false, error: { file: source.file, line: null, column: null, message: `choose which columns to learn from; the columns are: ${columns.join(', ')}` } };
        }
        format = { template, mapping };
        stored = await this.storeDataset(source, format, request, prepend(head, rows));
      } finally {
        await rows.return?.();
      }
      this.prepared = { stored, file: source.file, fingerprint: source.fingerprint!, format, request: { ...request, source: null } };
      return { ok: true, summary: storedSummary(source.file, format, stored, storedSplit(stored, request)) };
    } catch (err) {
      return { ok: false, error: toErrorInfo(name, err) };
    }
  }

  async train(source: ModelSource, settings: RunSettings, options?: LoadOptions): Promise<void> {
    checkRunSettings(settings);
    const { anyway, quant } = checkLoadOptions(options, source);
    if (this.isActive()) throw new EngineError('not-ready', 'A run is already in progress: stop it first.');
    if (source.kind === 'local') this.emit({ type: 'log', level: 'warn', message: 'A run on dropped model files cannot be resumed after a reload.' });
    this.emit({ type: 'train-state', state: 'loading', step: 0, totalSteps: 0 });
    try {
      const data = await this.preparedFor(settings, source);
      const examples = storedRunExamples(await this.datasets(), data.stored, settings);
      if (examples.dropped) this.emit({ type: 'log', level: 'info', message: `${examples.dropped} training examples without learned tokens are left out` });
      // A new run starts from fresh adapters (or the imported ones), not from the last run's.
      if (this.current?.run) this.dropModel();
      const lm = await this.causalLm(source, settings, anyway, quant);
      const run: RunRecord = {
        runId: `run-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`,
        model: pinnedSource(source, lm.baseModel, lm.commit),
        quant: lm.quant,
        modelLabel: lm.baseModel,
        dataset: data.file,
        settings,
        totalSteps: 0,
        examples: { key: data.stored.key, train: examples.train.count, validation: examples.validation.count },
        samplePrompts: await samplePrompts(examples.validation.count ? examples.validation : examples.train),
        state: 'active',
        step: 0,
        savedAt: Date.now(),
      };
      // Runs open in other tabs are theirs to finish.
      await this.runs.finishActive(await openRuns());
      // What the run's bundle (Export: run) says about it besides its checkpoint.
      const facts = pageRunFacts({ baseName: lm.exportBase.name, source: run.model, commit: lm.commit, config: lm.config, quant: lm.quant, settings, format: data.format, tokenizer: lm.tokenizer });
      await this.bundles.put({ runId: run.runId, facts, savedAt: Date.now() });
      await this.startRun(run, lm, false);
    } catch (err) {
      this.emit({ type: 'train-state', state: 'failed', step: 0, totalSteps: 0, message: (err as Error).message });
      throw err;
    }
  }

  async pause(): Promise<void> {
    const trainer = this.requireTrainer('Nothing is training.');
    this.emit({ type: 'train-state', state: 'pausing', step: trainer.step, totalSteps: trainer.totalSteps });
    trainer.pause();
  }

  async resume(): Promise<void> {
    this.requireTrainer('Nothing is paused.').resume();
  }

  async stop(): Promise<void> {
    const trainer = this.requireTrainer('Nothing is training.');
    this.emit({ type: 'train-state', state: 'stopping', step: trainer.step, totalSteps: trainer.totalSteps });
    trainer.stop();
    await this.current?.running;
  }

  /** Resolves when the run in progress has ended (done, stopped or failed). */
  async finished(): Promise<void> {
    await this.current?.running;
  }

  async resumable(): Promise<ResumableRun | null> {
    if (this.isActive()) return null;
    const open = await openRuns();
    const elsewhere = (r: RunRecord) => open.has(r.runId) && this.runLock?.runId !== r.runId;
    // A run this tab can take first; else the one another tab has open, so the page says where it is.
    const runs = await this.runs.active();
    const store = await this.checkpoints();
    for (const active of [...runs.filter((r) => !elsewhere(r)), ...runs.filter(elsewhere)]) {
      const saved = await store.list(active.runId);
      if (!saved.length) continue;
      const latest = saved[0];
      // A run stored before the base could stay unquantized trained on NF4.
      return { runId: active.runId, step: latest.step, totalSteps: active.totalSteps, savedAt: latest.createdAt, model: active.modelLabel, dataset: active.dataset, quantization: active.quant?.type ?? 'nf4', openElsewhere: elsewhere(active) };
    }
    return null;
  }

  async resumeRun(runId: string): Promise<void> {
    if (this.isActive()) throw new EngineError('not-ready', 'A run is already in progress.');
    const run = await this.runs.get(runId);
    if (!run) throw new EngineError('not-ready', 'That run is no longer stored in this browser.');
    checkRunSettings(run.settings);
    await this.openRun(runId);
    this.emit({ type: 'train-state', state: 'loading', step: run.step, totalSteps: run.totalSteps });
    try {
      // The run was started with these settings (or loaded anyway): resuming does not ask again.
      // It continues on the base stored as it trained on (NF4 or unquantized).
      const lm = await this.causalLm(run.model, run.settings, true, run.quant);
      await this.startRun(run, lm, true);
    } catch (err) {
      this.closeRun(runId);
      this.emit({ type: 'train-state', state: 'failed', step: run.step, totalSteps: run.totalSteps, message: (err as Error).message });
      throw err;
    }
  }

  async discardRun(runId: string): Promise<void> {
    if ((await openRuns()).has(runId) && this.runLock?.runId !== runId) throw openElsewhereError();
    const run = await this.runs.get(runId);
    if (run) await this.runs.put({ ...run, state: 'finished' });
    await (await this.checkpoints()).deleteRun(runId);
  }

  /** Takes the run's lock for this tab (refused when another tab has the run open) and tells the other tabs. */
  private async openRun(runId: string): Promise<void> {
    if (this.runLock?.runId === runId) return;
    this.closeRun(this.runLock?.runId ?? null);
    const release = await holdRun(runId);
    if (!release) throw openElsewhereError();
    this.runLock = { runId, release };
    this.channel?.post({ runId, open: true });
  }

  /** Lets the run go: another tab may resume it now. */
  private closeRun(runId: string | null): void {
    if (!this.runLock || this.runLock.runId !== runId) return;
    this.runLock.release();
    this.runLock = null;
    this.channel?.post({ runId, open: false });
  }

  async generate(request: GenerateRequest): Promise<void> {
    if (this.isActive() && this.current?.trainer && this.trainerState !== 'paused') {
      throw new EngineError('not-ready', 'The GPU is busy training: pause or stop the run to chat.', { section: 'chat' });
    }
    if (!this.current) throw new EngineError('not-ready', 'Load a model first (step 1), or train one.', { section: 'chat' });
    const { model, tokenizer, stopTokenIds } = this.current.lm;
    // A chat model is asked the way it was trained to answer: through its chat template.
    const prompt = chatPromptIds(tokenizer, request.prompt);
    if (prompt.length === 0) throw new EngineError('not-ready', 'Type a prompt first.', { section: 'chat', field: 'prompt' });
    for (const stream of request.streams) {
      const text = new TextStream(tokenizer);
      let shown = '';
      await model.generate(prompt, {
        maxNewTokens: request.maxTokens,
        temperature: request.temperature,
        topP: request.topP,
        eosTokenIds: stopTokenIds,
        seed: Date.now() >>> 0,
        noLora: stream === 'base',
        onToken: (token) => {
          const reply = text.push(token);
          if (reply !== shown) this.emit({ type: 'chat-token', stream, reply, done: false });
          shown = reply;
        },
      });
      this.emit({ type: 'chat-token', stream, reply: text.finish(), done: true });
    }
  }

  /** The PEFT folder (adapter, config naming its base and commit, card) as one zip. */
  async exportAdapter(card: ModelCardFacts): Promise<Uint8Array> {
    return zipFiles(await this.exportFiles('peft', card));
  }

  async exportPlan(format: ExportFormat, card: ModelCardFacts): Promise<ExportPlan> {
    const lm = this.exportableLm();
    if (format === 'run') {
      const files = await this.runBundleFiles();
      return { format, files: files.map((f) => ({ name: f.name, bytes: f.bytes })), totalBytes: files.reduce((n, f) => n + f.bytes, 0), refusals: [], baseModel: lm.exportBase.name, revision: lm.commit };
    }
    const input = await this.exportInput(card);
    const refusals = format === 'gguf' ? adapterGgufRefusals(input) : [];
    let into: 'original' | 'dequantized-nf4' | undefined;
    let files: ExportFile[] = [];
    if (format === 'merged') ({ files, into } = await this.mergedFor(lm, input));
    else if (!refusals.length) files = await this.exportFiles(format, card, input);
    return {
      format,
      files: files.map((f) => ({ name: f.name, bytes: f.bytes })),
      totalBytes: files.reduce((n, f) => n + f.bytes, 0),
      refusals,
      baseModel: lm.exportBase.name,
      revision: lm.commit,
      ...(into ? { mergedInto: into } : {}),
    };
  }

  async exportWrite(format: ExportFormat, card: ModelCardFacts, sink: ExportSink): Promise<void> {
    const files = format === 'run' ? await this.runBundleFiles() : await this.exportFiles(format, card);
    const total = files.reduce((n, f) => n + f.bytes, 0);
    let done = 0;
    this.emit({ type: 'progress', task: 'export', done, total, unit: 'bytes', detail: files[0]?.name });
    for (const f of files) {
      await sink({ type: 'file', name: f.name, bytes: f.bytes });
      let written = 0;
      for await (const chunk of f.chunks()) {
        written += chunk.byteLength;
        done += chunk.byteLength;
        // A copy the receiver owns: chunks may be views of buffers the export reuses.
        await sink({ type: 'chunk', data: chunk.slice() });
        this.emit({ type: 'progress', task: 'export', done, total, unit: 'bytes', detail: f.name });
      }
      if (written !== f.bytes) throw new EngineError('internal', `${f.name}: ${written} bytes written, ${f.bytes} announced`, { section: 'export', file: f.name });
    }
  }

  async importAdapter(files: File[]): Promise<ImportedAdapter> {
    const config = files.find((f) => f.name === 'adapter_config.json');
    const weights = files.find((f) => f.name.endsWith('.safetensors'));
    if (!config || !weights) throw new EngineError('invalid-adapter', 'Choose both adapter_config.json and adapter_model.safetensors of the PEFT adapter.');
    const settings = parsePeftConfig(await config.text(), config.name);
    const file = new SafetensorsFile(new Uint8Array(await weights.arrayBuffer()), weights.name);
    this.importedAdapter = { file, settings };
    this.importedName = file.file;
    // The next model load (Train, Chat) starts from these weights.
    if (this.current && !this.isActive()) this.dropModel();
    return { baseModel: settings.baseModel ?? 'unknown', rank: settings.r, alpha: settings.alpha, targetModules: settings.targetModules, tensors: file.names.length };
  }

  /**
   * A run bundle (a folder's files or one zip) becomes this browser's interrupted run: its
   * examples and settings as a run record, its weights, moments and position as a checkpoint.
   * `resumeRun` with the id continues it; its adapter alone imports with `importAdapter`.
   */
  async importRun(files: File[]): Promise<{ run: ResumableRun; adapter: ImportedAdapter }> {
    if (this.isActive()) throw new EngineError('not-ready', 'A run is in progress: stop it before importing another.', { section: 'export' });
    const { bundle, label } = await readPickedBundle(files);
    const runId = `run-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    const run = await recordOfBundle(bundle, label, runId);
    const tokenizer = await this.tokenizers.of(run.model);
    if (tokenizer.padTokenId !== bundle.run.data.pad_token_id) {
      throw new EngineError('invalid-adapter', `${label}/run.json (data.pad_token_id): the run padded with ${bundle.run.data.pad_token_id}, ${bundle.run.base.id}'s tokenizer pads with ${tokenizer.padTokenId}`, { section: 'export', file: `${label}/run.json`, field: 'data.pad_token_id' });
    }
    const store = await this.checkpoints();
    // Runs open in other tabs are theirs to finish.
    await this.runs.finishActive(await openRuns());
    await store.save(runId, bundle.snapshot, 'stop');
    await this.runs.put(run);
    await this.bundles.put({ runId, facts: { studioVersion: bundle.run.studio_version, base: bundle.run.base, quantization: bundle.run.quantization, settings: bundle.run.settings, data: bundle.run.data }, savedAt: Date.now() });
    // Chat (and a new run) start from the bundle's adapter, as from an imported PEFT adapter.
    const settings = parsePeftConfig(bundle.adapterConfig, `${label}/adapter/adapter_config.json`);
    const file = new SafetensorsFile(peftAdapterModel(bundle.snapshot.lora), `${label}/adapter/adapter_model.safetensors`);
    this.importedAdapter = { file, settings };
    this.importedName = file.file;
    if (this.current && !this.isActive()) this.dropModel();
    return {
      run: { runId, step: bundle.run.step, totalSteps: bundle.run.schedule.total_steps, savedAt: run.savedAt, model: run.modelLabel, dataset: run.dataset, quantization: run.quant.type, openElsewhere: false },
      adapter: { baseModel: settings.baseModel ?? bundle.run.base.id, rank: settings.r, alpha: settings.alpha, targetModules: settings.targetModules, tensors: file.names.length },
    };
  }

  // -------------------------------------------------------------------------------------

  /** The bundle of the run this session trained last, at its newest checkpoint. */
  private async runBundleFiles(): Promise<ExportFile[]> {
    const run = this.current?.run;
    if (!run) throw new EngineError('not-ready', 'There is no run to export yet: train one first (or resume one).', { section: 'export' });
    return pageRunBundle(run, await this.runExamplesOf(run), this.bundles, await this.checkpoints());
  }

  private exportableLm(): LoadedLm {
    if (!this.current) throw new EngineError('not-ready', 'There is no adapter yet: train one first.', { section: 'export' });
    if (this.isActive() && this.trainerState === 'running') throw new EngineError('not-ready', 'Pause or stop training before exporting the adapter.', { section: 'export' });
    return this.current.lm;
  }

  /** The adapter as it stands, read back from the GPU, with the base it names and the card's facts. */
  private async exportInput(card: ModelCardFacts) {
    const lm = this.exportableLm();
    const peft = await lm.model.exportAdapter(lm.exportBase.name, lm.commit);
    const run = this.current?.run;
    const prepared = this.prepared && this.prepared.file === card.dataset ? this.prepared : null;
    const data = prepared ? { fingerprint: prepared.fingerprint, template: prepared.format.template ?? (prepared.format.mapping ? `columns: ${JSON.stringify(prepared.format.mapping)}` : undefined), train: run ? runCount(run, 'train') : undefined, validation: run ? runCount(run, 'validation') : undefined } : undefined;
    return adapterInput(peft, lm.config, lm.exportBase, lm.commit, cardFacts(run?.settings ?? lm.settings, card, data, lm.quant.type));
  }

  private async exportFiles(format: ExportFormat, card: ModelCardFacts, given?: Awaited<ReturnType<Session['exportInput']>>): Promise<ExportFile[]> {
    const lm = this.exportableLm();
    const input = given ?? (await this.exportInput(card));
    switch (format) {
      case 'peft':
        return peftExport(input);
      case 'gguf': {
        const refusals = adapterGgufRefusals(input);
        if (refusals.length) throw new EngineError('invalid-adapter', `llama.cpp cannot load this adapter: ${refusals.join('; ')}`, { section: 'export' });
        const run = this.current?.run;
        const prompt = promptOf(lm.tokenizer, this.prepared?.format ?? null, lm.source.kind === 'preset' ? (presetNamed(lm.source.name)?.template ?? null) : null, run?.dataset);
        return ggufExport(input, { prompt });
      }
      case 'merged':
        return (await this.mergedFor(lm, input)).files;
      default:
        throw new EngineError('not-ready', `unknown export format ${JSON.stringify(format)}`, { section: 'export' });
    }
  }

  /**
   * The merged folder: into the base's original weights read again (a hub model pinned to the
   * run's commit, dropped files as they are); when those cannot be read (offline), into the NF4
   * copy this browser cached, dequantized (or the unquantized copy, as it is).
   */
  private async mergedFor(lm: LoadedLm, input: ExportInput): Promise<{ files: ExportFile[]; into: 'original' | 'dequantized-nf4' }> {
    const source = lm.source.kind === 'local' ? lm.source : pinnedSource(lm.source, lm.baseModel, lm.commit);
    const { files, cacheId } = filesFor(source, this.hubClient(), this.options.origin);
    const tokenizerFile = this.tokenizerFileReader(lm.source);
    let original: BaseWeights;
    try {
      original = await baseWeightsOf(files);
    } catch (err) {
      const manifest = cacheId ? await (await this.modelCache()).manifest(cacheKey(cacheId.repo, lm.commit ?? cacheId.revision, lm.quant)) : undefined;
      if (!manifest) throw new EngineError('not-ready', `The base's original weights cannot be read (${(err as Error).message}) and this browser holds no copy of it: merge when online.`, { section: 'export' });
      // An unquantized base's cached copy holds the checkpoint's own tensors: the original weights.
      const into = lm.quant.type === 'none' ? 'original' : 'dequantized-nf4';
      this.emit({ type: 'log', level: 'warn', message: `The original weights cannot be read (${(err as Error).message}): merging into the cached ${into === 'original' ? 'copy of the unquantized base' : 'NF4 base, dequantized'}.` });
      return { files: await mergedExport({ input, weights: cachedBaseWeights(await this.modelCache(), manifest), into, files: null, tokenizerFile }), into };
    }
    return { files: await mergedExport({ input, weights: original, into: 'original', files, tokenizerFile }), into: 'original' };
  }

  /** The demo's tokenizer lives in its own folder beside the model's. */
  private tokenizerFileReader(source: ModelSource): ((name: string) => Promise<Uint8Array | null>) | null {
    const preset = source.kind === 'preset' ? presetNamed(source.name) : undefined;
    if (preset?.tokenizer.kind !== 'url') return null;
    const base = new URL(preset.tokenizer.baseUrl, this.options.origin).href;
    return async (name) => {
      const res = await fetch(base + name);
      return res.ok && !(res.headers.get('content-type') ?? '').includes('text/html') ? new Uint8Array(await res.arrayBuffer()) : null;
    };
  }

  private requireGpu(): Gpu {
    if (!this.gpu) throw new EngineError('device-lost', 'The GPU is not available: reload the page (a lost device comes back after a reload).');
    return this.gpu;
  }

  private requireTrainer(message: string): Trainer {
    if (!this.current?.trainer) throw new EngineError('not-ready', message);
    return this.current.trainer;
  }

  private isActive(): boolean {
    const c = this.current;
    return !!c?.trainer && !!c.running && !c.trainer.done && c.run?.state === 'active';
  }

  private dropModel(): void {
    this.current?.trainer?.dispose();
    this.current?.lm.model.dispose();
    this.current = null;
  }

  private checkpoints(): Promise<CheckpointStore> {
    this.checkpointStore ??= CheckpointStore.open({ ...(this.options.checkpointsDb ? { dbName: this.options.checkpointsDb } : {}), storage: browserStorage() });
    return this.checkpointStore;
  }

  private modelCache(): Promise<ModelCache> {
    this.cacheDb ??= ModelCache.open();
    return this.cacheDb;
  }

  private datasets(): Promise<ExampleStore> {
    this.exampleStore ??= ExampleStore.open(this.options.datasetsDb);
    this.exampleStore.catch(() => (this.exampleStore = null));
    return this.exampleStore;
  }

  /** Where the request's rows come from: a file (hashed first), a hub dataset, or the one loaded last. */
  private async datasetSource(request: DatasetRequest): Promise<DatasetSource> {
    if (request.source === null) {
      if (!this.lastDataset) throw new EngineError('not-ready', 'No dataset is loaded yet: drop a file first.', { section: 'data' });
      return this.lastDataset;
    }
    if (request.source.kind === 'hub') {
      const id = request.source.id;
      const fetcher = fetchWithHubToken((input, init) => fetch(input, init), HF_ENDPOINT, this.hubToken);
      // A hub dataset's hashes are known once its rows have streamed through (`storeDataset`).
      this.lastDataset = { file: id, kind: 'hub', columns: [], content: null, fingerprint: null, open: () => hubRows(id, { fetch: fetcher }) };
      return this.lastDataset;
    }
    const blob = request.source.file;
    const file = blob.name;
    if (blob.size === 0) throw new EngineError('invalid-data', `${file} is empty: it holds no rows.`, { file });
    const digest = await blobDigest(blob);
    this.lastDataset = { file, kind: 'file', columns: [], content: `sha256:${digest.sha256}`, fingerprint: `crc32:${hex32(digest.crc32)}`, open: () => readRows(blob, file) };
    return this.lastDataset;
  }

  /**
   * The dataset's examples in the example store: found under their content key, or tokenized
   * from `rows` as they stream and written a chunk at a time.
   */
  private async storeDataset(source: DatasetSource, format: RowFormat, request: DatasetRequest, rows: AsyncIterable<Row>): Promise<StoredDataset> {
    const tokenizer = await this.tokenizers.of(request.model);
    const keyOf = (content: string) => datasetKey({ content, format, maxLength: request.seqLength, tokenizer: tokenizerFingerprint(request.model, tokenizer) });
    const store = await this.datasets();
    if (source.content) {
      const found = await store.find(keyOf(source.content));
      if (found) return found;
    }
    let streamed: AsyncIterable<Row> = rows;
    if (!source.content) {
      // A hub dataset: hashed as it streams (the crc32 over its rows as one JSON array, as before).
      const sha = new Sha256();
      const encoder = new TextEncoder();
      streamed = (async function* () {
        let crc = crc32(encoder.encode('['));
        let first = true;
        for await (const row of rows) {
          const bytes = encoder.encode((first ? '' : ',') + JSON.stringify(row));
          first = false;
          sha.update(bytes);
          crc = crc32(bytes, crc);
          yield row;
        }
        source.content = `sha256-rows:${sha.hex()}`;
        source.fingerprint = `crc32-rows:${hex32(crc32(encoder.encode(']'), crc))}`;
      })();
    }
    const writer = await store.writer(source.file);
    const stored = await prepareToStore(
      streamed,
      {
        mapping: format.mapping ?? undefined,
        preset: format.mapping ? undefined : (format.template ?? undefined),
        tokenizer,
        maxLength: request.seqLength,
        file: source.file,
        key: () => keyOf(source.content!),
        onRows: (n) => this.emit({ type: 'progress', task: 'tokenize', done: n, total: 0, unit: 'rows', detail: source.file }),
      },
      writer,
    );
    // Old datasets go, except those an unfinished run reads.
    await store.prune(new Set([stored.key, ...(await this.runs.activeDatasetKeys())])).catch(() => {});
    return stored;
  }

  /** Re-prepares the loaded dataset when the run's length differs from the preview's (the split is computed, not stored). */
  private async preparedFor(s: RunSettings, source: ModelSource): Promise<Prepared> {
    if (!this.prepared) throw new EngineError('not-ready', 'Load a dataset first (step 2).', { section: 'data' });
    if (this.prepared.request.seqLength === s.seqLength) return { ...this.prepared, request: { ...this.prepared.request, validationFraction: s.validationFraction, seed: s.seed } };
    const { format, request } = this.prepared;
    const result = await this.loadDataset({ ...request, mapping: format.mapping, template: format.template, seqLength: s.seqLength, validationFraction: s.validationFraction, seed: s.seed, model: source });
    if (!result.ok) throw new EngineError('invalid-data', `${result.error.file}: ${result.error.message}`, { file: result.error.file, line: result.error.line ?? undefined, column: result.error.column ?? undefined });
    return this.prepared;
  }

  /**
   * The examples of the run open in this session (null when none), read from storage by index:
   * what an export of the run's data reads (`count`, `get`, `slice`, async iteration).
   */
  async currentRunExamples(): Promise<RunExamples | null> {
    const run = this.current?.run;
    return run ? this.runExamplesOf(run) : null;
  }

  /** A run's examples: its stored dataset found by key (a record from before datasets were stored keeps them itself). */
  async runExamplesOf(run: RunRecord): Promise<RunExamples> {
    if (!run.examples) {
      if (!run.train || !run.validation) throw new EngineError('not-ready', 'This run record holds no examples; start a new run.', { section: 'train' });
      return { train: exampleList(run.train), validation: exampleList(run.validation), dropped: 0 };
    }
    const stored = await (await this.datasets()).find(run.examples.key);
    if (!stored) {
      throw new EngineError('not-ready', `The dataset of this run (${run.dataset}) is no longer stored in this browser (it was deleted or the browser cleared its storage): choose ${run.dataset} again in the Data section with the same model and sequence length, then resume; or discard the run.`, {
        section: 'train',
        file: run.dataset,
        hint: `Choose ${run.dataset} again in the Data section, then resume the run.`,
      });
    }
    const examples = storedRunExamples(await this.datasets(), stored, run.settings);
    if (examples.train.count !== run.examples.train || examples.validation.count !== run.examples.validation) {
      throw new EngineError('internal', `${run.dataset}: the stored dataset gives ${examples.train.count}/${examples.validation.count} training/validation examples, the run recorded ${run.examples.train}/${run.examples.validation}.`, { section: 'train' });
    }
    return examples;
  }

  /** Loads (or reuses) the base model with LoRA adapters for these settings. */
  private async causalLm(source: ModelSource, s: RunSettings, anyway: boolean, quant: QuantSettings): Promise<LoadedLm> {
    const imported = this.importedName ? `|import:${this.importedName}` : '';
    const key = modelKey(source, s, quant) + imported;
    if (this.current && this.current.lm.keys.includes(key)) return this.current.lm;
    const g = this.requireGpu();
    if (!anyway) await this.refuseUnfit(source, s, quant);
    if (this.current) this.dropModel();
    const tracker = new ProgressTracker((p) => this.emit({ type: 'progress', task: 'download', done: p.done, total: p.total, unit: 'bytes', detail: p.file }));
    const client = this.hubClient({
      onBytes: (file, bytes) => tracker.add(file, bytes),
      onRetry: (file, attempt, reason) => this.emit({ type: 'log', level: 'info', message: `${file}: ${reason}; retry ${attempt}` }),
    });
    const { files, baseModel, cacheId } = filesFor(source, client, this.options.origin);
    const named = exportBase(source, source.kind === 'local' ? await configOf(source) : null, baseModel);
    const cache = cacheId ? await this.modelCache() : null;
    const loaded = await this.interruptible(tracker, () => loadRunModel(g, {
      files,
      quant,
      settings: s,
      quantizer: quantizerFor(g),
      adapter: this.importedAdapter,
      baseModel: named.name,
      cacheId,
      cache,
      storage: browserStorage(),
      progress: tracker,
      onRead: (name, done, total) => this.emit({ type: 'progress', task: 'quantize', done, total, unit: 'tensors', detail: name }),
      onNotice: (message) => this.emit({ type: 'log', level: /refused|removed/.test(message) ? 'warn' : 'info', message }),
      ...(this.options.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: this.options.gpuMemoryBytes } : {}),
    }));
    if (loaded.fromCache) this.emit({ type: 'log', level: 'info', message: `${files.label}: loaded from this browser's cache` });
    for (const message of loaded.warnings) this.emit({ type: 'log', level: 'warn', message });
    this.emit({ type: 'memory', stats: g.pool.stats() });
    let tokenizer: TextTokenizer;
    try {
      tokenizer = await this.tokenizers.of(source);
    } catch (err) {
      loaded.model.dispose();
      throw err;
    }
    const keys = [key, modelKey(pinnedSource(source, baseModel, loaded.commit), s, quant) + imported];
    const stopTokenIds = chatStopTokenIds(tokenizer, loaded.endTokenSources);
    const lm: LoadedLm = {
      keys, model: loaded.model, modules: loaded.modules, baseModel, exportBase: named, commit: loaded.commit, source, config: loaded.config,
      tokenizer, stopTokenIds, settings: s, parameters: loaded.parameters, fromCache: loaded.fromCache, quant: loaded.quant,
    };
    this.current = { lm, trainer: null, run: null, running: null };
    return lm;
  }

  /** Runs a load; when it stops for want of a connection, says so with what was kept, so the page can offer to resume. */
  private async interruptible<T>(tracker: ProgressTracker, load: () => Promise<T>): Promise<T> {
    try {
      return await load();
    } catch (err) {
      const info = errorInfo(err, 'model');
      if (info.code === 'network') {
        const { done, total } = tracker.snapshot();
        this.emit({ type: 'load-interrupted', done, total, message: info.message });
      }
      throw err;
    }
  }

  /**
   * Refuses, before any weight downloads, a model whose plan for these settings does not fit
   * this GPU even at a shorter setting ("fits-shorter" loads: the page offers the shorter one).
   */
  private async refuseUnfit(source: ModelSource, s: RunSettings, quant: QuantSettings): Promise<void> {
    const plan = await this.planFor(source, s, quant);
    if (plan.verdict !== 'does-not-fit') return;
    throw new EngineError('does-not-fit', `This model does not fit this GPU with sequence ${s.seqLength}, batch ${s.batchSize} and rank ${s.rank}: ${plan.reason}.`, { section: 'model' });
  }

  /** Builds the trainer for a run on the loaded model, restores its checkpoint if any, and runs it in the background. */
  private async startRun(run: RunRecord, lm: LoadedLm, resume: boolean): Promise<void> {
    await this.openRun(run.runId);
    try {
      await this.startOpenRun(run, lm, resume);
    } catch (err) {
      this.closeRun(run.runId);
      throw err;
    }
  }

  private async startOpenRun(run: RunRecord, lm: LoadedLm, resume: boolean): Promise<void> {
    const g = this.requireGpu();
    const store = await this.checkpoints();
    const examples = await this.runExamplesOf(run);
    const trainer: Trainer = assembleRun({
      gpu: g,
      model: lm.model,
      tokenizer: lm.tokenizer,
      stopTokenIds: lm.stopTokenIds,
      settings: run.settings,
      train: examples.train,
      validation: examples.validation,
      samplePrompts: run.samplePrompts,
      checkpoints: store.sink(run.runId),
      onEvent: this.relay(run, lm.tokenizer, g, (): number => trainer.windowsPerEpoch),
    });
    run.totalSteps = trainer.totalSteps;
    if (resume) {
      const loaded = await store.loadLatest(run.runId);
      if (!loaded) {
        trainer.dispose();
        throw new EngineError('not-ready', 'This run has no checkpoint left to resume from; start a new run.');
      }
      for (const w of loaded.warnings) this.emit({ type: 'log', level: 'warn', message: w });
      trainer.restore(loaded.snapshot);
      // Redraw the curve up to the checkpoint.
      const byStep = new Map<number, Record<string, number>>();
      for (const h of loaded.snapshot.history) byStep.set(h.step + 1, { loss: h.loss, lr: h.lr, grad_norm: h.gradNorm, epoch: (h.step + 1) / trainer.windowsPerEpoch });
      for (const ev of loaded.snapshot.evals) byStep.set(ev.step, { ...byStep.get(ev.step), val_loss: ev.loss });
      for (const [step, values] of [...byStep].sort((a, b) => a[0] - b[0])) this.emit({ type: 'metrics', step, values });
    }
    if (!resume) {
      const persisted = await persistenceNotice('this run and its checkpoints');
      if (persisted) this.emit({ type: 'log', level: persisted.includes('not granted') ? 'warn' : 'info', message: persisted });
    }
    await this.runs.put(run);
    this.current?.trainer?.dispose();
    const current = { lm, trainer, run, running: null as Promise<void> | null };
    this.current = current;
    this.emit({ type: 'train-state', state: 'running', step: trainer.step, totalSteps: trainer.totalSteps });
    const running = trainer.run().then(async (result) => {
      if (result.status === 'done') await this.runs.put({ ...run, state: 'finished', step: result.step, savedAt: Date.now() });
    });
    current.running = running
      .catch((err) => {
        this.emit({ type: 'error', where: 'train', error: errorInfo(err, 'train') });
      })
      .finally(() => this.closeRun(run.runId));
  }

  /** Trainer events → page events (steps count from 1: "steps done"). */
  private relay(run: RunRecord, tokenizer: TextTokenizer, g: Gpu, stepsPerEpoch: () => number): (e: TrainEvent) => void {
    return (e) => {
      switch (e.type) {
        case 'step':
          // Epochs as Hugging Face reports them: fractional, steps done over steps per epoch.
          this.emit({ type: 'metrics', step: e.step + 1, values: { loss: e.loss, lr: e.lr, grad_norm: e.gradNorm, tokens_per_s: e.tokensPerS, epoch: (e.step + 1) / stepsPerEpoch() } });
          this.emit({ type: 'train-state', state: 'running', step: e.step + 1, totalSteps: e.totalSteps });
          this.emit({ type: 'memory', stats: g.pool.stats() });
          break;
        case 'eval':
          this.emit({ type: 'metrics', step: e.step, values: { val_loss: e.loss } });
          break;
        case 'sample':
          this.emit({ type: 'sample', step: e.step, prompt: tokenizer.decode(e.prompt), text: e.text ?? tokenizer.decode(e.tokens) });
          break;
        case 'checkpoint':
          this.runs.put({ ...run, step: e.step, savedAt: Date.now() }).catch((err) => this.emit({ type: 'error', where: 'train', error: errorInfo(err, 'train') }));
          this.emit({ type: 'log', level: 'info', message: `checkpoint saved at step ${e.step} (${e.reason})` });
          break;
        case 'status': {
          const state = e.status === 'error' || e.status === 'device-lost' ? 'failed' : e.status;
          this.trainerState = state;
          this.emit({ type: 'train-state', state, step: e.step, totalSteps: run.totalSteps, message: e.message });
          if (e.status === 'error') this.emit({ type: 'error', where: 'train', error: errorInfo(e.error ?? new Error(e.message ?? 'training failed'), 'train') });
          if (e.status === 'device-lost') this.emit({ type: 'error', where: 'train', error: new EngineError('device-lost', e.message ?? 'the GPU was lost').info });
          break;
        }
      }
    };
  }
}

const hex32 = (n: number) => n.toString(16).padStart(8, '0');

function openElsewhereError(): EngineError {
  return new EngineError('not-ready', 'This run is open in another tab of this browser: continue it there, or close that tab and resume it here.', {
    section: 'train',
    hint: 'Switch to the tab that has this run open, or close it and choose Resume here.',
  });
}

/** How many examples a run trains or evaluates on, whichever way its record holds them. */
function runCount(run: RunRecord, part: 'train' | 'validation'): number | undefined {
  return run.examples ? run.examples[part] : run[part]?.length;
}

/** Rows of the dataset loaded last, readable again for a new mapping or sequence length. */
interface DatasetSource {
  file: string;
  kind: 'file' | 'hub';
  /** Of the first rows (set when they are read). */
  columns: string[];
  /** SHA-256 of the file's bytes, or of a hub dataset's rows once they have streamed through. */
  content: string | null;
  /** crc32 for the model card: of the bytes, or of the rows as one JSON array. */
  fingerprint: string | null;
  open: () => AsyncIterable<Row>;
}

/** Rows that list the columns (as detectColumns looks at them). */
const COLUMN_ROWS = 200;
