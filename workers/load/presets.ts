/**
 * The studio's presets: which model, where its files come from, the data template, and the
 * run settings (workers/run/settings.ts) it starts from. Plain objects, so the page can copy one and let the user edit it.
 * Each preset carries the architecture's real config.json, so the memory planner can answer
 * "does it fit?" before a single byte is downloaded.
 */
import phi15Config from './configs/phi-1_5.json';
import falcon7bConfig from './configs/falcon-7b.json';
import demoConfig from './configs/demo.json';
import qwen05Config from './configs/Qwen2.5-0.5B-Instruct.json';
import qwen15Config from './configs/Qwen2.5-1.5B-Instruct.json';
import smolConfig from './configs/SmolLM2-360M-Instruct.json';
import tinyLlamaConfig from './configs/TinyLlama-1.1B-Chat-v1.0.json';
import llama32Config from './configs/Llama-3.2-1B-Instruct.json';
import phi3Config from './configs/Phi-3-mini-4k-instruct.json';
import { ownEntry } from '../util/own';
import { runSettings, type RunSettings } from '../run/settings';

export type HfConfig = Record<string, unknown>;

/** Where a model's files live. */
export type ModelLocation =
  | { kind: 'hub'; repo: string; revision: string }
  /**
   * A folder served by the studio itself (the built-in demo), e.g. `/demo/model/`. A model
   * folder's `revision` names its content (sha256 of config.json then model.safetensors, 12 hex
   * digits; a test keeps it true), so a studio shipping a changed demo makes a new cached copy.
   */
  | { kind: 'url'; baseUrl: string; revision?: string };

/** The base's linear weights quantized to NF4 (QLoRA). */
export interface Nf4QuantSettings {
  type: 'nf4';
  blocksize: 64;
  doubleQuant: boolean;
  /** Double quantization groups this many absmax values. */
  nestedBlocksize: 256;
}

/**
 * How the base model's linear weights are stored: NF4 (QLoRA, the default), or not quantized at
 * all (plain LoRA: the checkpoint's values as they are, held in f32 on the GPU by the engine's
 * exact mode, 4 bytes per parameter instead of about 0.56).
 */
export type QuantSettings = Nf4QuantSettings | { type: 'none' };

export interface Preset {
  name: string;
  label: string;
  description: string;
  model: ModelLocation;
  /** The tokenizer files: the model's own repo, or the demo tokenizer served by the studio. */
  tokenizer: ModelLocation;
  /** The architecture's config.json as published. */
  config: HfConfig;
  /** Data template (see workers/data): how rows become prompt/response text. */
  template: 'ds1000' | 'counseling';
  /** The run settings the studio starts from with this preset (the run defaults plus a few of its own). */
  settings: RunSettings;
  quant: QuantSettings;
}

export const DEFAULT_QUANT: Nf4QuantSettings = { type: 'nf4', blocksize: 64, doubleQuant: true, nestedBlocksize: 256 };
/** Plain LoRA: the base is not quantized. */
export const NO_QUANT: QuantSettings = { type: 'none' };

/** Whether the base's linear weights are quantized (NF4) under these settings. */
export const isNf4 = (quant: QuantSettings): quant is Nf4QuantSettings => quant.type === 'nf4';

/** The engine's weight mode for a base stored this way: NF4 linear layers, or exact (f32) ones. */
export const weightModeOf = (quant: QuantSettings): 'nf4' | 'exact' => (isNf4(quant) ? 'nf4' : 'exact');

/**
 * Quantization settings as the engine accepts them from outside (a stored run, the page): the
 * two shapes above and nothing else, so a record from another version is refused by field.
 */
export function checkQuant(value: unknown, where: string): QuantSettings {
  const q = value as Record<string, unknown> | null;
  if (!q || typeof q !== 'object' || Array.isArray(q)) throw new Error(`${where}: quantization must be an object, got ${JSON.stringify(value)}`);
  const keys = Object.keys(q).sort().join(',');
  if (q.type === 'none' && keys === 'type') return NO_QUANT;
  if (q.type === 'nf4' && keys === 'blocksize,doubleQuant,nestedBlocksize,type' && q.blocksize === 64 && q.nestedBlocksize === 256 && typeof q.doubleQuant === 'boolean') {
    return { type: 'nf4', blocksize: 64, doubleQuant: q.doubleQuant, nestedBlocksize: 256 };
  }
  throw new Error(`${where}: quantization ${JSON.stringify(value)} is neither { type: "none" } nor NF4 with blocksize 64 and nested blocksize 256`);
}

const PHI_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'];
const LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const PHI3_TARGETS = ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'];

/** A hub model fine-tuned on the counseling conversations, NF4 base, LoRA r 16 on every linear layer. */
function hubPreset(name: string, repo: string, label: string, config: HfConfig, targetModules: string[], note = ''): Preset {
  return {
    name,
    label,
    description: `${repo}, NF4 base, LoRA r 16 on every linear layer.${note}`,
    model: { kind: 'hub', repo, revision: 'main' },
    tokenizer: { kind: 'hub', repo, revision: 'main' },
    config,
    template: 'counseling',
    settings: runSettings({ targetModules }),
    quant: DEFAULT_QUANT,
  };
}

export const PRESETS: Record<string, Preset> = {
  'phi-1_5': {
    name: 'phi-1_5',
    label: 'Phi-1.5 (1.3B) on DS-1000-style code questions',
    description: 'microsoft/phi-1_5, NF4 base, LoRA r 16 on every linear layer.',
    model: { kind: 'hub', repo: 'microsoft/phi-1_5', revision: 'main' },
    tokenizer: { kind: 'hub', repo: 'microsoft/phi-1_5', revision: 'main' },
    config: phi15Config,
    template: 'ds1000',
    settings: runSettings({ targetModules: PHI_TARGETS }),
    quant: DEFAULT_QUANT,
  },
  'falcon-7b': {
    name: 'falcon-7b',
    label: 'Falcon-7B on counseling conversations',
    description: 'tiiuae/falcon-7b, NF4 base, LoRA r 16 on every linear layer.',
    model: { kind: 'hub', repo: 'tiiuae/falcon-7b', revision: 'main' },
    tokenizer: { kind: 'hub', repo: 'tiiuae/falcon-7b', revision: 'main' },
    config: falcon7bConfig,
    template: 'counseling',
    settings: runSettings({ targetModules: ['query_key_value', 'dense', 'dense_h_to_4h', 'dense_4h_to_h'] }),
    quant: DEFAULT_QUANT,
  },
  'Qwen2.5-0.5B-Instruct': hubPreset('Qwen2.5-0.5B-Instruct', 'Qwen/Qwen2.5-0.5B-Instruct', 'Qwen2.5-0.5B-Instruct (0.5B)', qwen05Config, LLAMA_TARGETS),
  'Qwen2.5-1.5B-Instruct': hubPreset('Qwen2.5-1.5B-Instruct', 'Qwen/Qwen2.5-1.5B-Instruct', 'Qwen2.5-1.5B-Instruct (1.5B)', qwen15Config, LLAMA_TARGETS),
  'SmolLM2-360M-Instruct': hubPreset('SmolLM2-360M-Instruct', 'HuggingFaceTB/SmolLM2-360M-Instruct', 'SmolLM2-360M-Instruct (0.36B)', smolConfig, LLAMA_TARGETS),
  'TinyLlama-1.1B-Chat-v1.0': hubPreset('TinyLlama-1.1B-Chat-v1.0', 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', 'TinyLlama-1.1B-Chat-v1.0 (1.1B)', tinyLlamaConfig, LLAMA_TARGETS),
  'Llama-3.2-1B-Instruct': hubPreset('Llama-3.2-1B-Instruct', 'meta-llama/Llama-3.2-1B-Instruct', 'Llama-3.2-1B-Instruct (1.2B, gated)', llama32Config, LLAMA_TARGETS, ' Gated: accept the license on the model page and use an access token.'),
  'Phi-3-mini-4k-instruct': hubPreset('Phi-3-mini-4k-instruct', 'microsoft/Phi-3-mini-4k-instruct', 'Phi-3-mini-4k-instruct (3.8B)', phi3Config, PHI3_TARGETS),
  demo: {
    name: 'demo',
    label: 'Demo (tiny, offline)',
    description: 'A tiny Llama-shaped model pretrained on Python\'s standard library and its documentation, shipped with the studio: a few minutes of training anywhere.',
    model: { kind: 'url', baseUrl: '/demo/model/', revision: 'sha256-1fe515923f45' },
    tokenizer: { kind: 'url', baseUrl: '/demo/tokenizer/' },
    config: demoConfig,
    template: 'ds1000',
    // A few minutes on an emulated GPU: 28 single-example steps at a high learning rate pick up
    // the DS-1000 answer shape; sequence 256 keeps every demo row whole.
    settings: runSettings({ targetModules: LLAMA_TARGETS, learningRate: 3e-3, seqLength: 256, gradAccum: 1, maxSteps: 28 }),
    quant: DEFAULT_QUANT,
  },
};

export const PRESET_NAMES = Object.keys(PRESETS);

/** The built-in preset of that name, or undefined (a name such as `constructor` is no preset). */
export function presetNamed(name: string): Preset | undefined {
  return ownEntry(PRESETS, name);
}

/** A deep copy the caller may edit without changing the built-in preset. */
export function getPreset(name: string): Preset {
  const preset = presetNamed(name);
  if (!preset) throw new Error(`unknown preset "${name}"; known: ${PRESET_NAMES.join(', ')}`);
  return structuredClone(preset);
}
