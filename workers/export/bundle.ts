/**
 * What each export format writes, as a list of files whose sizes are known before anything is
 * written and whose bytes come as chunks (a GGUF tensor at a time): the page shows the sizes and
 * streams the chunks to a folder or a zip, the CLI writes them to disk.
 *
 *   peft: adapter_config.json (base model named by the base-name rule, revision = the commit),
 *         adapter_model.safetensors, README.md (model card with the hub's front matter)
 *   gguf: adapter.gguf (llama.cpp LoRA adapter), Modelfile (Ollama), README.md
 */
import { ggufChunks } from './gguf';
import { ggufLoraAdapter, type AdapterTensors } from './gguf-lora';
import { modelCard, type BaseModelName, type ModelCardInput } from './model-card';
import { modelfile, type PromptFormat } from './modelfile';
import { peftAdapterModel, withBaseModel, type LoraTensorData } from './peft';
import type { GgmlTypeName } from './gguf';

type Json = Record<string, unknown>;

export interface ExportFile {
  name: string;
  bytes: number;
  chunks(): AsyncIterable<Uint8Array>;
}

export interface ExportInput {
  /** adapter_config.json as written by the studio (or read from a PEFT folder). */
  adapterConfig: string;
  tensors: AdapterTensors;
  /** adapter_model.safetensors as it is, when the tensors came from one; else written from `tensorData`. */
  adapterModel?: Uint8Array;
  tensorData?: LoraTensorData[];
  /** The base model's config.json. */
  baseConfig: Json;
  base: BaseModelName;
  revision: string | null;
  /** Training settings, data and results for the card. */
  card?: Pick<ModelCardInput, 'training' | 'data' | 'results'>;
}

export interface GgufExportOptions {
  /** The prompt format the run trained on and the tokenizer's EOS text, for the Modelfile. */
  prompt: { format: PromptFormat; eosToken: string; library?: string };
  tensorType?: GgmlTypeName;
}

const encoder = new TextEncoder();

function textFile(name: string, text: string): ExportFile {
  const bytes = encoder.encode(text);
  return { name, bytes: bytes.length, chunks: async function* () { yield bytes; } };
}

function bytesFile(name: string, bytes: Uint8Array): ExportFile {
  return { name, bytes: bytes.length, chunks: async function* () { yield bytes; } };
}

function cardFor(input: ExportInput, config: Json, extraFiles: string[]): string {
  const targets = config.target_modules;
  return modelCard({
    base: input.base,
    revision: input.revision,
    architecture: Array.isArray(input.baseConfig.architectures) ? String(input.baseConfig.architectures[0]) : undefined,
    lora: {
      r: Number(config.r),
      alpha: Number(config.lora_alpha ?? 8),
      dropout: Number(config.lora_dropout ?? 0),
      targetModules: typeof targets === 'string' ? targets : Array.isArray(targets) ? targets.map(String) : [],
      useRslora: config.use_rslora === true,
    },
    ...input.card,
    extraFiles,
  });
}

/** The PEFT folder: the adapter as PEFT loads it, naming its base and commit, with its card. */
export function peftExport(input: ExportInput): ExportFile[] {
  const configText = withBaseModel(input.adapterConfig, input.base.name, input.revision);
  const model = input.adapterModel ?? (input.tensorData ? peftAdapterModel(input.tensorData) : null);
  if (!model) throw new Error('PEFT export: no adapter tensors');
  return [textFile('adapter_config.json', configText), bytesFile('adapter_model.safetensors', model), textFile('README.md', cardFor(input, JSON.parse(configText) as Json, []))];
}

/**
 * The llama.cpp / Ollama folder: the GGUF adapter, a Modelfile and the card. Throws
 * GgufLoraError with every refusal when llama.cpp cannot take the adapter (call ggufRefusals
 * first to show them).
 */
export function ggufExport(input: ExportInput, options: GgufExportOptions): ExportFile[] {
  const config = JSON.parse(withBaseModel(input.adapterConfig, input.base.name, input.revision)) as Json;
  const gguf = ggufLoraAdapter(config, input.tensors, input.baseConfig, { tensorType: options.tensorType });
  const adapterName = 'adapter.gguf';
  const adapter: ExportFile = { name: adapterName, bytes: gguf.layout.totalBytes, chunks: () => ggufChunks(gguf.metadata, gguf.tensors) };
  const mf = modelfile({
    format: options.prompt.format,
    eosToken: options.prompt.eosToken,
    library: options.prompt.library,
    baseModel: input.base.hubId ?? input.base.name,
    baseIsLocal: !input.base.hubId,
    revision: input.revision,
    adapterFile: `./${adapterName}`,
  });
  return [adapter, textFile('Modelfile', mf), textFile('README.md', cardFor(input, config, [adapterName, 'Modelfile']))];
}
