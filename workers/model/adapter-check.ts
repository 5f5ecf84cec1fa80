/**
 * An imported PEFT adapter checked against the model it is about to be applied to, before any
 * GPU buffer is made for it: every tensor belongs to a LoRA module of an adapted linear layer,
 * every adapted layer has both of its tensors with the shapes the model and `r` give, every value
 * is finite. A different base model named in adapter_config.json is not an error (a fine-tune
 * of the same architecture may be meant) but a warning the user must see.
 */
import type { SafetensorsFile } from '../formats/safetensors';
import { architectureNames, loraKeys, type LinearSpec } from './architecture';
import type { ModelConfig } from './config';
import { AdapterError, adaptedModules } from './lora-adapter';
import type { LoraSettings } from './types';

export interface AdapterModelCheck {
  /** Adapted modules, in layer order. */
  modules: LinearSpec[];
  /** Things the user must be told but that do not stop the import. */
  warnings: string[];
}

export interface LoadedModelFacts {
  config: ModelConfig;
  /** The loaded base: a hub id (`microsoft/phi-1_5`), a folder name, the demo's path. */
  baseModel: string;
  /** The commit the base was loaded at, when it came from the hub. */
  commit?: string | null;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
const KEY = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/;

/** The first NaN or ±Inf, or -1. */
function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return i;
  return -1;
}

/**
 * Checks `adapter` (adapter_model.safetensors) with `settings` (from parsePeftConfig of its
 * adapter_config.json, `configFile` naming that file) against the loaded model. Throws an
 * AdapterError naming the file and the tensor; returns the warnings to show.
 */
export function checkAdapterAgainstModel(
  adapter: SafetensorsFile,
  settings: LoraSettings & { baseModel?: string | null; revision?: string | null },
  model: LoadedModelFacts,
  configFile = 'adapter_config.json',
): AdapterModelCheck {
  const file = adapter.file;
  const names = architectureNames(model.config);
  const byPath = new Map<string, LinearSpec>();
  for (const layer of names.layers) for (const spec of layer.linears) byPath.set(spec.path, spec);
  const modules = adaptedModules(names, settings);
  const targeted = new Set(modules.map((m) => m.path));
  if (modules.length === 0) {
    throw new AdapterError(`${configFile}: "target_modules" ${JSON.stringify(settings.targetRegex ? settings.targetModules[0] : settings.targetModules)} match no linear layer of this ${model.config.arch} model`);
  }

  for (const name of adapter.names) {
    const m = KEY.exec(name);
    if (!m) throw new AdapterError(`${file}: tensor "${name}" is not a LoRA weight (base_model.model.<module>.lora_A.weight or .lora_B.weight)`);
    const spec = byPath.get(m[1]);
    if (!spec) throw new AdapterError(`${file}: tensor "${name}" names "${m[1]}", which is no linear layer of this ${model.config.arch} model`);
    if (!targeted.has(spec.path)) throw new AdapterError(`${file}: tensor "${name}" adapts "${spec.path}", which ${configFile}'s "target_modules" does not select`);
  }

  const r = settings.r;
  for (const spec of modules) {
    const keys = loraKeys(spec.path);
    for (const [key, shape] of [[keys.a, [r, spec.inFeatures]], [keys.b, [spec.outFeatures, r]]] as const) {
      if (!adapter.has(key)) throw new AdapterError(`${file}: tensor "${key}" is missing (its module is selected by "target_modules")`);
      const info = adapter.info(key);
      if (!FLOAT_DTYPES.has(info.dtype)) throw new AdapterError(`${file}: tensor "${key}" has dtype ${info.dtype}; a LoRA weight is F32, F16, BF16 or F64`);
      if (info.shape.length !== 2 || info.shape[0] !== shape[0] || info.shape[1] !== shape[1]) {
        throw new AdapterError(`${file}: tensor "${key}" has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] (r = ${r} from ${configFile}, ${spec.path} is ${spec.inFeatures} → ${spec.outFeatures})`);
      }
      const bad = firstNonFinite(adapter.f32(key));
      if (bad >= 0) {
        const value = adapter.f32(key)[bad];
        throw new AdapterError(`${file}: tensor "${key}" holds ${value} at index ${bad}; every value must be finite`);
      }
    }
  }

  const warnings: string[] = [];
  const named = settings.baseModel ?? null;
  if (named && named !== model.baseModel) {
    warnings.push(`${configFile} names the base model "${named}", but "${model.baseModel}" is loaded: the adapter was trained on another model and may not work on this one`);
  }
  const revision = settings.revision ?? null;
  if (revision && model.commit && named === model.baseModel && revision !== model.commit && /^[0-9a-f]{40}$/.test(revision)) {
    warnings.push(`${configFile} names the base model's commit ${revision}, but ${model.commit} is loaded`);
  }
  return { modules, warnings };
}
