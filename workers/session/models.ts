/**
 * The model a run trains: the base model streamed from its files (or the browser's cache) into
 * the GPU, quantized to NF4 on the way (QLoRA) or kept unquantized in f32 (plain LoRA, the
 * engine's exact mode), with LoRA adapters made from the run settings (or an imported PEFT
 * adapter). The studio and the CLI load a run's model with `loadRunModel`.
 */
import { isEmulated } from '../gpu/device';
import type { Gpu } from '../gpu/runtime';
import { HubClient } from '../load/hub';
import { openLoad, refetchable } from '../load/load-model';
import type { ModelCache } from '../load/cache';
import type { ProgressTracker } from '../load/progress';
import { checkpointingFor } from '../load/planner';
import { presetNamed, weightModeOf, DEFAULT_QUANT, NO_QUANT, type HfConfig, type QuantSettings } from '../load/presets';
import type { ModelFileSet } from '../load/sources';
import type { StorageApi } from '../load/storage';
import type { Quantizer } from '../load/stream-source';
import { allLinearNames } from '../model/architecture';
import { CausalLM, DEFAULT_MAX_POSITIONS } from '../model/causal-lm';
import { checkAdapterAgainstModel } from '../model/adapter-check';
import { parseModelConfig } from '../model/config';
import { SHADERS } from '../kernels/shader-sources';
import type { LoraSettings } from '../model/types';
import type { SafetensorsFile } from '../formats/safetensors';
import type { ModelSource } from '../protocol';
import { checkRunSettings, loraView, type RunSettings } from '../run/settings';
import { EngineError } from '../errors';

/** Who quantizes a download: the GPU, except an emulated one, where the CPU reference is faster. */
export function quantizerFor(gpu: Gpu): Quantizer {
  return isEmulated(gpu.adapter) ? 'cpu' : 'gpu';
}

/** A PEFT adapter to start from instead of fresh LoRA weights. */
export interface ImportedAdapter {
  file: SafetensorsFile;
  settings: LoraSettings & { baseModel?: string | null; revision?: string | null };
}

export interface RunModelOptions {
  files: ModelFileSet;
  /** How the base is stored: NF4 (QLoRA), or `{ type: 'none' }` (plain LoRA, f32 on the GPU). */
  quant: QuantSettings;
  settings: RunSettings;
  quantizer: Quantizer;
  adapter?: ImportedAdapter | null;
  /** The base model's name as the adapter should name it (a hub id, a folder name, the demo's path). */
  baseModel?: string;
  /** Cache identity; without it (dropped files, the CLI) nothing is cached. */
  cacheId?: { repo: string; revision: string } | null;
  cache?: ModelCache | null;
  storage?: StorageApi | null;
  progress?: ProgressTracker;
  onRead?: (name: string, index: number, count: number) => void;
  /** What the user should hear about the download: resumed, a file refused for its sha256, a corrupt cached copy removed. */
  onNotice?: (message: string) => void;
  /** GPU memory the run is planned against (the planner's default without it). */
  gpuMemoryBytes?: number;
}

export interface RunModel {
  model: CausalLM;
  /** How the base was loaded: NF4, or not quantized (`model.mode` is then 'exact'). */
  quant: QuantSettings;
  /** Linear layers LoRA can target in this model. */
  modules: string[];
  parameters: number;
  fromCache: boolean;
  /** The hub commit the base model was loaded at (null for the demo, dropped files and folders). */
  commit: string | null;
  /** What the user must be told about an imported adapter (another base model or commit named in it). */
  warnings: string[];
  /** The base's config.json as read (exports carry it). */
  config: HfConfig;
  /** Where the tokens that end generation are declared: generation_config.json (when the model has one) and config.json. */
  endTokenSources: { generationConfig: unknown; config: unknown };
}

/** A small optional JSON file of the model (generation_config.json): null when absent or unreadable, with why. */
async function optionalJson(files: ModelFileSet, path: string, warnings: string[]): Promise<unknown> {
  const text = await files.text(path).catch(() => null);
  if (text === null) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    warnings.push(`${files.label} ${path}: not valid JSON (${(err as Error).message}); generation stops on config.json's end token only`);
    return null;
  }
}

/**
 * Loads the base model with LoRA adapters for these settings. Tensors come one at a time in the
 * order the files (or the cache) store them and go straight to the GPU: the worker holds about
 * one tensor of model data at a time. The settings are checked against the model's layers.
 */
export async function loadRunModel(gpu: Gpu, o: RunModelOptions): Promise<RunModel> {
  try {
    return await loadRunModelOnce(gpu, o);
  } catch (err) {
    // A file refused for its sha256 (its tensors were dropped) or a corrupt cached copy (removed): fetch it again, once.
    if (!refetchable(err) || !o.cache) throw err;
    return loadRunModelOnce(gpu, o);
  }
}

async function loadRunModelOnce(gpu: Gpu, o: RunModelOptions): Promise<RunModel> {
  // The hub says which commit the revision is at; that commit's cached copy needs no download.
  const load = await openLoad({
    files: o.files,
    quant: o.quant,
    cacheId: o.cacheId ?? null,
    cache: o.cache ?? null,
    storage: o.storage ?? null,
    progress: o.progress,
    quantizer: o.quantizer,
    onRead: o.onRead,
    onNotice: o.onNotice,
  });
  let model: CausalLM | null = null;
  try {
    const config = parseModelConfig(JSON.stringify(load.config), `${o.files.label} config.json`);
    const modules = allLinearNames(config);
    const settings = checkRunSettings(o.settings, o.adapter ? [] : modules);
    const commit = load.identity?.commit ?? null;
    // An imported adapter must fit this model: every key a module, every shape right, every value finite.
    const warnings = o.adapter ? checkAdapterAgainstModel(o.adapter.file, o.adapter.settings, { config, baseModel: o.baseModel ?? o.files.label, commit }).warnings : [];
    const lora = o.adapter ? { settings: o.adapter.settings, init: { adapter: o.adapter.file } } : { settings: loraView(settings), init: { seed: settings.seed } };
    // Gradient checkpointing where the planner says it pays, as the plan the page shows says.
    const checkpointing = await checkpointingFor(config, {
      seq: settings.seqLength,
      batch: settings.batchSize,
      rank: lora.settings.r,
      targets: lora.settings.targetModules,
      quant: o.quant,
      dropout: lora.settings.dropout > 0,
      limits: { maxBufferSize: gpu.limits.maxBufferSize, maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize },
      ...(o.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: o.gpuMemoryBytes } : {}),
    });
    model = await CausalLM.load(gpu, SHADERS, config, load.weights, {
      mode: weightModeOf(o.quant),
      lora,
      checkpointing,
      // Room for the longest example and a sample generation after it; long-context models
      // (Llama 3.2: 131072) get no more rotary rows than the engine's default.
      maxPositions: Math.max(Math.min(config.maxPositions, DEFAULT_MAX_POSITIONS), settings.seqLength + settings.sampleTokens),
    });
    await load.finish();
    const generationConfig = await optionalJson(o.files, 'generation_config.json', warnings);
    return { model, quant: o.quant, modules, parameters: load.arch.parameters, fromCache: load.fromCache, commit, warnings, config: load.config, endTokenSources: { generationConfig, config: load.config } };
  } catch (err) {
    model?.dispose();
    await load.abort();
    throw err;
  }
}

/** config.json of a model, before any weights are read (a preset carries its own); `hub` reads a hub repo's. */
export async function configOf(source: ModelSource, hub: HubClient = new HubClient()): Promise<HfConfig> {
  if (source.kind === 'preset') {
    const preset = presetNamed(source.name);
    if (!preset) throw new EngineError('invalid-model', `unknown preset "${source.name}"`);
    return preset.config;
  }
  if (source.kind === 'hub') {
    const text = await hub.text(source.id, source.revision ?? 'main', 'config.json');
    if (text === null) throw new EngineError('hub', `${source.id} has no config.json on the hub: is the id right?`, { file: 'config.json' });
    return parseJson(text, `${source.id} config.json`);
  }
  const file = source.files.find((f) => f.name === 'config.json');
  if (!file) throw new EngineError('invalid-model', 'The model folder has no config.json: choose the folder that holds config.json and the .safetensors files.', { file: 'config.json' });
  return parseJson(await file.text(), 'config.json');
}

function parseJson(text: string, file: string): HfConfig {
  try {
    return JSON.parse(text) as HfConfig;
  } catch (err) {
    throw new EngineError('invalid-model', `${file} is not valid JSON: ${(err as Error).message}`, { file });
  }
}

/**
 * The quantization a model source gets: its preset's (else NF4 with double quantization), or
 * none when the base is not to be quantized (plain LoRA).
 */
export function quantOf(source: ModelSource, quantize = true): QuantSettings {
  if (!quantize) return NO_QUANT;
  return source.kind === 'preset' ? (presetNamed(source.name)?.quant ?? DEFAULT_QUANT) : DEFAULT_QUANT;
}
