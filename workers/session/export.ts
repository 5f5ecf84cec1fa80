/**
 * The session's exports of the loaded adapter: which base model and commit it names (the
 * base-name rule of workers/export/model-card.ts), the card's facts from the run settings, and
 * each format's files (workers/export/bundle.ts, merged.ts) with their sizes known before a byte
 * is written. The merged model is merged into the base's original 16-bit weights, read again
 * from where the model came from (hub, served folder, dropped files) a block of rows at a time;
 * when they are out of reach (offline), into the NF4 base this browser cached, dequantized.
 */
import { strToU8, zipSync } from 'fflate';
import { presetNamed, type HfConfig } from '../load/presets';
import { readRange } from '../load/byte-source';
import { openModel, type ModelFileSet } from '../load/sources';
import { DTYPE_BYTES, SafetensorsFile, type DType } from '../formats/safetensors';
import { storedBytes } from '../load/quantize-on-load';
import type { CacheManifest, ModelCache } from '../load/cache';
import { ggufExport, peftExport, type ExportFile, type ExportInput } from '../export/bundle';
import { ggufRefusals } from '../export/gguf-lora';
import { baseModelName, modelCard, type BaseModelName } from '../export/model-card';
import { mergedFiles, type BaseWeights, type MergedDType } from '../export/merged';
import type { PromptFormat } from '../export/modelfile';
import type { PeftExport } from '../model/lora-adapter';
import type { TextTokenizer } from '../tokenizer';
import type { PresetName } from '../data';
import type { RowFormat } from './datasets';
import { EngineError } from '../errors';
import type { ModelCardFacts, ModelSource } from '../protocol';
import type { RunSettings } from '../run/settings';

/**
 * The base as the adapter names it: a hub id; the demo by its preset name; a dropped folder by
 * its config's `_name_or_path` when that is a hub id, else by the folder's name.
 */
export function exportBase(source: ModelSource, config: HfConfig | null, folderName: string): BaseModelName {
  if (source.kind === 'hub') return baseModelName({ kind: 'hub', id: source.id });
  if (source.kind === 'preset') {
    const preset = presetNamed(source.name);
    if (preset?.model.kind === 'hub') return baseModelName({ kind: 'hub', id: preset.model.repo });
    return baseModelName({ kind: 'bundled', name: source.name });
  }
  return baseModelName({ kind: 'folder', folderName, config: config as Record<string, unknown> | null });
}

/** The card's training, data and result sections from the run's settings, the base's storage and the page's facts. */
export function cardFacts(s: RunSettings, facts: ModelCardFacts, data?: { fingerprint: string; template?: string; train?: number; validation?: number }, baseQuantization: 'nf4' | 'none' = 'nf4'): NonNullable<ExportInput['card']> {
  return {
    training: {
      baseQuantization,
      learningRate: s.learningRate,
      schedule: s.schedule,
      warmupRatio: s.warmupSteps > 0 ? undefined : s.warmupRatio,
      epochs: s.epochs,
      steps: facts.steps,
      microBatch: s.batchSize,
      gradAccumulation: s.gradAccum,
      maxLength: s.seqLength,
      seed: s.seed,
      weightDecay: s.weightDecay,
      maxGradNorm: s.maxGradNorm,
    },
    data: data ? { name: facts.dataset, fingerprint: data.fingerprint, template: data.template, trainExamples: data.train, validationExamples: data.validation } : undefined,
    results: { finalTrainLoss: facts.finalTrainLoss, finalEvalLoss: facts.finalValidationLoss, steps: facts.steps },
  };
}

/** The export input for an adapter read back from the GPU (`model.exportAdapter`). */
export function adapterInput(peft: PeftExport, baseConfig: HfConfig, base: BaseModelName, revision: string | null, card: ExportInput['card']): ExportInput {
  return {
    adapterConfig: peft.adapterConfig,
    tensors: new SafetensorsFile(peft.adapterModel, 'adapter_model.safetensors'),
    adapterModel: peft.adapterModel,
    baseConfig: baseConfig as Record<string, unknown>,
    base,
    revision,
    card,
  };
}

/** What llama.cpp cannot take from this adapter (empty when the GGUF export can be written). */
export function adapterGgufRefusals(input: ExportInput): string[] {
  return ggufRefusals(input.adapterConfig, input.tensors, input.baseConfig);
}

export { peftExport, ggufExport };

/**
 * The prompt layout the run trained on, for the Modelfile's TEMPLATE: the dataset's template or
 * column mapping, else the preset's template; the EOS text is the tokenizer's.
 */
export function promptOf(tokenizer: TextTokenizer, format: RowFormat | null, presetTemplate: string | null, dataset?: string): { format: PromptFormat; eosToken: string } {
  const eosToken = tokenizer.eosToken;
  const template = format ? (format.mapping ? null : format.template) : presetTemplate;
  if (format?.mapping) {
    const m = format.mapping;
    if (m.kind === 'prompt-response') return { format: { kind: 'instruction' }, eosToken };
    if (m.kind === 'text') return { format: { kind: 'text' }, eosToken };
    return { format: { kind: 'chat', tokenizer }, eosToken };
  }
  if (template === 'ds1000' || template === 'counseling') return { format: { kind: 'preset', preset: template as PresetName }, eosToken };
  throw new EngineError('not-ready', `The Modelfile needs the prompt format the run trained on${dataset ? ` (${dataset})` : ''}: load the run's dataset in step 2 first.`, { section: 'export' });
}
export type { ExportFile, PromptFormat };

/** Files a merged folder carries over from the base as they are (small ones, read whole). */
const PASS_THROUGH = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'added_tokens.json'];

/** The base's tensors as merged.ts reads them: header-parsed shards, ranges read on demand. */
export async function baseWeightsOf(files: ModelFileSet): Promise<BaseWeights> {
  const { weights } = await openModel(files);
  const tensors = weights
    .names()
    .map((name) => weights.info(name))
    .sort((a, b) => (a.file.name === b.file.name ? a.begin - b.begin : a.file.name < b.file.name ? -1 : 1));
  return {
    tensors: tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
    read: async (name, start, end) => {
      const t = weights.info(name);
      const elements = t.shape.reduce((a, b) => a * b, 1);
      const size = elements ? (t.end - t.begin) / elements : 0;
      return readRange(t.file, t.begin + start * size, t.begin + end * size);
    },
  };
}

async function readSmallFile(files: ModelFileSet, name: string, extra: ((name: string) => Promise<Uint8Array | null>) | null): Promise<Uint8Array | null> {
  try {
    if (name.endsWith('.model')) {
      const f = files.file(name);
      if (f) return await readRange(f, 0, await f.size());
    } else {
      const text = await files.text(name);
      if (text !== null) return strToU8(text);
    }
  } catch {
    // Absent on the hub (404) or unreadable: the tokenizer may live elsewhere (the demo's).
  }
  return extra ? extra(name) : null;
}

const NF4_LAYER_DTYPE: Record<string, DType> = { float16: 'F16', bfloat16: 'BF16', float32: 'F32' };

/**
 * The base as this browser's cache holds it, when the original weights are out of reach: dense
 * tensors as stored, NF4 weights dequantized to their layer's dtype (the NF4 rounding stays in
 * them). One tensor is held at a time, read whole from the cache on its first block.
 */
export function cachedBaseWeights(cache: ModelCache, m: CacheManifest): BaseWeights {
  let last: { index: number; bytes: Uint8Array } | null = null;
  const indexOf = new Map(m.tensors.map((t, i) => [t.name, i]));
  const dtypeOf = (t: CacheManifest['tensors'][number]): DType => (t.kind === 'nf4' ? NF4_LAYER_DTYPE[t.dtype] : (t.dtype as DType));
  return {
    tensors: m.tensors.map((t) => ({ name: t.name, dtype: dtypeOf(t), shape: [...t.shape] })),
    read: async (name, start, end) => {
      const index = indexOf.get(name);
      if (index === undefined) throw new Error(`${m.repo}: the cached copy has no tensor "${name}"`);
      if (last?.index !== index) {
        last = null;
        last = { index, bytes: storedBytes(await cache.readTensor(m, index)) };
      }
      const size = DTYPE_BYTES[dtypeOf(m.tensors[index])];
      return last.bytes.slice(start * size, end * size);
    },
  };
}

export interface MergedExportOptions {
  input: ExportInput;
  /** The base's tensors: its original files (pinned to the run's commit) or the cached NF4 copy. */
  weights: BaseWeights;
  into: 'original' | 'dequantized-nf4';
  /** The base's files, for the tokenizer and generation config (when they can be read). */
  files: ModelFileSet | null;
  /** Where tokenizer files live when not beside the weights (the demo's tokenizer folder). */
  tokenizerFile?: ((name: string) => Promise<Uint8Array | null>) | null;
}

/** The merged folder's files (config, shards, index, tokenizer, card) with their sizes. */
export async function mergedExport(o: MergedExportOptions): Promise<ExportFile[]> {
  const { input } = o;
  const config = JSON.parse(input.adapterConfig) as Record<string, unknown>;
  const dtype: MergedDType = input.baseConfig.torch_dtype === 'bfloat16' ? 'BF16' : 'F16';
  const targets = config.target_modules;
  const card = modelCard({
    base: input.base,
    revision: input.revision,
    architecture: Array.isArray(input.baseConfig.architectures) ? String(input.baseConfig.architectures[0]) : undefined,
    lora: { r: Number(config.r), alpha: Number(config.lora_alpha ?? 8), dropout: Number(config.lora_dropout ?? 0), targetModules: typeof targets === 'string' ? targets : Array.isArray(targets) ? targets.map(String) : [], useRslora: config.use_rslora === true },
    ...input.card,
    merged: { into: o.into, dtype: dtype === 'F16' ? 'float16' : 'bfloat16' },
  });
  const passThrough: { name: string; data: Uint8Array }[] = [];
  for (const name of PASS_THROUGH) {
    const data = o.files ? await readSmallFile(o.files, name, o.tokenizerFile ?? null) : ((await o.tokenizerFile?.(name)) ?? null);
    if (data) passThrough.push({ name, data });
  }
  passThrough.push({ name: 'README.md', data: strToU8(card) });
  return mergedFiles(o.weights, input.tensors, input.baseConfig, { alpha: Number(config.lora_alpha ?? 8), r: Number(config.r), useRslora: config.use_rslora === true, dtype }, passThrough).files;
}

/** The PEFT folder as one zip (small: the adapter and its card). */
export async function zipFiles(files: ExportFile[]): Promise<Uint8Array> {
  const entries: Record<string, Uint8Array> = {};
  for (const f of files) {
    const data = new Uint8Array(f.bytes);
    let at = 0;
    for await (const c of f.chunks()) {
      data.set(c, at);
      at += c.length;
    }
    if (at !== f.bytes) throw new Error(`${f.name}: ${at} bytes written, ${f.bytes} announced`);
    entries[f.name] = data;
  }
  return zipSync(entries);
}
