/**
 * LoRA adapters as PEFT defines them: which modules get one, initialisation (A Kaiming-uniform
 * with a = √5, i.e. U(−1/√in, 1/√in); B zeros), reading adapter_config.json +
 * adapter_model.safetensors, and writing them back so `PeftModel.from_pretrained` loads them.
 */
import type { Gpu } from '../gpu/runtime';
import { writeSafetensors, type SafetensorsFile } from '../formats/safetensors';
import { loraKeys, type ArchitectureNames, type LinearSpec } from './architecture';
import { compileTargetPattern, isTargetModule } from './target-modules';
import type { LoraSettings, LoraTensor } from './types';
import { seededRandom } from '../util/random';
import { peftAdapterConfig } from '../export/peft';

export interface LoraModule {
  spec: LinearSpec;
  /** Distinct per adapted module: keys its dropout mask. */
  index: number;
  a: LoraTensor;
  b: LoraTensor;
}

export class AdapterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdapterError';
  }
}

/** Reads the LoRA settings of a PEFT adapter_config.json, refusing what the engine does not implement. */
export function parsePeftConfig(text: string, file = 'adapter_config.json'): LoraSettings & { baseModel: string | null; revision: string | null } {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new AdapterError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const bad = (key: string, why: string) => new AdapterError(`${file}: "${key}" ${why}`);
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') throw bad('peft_type', `= ${JSON.stringify(cfg.peft_type)}; only "LORA" is supported`);
  if (typeof cfg.r !== 'number' || !Number.isInteger(cfg.r) || cfg.r <= 0) throw bad('r', `must be a positive integer, found ${JSON.stringify(cfg.r)}`);
  const alpha = cfg.lora_alpha ?? 8;
  if (typeof alpha !== 'number') throw bad('lora_alpha', `must be a number, found ${JSON.stringify(alpha)}`);
  const dropout = cfg.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw bad('lora_dropout', `must be in [0, 1), found ${JSON.stringify(dropout)}`);
  if ((cfg.bias ?? 'none') !== 'none') throw bad('bias', `= ${JSON.stringify(cfg.bias)}; only "none" is supported`);
  if (cfg.use_dora === true) throw bad('use_dora', 'is not supported');
  if (cfg.fan_in_fan_out === true) throw bad('fan_in_fan_out', 'is not supported');
  for (const k of ['rank_pattern', 'alpha_pattern']) {
    const v = cfg[k];
    if (v && typeof v === 'object' && Object.keys(v).length) throw bad(k, 'with per-module entries is not supported');
  }
  if (cfg.layers_to_transform !== undefined && cfg.layers_to_transform !== null) throw bad('layers_to_transform', 'is not supported');
  const targets = cfg.target_modules;
  if (!(typeof targets === 'string' || (Array.isArray(targets) && targets.every((t) => typeof t === 'string')))) {
    throw bad('target_modules', `must be a list of module names or a regular expression, found ${JSON.stringify(targets)}`);
  }
  // Compiled once here so that a pattern the linear-time matcher refuses is reported with the file.
  if (typeof targets === 'string') {
    try {
      compileTargetPattern(targets, `${file}: "target_modules"`);
    } catch (err) {
      throw new AdapterError((err as Error).message);
    }
  }
  return {
    r: cfg.r,
    alpha,
    dropout,
    targetModules: typeof targets === 'string' ? [targets] : (targets as string[]),
    targetRegex: typeof targets === 'string',
    useRslora: cfg.use_rslora === true,
    baseModel: typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : null,
    revision: typeof cfg.revision === 'string' ? cfg.revision : null,
  };
}


/** PEFT's default init: A ~ U(−1/√in, 1/√in) (kaiming_uniform_ with a = √5), B = 0. */
export function initLoraA(r: number, inFeatures: number, random: () => number): Float32Array {
  const bound = 1 / Math.sqrt(inFeatures);
  const a = new Float32Array(r * inFeatures);
  for (let i = 0; i < a.length; i++) a[i] = (2 * random() - 1) * bound;
  return a;
}

/** The modules of the model that the settings adapt, in layer order. */
export function adaptedModules(names: ArchitectureNames, settings: LoraSettings): LinearSpec[] {
  const targets = settings.targetRegex ? settings.targetModules[0] : settings.targetModules;
  return names.layers.flatMap((l) => l.linears.filter((s) => isTargetModule(s.path, targets)));
}

export type LoraInit = { seed: number } | { adapter: SafetensorsFile };

/** Allocates A, B and their (zeroed) gradients for every adapted module. */
export function createLoraModules(gpu: Gpu, names: ArchitectureNames, settings: LoraSettings, init: LoraInit): LoraModule[] {
  const specs = adaptedModules(names, settings);
  if (specs.length === 0) throw new AdapterError(`target_modules ${JSON.stringify(settings.targetModules)} match no linear layer of this model`);
  const random = 'seed' in init ? seededRandom(init.seed) : null;
  const modules: LoraModule[] = [];
  const used = new Set<string>();
  specs.forEach((spec, index) => {
    const keys = loraKeys(spec.path);
    const shapeA: [number, number] = [settings.r, spec.inFeatures];
    const shapeB: [number, number] = [spec.outFeatures, settings.r];
    let a: Float32Array;
    let b: Float32Array;
    if ('adapter' in init) {
      a = readAdapterTensor(init.adapter, keys.a, shapeA);
      b = readAdapterTensor(init.adapter, keys.b, shapeB);
      used.add(keys.a).add(keys.b);
    } else {
      a = initLoraA(settings.r, spec.inFeatures, random!);
      b = new Float32Array(spec.outFeatures * settings.r);
    }
    const tensor = (key: string, shape: [number, number], data: Float32Array): LoraTensor => {
      const grad = gpu.alloc(data.byteLength, 'lora', `${key}.grad`);
      gpu.fill(grad, 0);
      return { key, shape, weight: gpu.upload(data, 'lora', key), grad };
    };
    modules.push({ spec, index, a: tensor(keys.a, shapeA, a), b: tensor(keys.b, shapeB, b) });
  });
  if ('adapter' in init) {
    const extra = init.adapter.names.filter((n) => !used.has(n));
    if (extra.length) throw new AdapterError(`${init.adapter.file}: tensor "${extra[0]}" does not belong to any adapted module of this model${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ''}`);
  }
  return modules;
}

function readAdapterTensor(file: SafetensorsFile, key: string, shape: [number, number]): Float32Array {
  if (!file.has(key)) throw new AdapterError(`${file.file}: tensor "${key}" is missing`);
  const info = file.info(key);
  if (info.shape.length !== 2 || info.shape[0] !== shape[0] || info.shape[1] !== shape[1]) {
    throw new AdapterError(`${file.file}: tensor "${key}" has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return file.f32(key);
}

export interface PeftExport {
  /** adapter_model.safetensors bytes (f32 tensors, PEFT keys). */
  adapterModel: Uint8Array;
  /** adapter_config.json text. */
  adapterConfig: string;
}

/** Reads the adapters back from the GPU and writes PEFT's two files. */
export async function exportPeftAdapter(gpu: Gpu, modules: LoraModule[], settings: LoraSettings, baseModel: string, revision: string | null = null): Promise<PeftExport> {
  const tensors = [];
  for (const m of modules) {
    for (const t of [m.a, m.b]) tensors.push({ name: t.key, dtype: 'F32' as const, shape: t.shape, data: await gpu.readF32(t.weight, t.shape[0] * t.shape[1]) });
  }
  const targetNames = settings.targetRegex ? settings.targetModules[0] : [...new Set(modules.map((m) => m.spec.name))].sort();
  // The config's fields live in one place, shared with the export of checkpoints and imported adapters.
  return { adapterModel: writeSafetensors(tensors, { format: 'pt' }), adapterConfig: peftAdapterConfig(settings, targetNames, baseModel, revision) };
}
