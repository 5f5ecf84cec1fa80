/**
 * PEFT's two adapter files from LoRA tensors already on the CPU (a checkpoint's, or another
 * adapter's), and adapter_config.json with its base model renamed. The fields are the ones
 * workers/model/lora-adapter.ts `exportPeftAdapter` writes from the GPU (PEFT 0.11.1's
 * LoraConfig as saved by save_pretrained), so both paths give the same config.
 */
import { writeSafetensors } from '../formats/safetensors';
import type { LoraSettings } from '../model/types';
import type { AdapterTensors } from './gguf-lora';

export interface LoraTensorData {
  /** PEFT key, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`. */
  key: string;
  shape: [number, number];
  data: Float32Array;
}

const LORA_KEY = /^base_model\.model\.(.+)\.lora_[AB]\.weight$/;

/** The module names (last path part) the keys adapt, sorted: PEFT's target_modules list. */
export function targetModuleNames(keys: string[]): string[] {
  const names = new Set<string>();
  for (const k of keys) {
    const m = LORA_KEY.exec(k);
    if (!m) throw new Error(`"${k}" is not a PEFT LoRA key (base_model.model.<module>.lora_A/B.weight)`);
    names.add(m[1].slice(m[1].lastIndexOf('.') + 1));
  }
  return [...names].sort();
}

/** adapter_config.json text. */
export function peftAdapterConfig(settings: LoraSettings, targetModules: string[] | string, baseModel: string, revision: string | null): string {
  const config = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: settings.alpha,
    lora_dropout: settings.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: settings.r,
    rank_pattern: {},
    revision,
    target_modules: targetModules,
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: settings.useRslora ?? false,
  };
  return JSON.stringify(config, null, 2) + '\n';
}

/** adapter_config.json with `base_model_name_or_path` and `revision` set, every other field kept. */
export function withBaseModel(configText: string, baseModel: string, revision: string | null): string {
  const cfg = JSON.parse(configText) as Record<string, unknown>;
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('adapter_config.json: not a JSON object');
  cfg.base_model_name_or_path = baseModel;
  cfg.revision = revision ?? (typeof cfg.revision === 'string' ? cfg.revision : null);
  return JSON.stringify(cfg, null, 2) + '\n';
}

/** adapter_model.safetensors bytes (F32, PEFT keys). */
export function peftAdapterModel(tensors: LoraTensorData[]): Uint8Array {
  for (const t of tensors) {
    if (t.data.length !== t.shape[0] * t.shape[1]) throw new Error(`"${t.key}": ${t.data.length} values for shape [${t.shape.join(', ')}]`);
  }
  return writeSafetensors(
    tensors.map((t) => ({ name: t.key, dtype: 'F32' as const, shape: [...t.shape], data: t.data })),
    { format: 'pt' },
  );
}

/** LoRA tensors in memory, read the way a SafetensorsFile is. */
export function tensorsInMemory(tensors: LoraTensorData[]): AdapterTensors {
  const byKey = new Map(tensors.map((t) => [t.key, t]));
  const get = (name: string) => {
    const t = byKey.get(name);
    if (!t) throw new Error(`no tensor "${name}"`);
    return t;
  };
  return {
    names: tensors.map((t) => t.key),
    info: (name) => ({ dtype: 'F32', shape: [...get(name).shape] }),
    f32: (name) => get(name).data,
  };
}
