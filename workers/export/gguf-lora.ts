/**
 * A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) as the GGUF LoRA adapter
 * that llama.cpp (and so Ollama and LM Studio) loads with `--lora`. It follows what llama.cpp's own
 * `convert_lora_to_gguf.py` writes from the same adapter:
 *
 * Metadata (convert_lora_to_gguf.py `LoraModel.set_type` / `set_gguf_parameters`, and
 * convert_hf_to_gguf.py `ModelBase.prepare_metadata`), in that order:
 *   general.architecture  string  llama.cpp's name of the base architecture (GGUFWriter's first key)
 *   general.type          string  "adapter"
 *   adapter.type          string  "lora"
 *   general.name          string
 *   adapter.lora.alpha    FLOAT32 lora_alpha (llama.cpp's llama-adapter.cpp reads it as a 32-bit
 *                                 float and refuses any other type); llama.cpp scales by alpha / r,
 *                                 r read from each lora_a's shape
 *   general.quantization_version  u32 2 (GGML_QUANT_VERSION)
 *   general.alignment     u32 32  (the GGUF default, written explicitly)
 * No tokenizer, no hyper-parameters, no extra tensors (rope_freqs): the adapter's `set_vocab` and
 * `generate_extra_tensors` are empty.
 *
 * Tensors (convert_lora_to_gguf.py `get_tensors` / `modify_tensors`): for every adapted module,
 * `<gguf base name>.weight.lora_a` and `.lora_b`, where the base name is what the base model's own
 * conversion maps the module's weight to (gguf-py tensor_mapping.py `TensorNameMap`, names from
 * constants.py `TENSOR_NAMES`). PyTorch shapes are kept: lora_a is [r, in] and lora_b [out, r], so
 * the GGUF dims (innermost first) are lora_a {in, r} and lora_b {r, out}, what llama-adapter.cpp
 * checks against the base tensor {in, out}. Type: F32 (the converter's default `--outtype f32`);
 * F16 on request (`--outtype f16`).
 *
 * Where the base model's conversion reorders a weight's output rows, the LoRA converter applies the
 * same reordering to lora_b's rows (its `LoraTorchTensor` reshapes/permutes B, keeps A):
 *   - llama (`LlamaModel.modify_tensors`, conversion/llama.py): q_proj rows permuted per head with
 *     n_head, k_proj rows with num_key_value_heads (rotary pairs (i, i + d/2) become adjacent).
 *   - falcon (`FalconModel.modify_tensors`, conversion/falcon.py): query_key_value's kv groups
 *     (n_head/n_kv queries, one key, one value each) become all queries, all keys, all values.
 *     The head counts are the ones transformers uses: a `multi_query` falcon without
 *     `new_decoder_architecture` has one K/V head, whatever a stale `num_kv_heads` says (the
 *     converter itself would read that stale value and fail on the shape).
 *   - phi2, qwen2, phi3: no reordering (phi3 keeps the fused qkv_proj and gate_up_proj, which
 *     llama.cpp splits at run time).
 *
 * An untied lm_head maps to `output.weight.lora_a` / `.lora_b` (tensor_mapping.py `OUTPUT`); a tied
 * one is refused, as the converter refuses it ("lm_head is present in adapter, but is ignored in
 * base model"). What llama.cpp cannot take is refused before anything is written (`ggufRefusals`).
 */
import type { TensorInfo } from '../formats/safetensors';
import { GGUF_DEFAULT_ALIGNMENT, ggufLayout, type GgmlTypeName, type GgufKeyValue, type GgufLayout, type GgufTensor } from './gguf';

type Json = Record<string, unknown>;

/** llama.cpp's architecture names (gguf-py constants.py `MODEL_ARCH_NAMES`) for the families we export. */
export type GgufArchitecture = 'phi2' | 'falcon' | 'llama' | 'qwen2' | 'phi3';

/** How lora_b's rows are reordered on the way (see the file comment). */
export type RowOrder = { kind: 'same' } | { kind: 'rope-permute'; heads: number } | { kind: 'falcon-qkv'; heads: number; kvHeads: number; headDim: number };

interface ModuleRule {
  /** The module path after the layer number, e.g. `self_attn.q_proj`. */
  module: string;
  /** The GGUF tensor after `blk.N.`, e.g. `attn_q`. */
  gguf: string;
  order?: (cfg: Json) => RowOrder;
}

interface ArchitectureRules {
  arch: GgufArchitecture;
  /** Prefix of the decoder layers in HF module paths. */
  layers: string;
  modules: ModuleRule[];
}

function intOf(cfg: Json, keys: string[]): number | undefined {
  for (const k of keys) if (typeof cfg[k] === 'number' && Number.isInteger(cfg[k])) return cfg[k] as number;
  return undefined;
}

/** Falcon's head counts as transformers' FalconAttention uses them. */
export function falconHeads(cfg: Json): { heads: number; kvHeads: number; headDim: number } {
  const heads = intOf(cfg, ['num_attention_heads', 'n_head']);
  const hidden = intOf(cfg, ['hidden_size', 'n_embed']);
  if (!heads || !hidden) throw new Error('config.json: falcon needs num_attention_heads and hidden_size');
  let kvHeads: number;
  if (cfg.new_decoder_architecture === true) kvHeads = intOf(cfg, ['num_kv_heads', 'n_head_kv']) ?? heads;
  else if (cfg.multi_query !== false) kvHeads = 1; // FalconConfig's default multi_query is true
  else kvHeads = heads;
  return { heads, kvHeads, headDim: hidden / heads };
}

function llamaHeads(cfg: Json, which: 'q' | 'k'): RowOrder {
  const heads = intOf(cfg, ['num_attention_heads', 'n_heads']) ?? 0;
  const kv = intOf(cfg, ['num_key_value_heads', 'n_kv_heads']) ?? heads;
  return { kind: 'rope-permute', heads: which === 'q' ? heads : kv };
}

/** The decoder layer Llama and Qwen2 share: separate q/k/v/o projections and a SiLU-gated MLP. */
const SWIGLU_DECODER: ModuleRule[] = [
  { module: 'self_attn.q_proj', gguf: 'attn_q' },
  { module: 'self_attn.k_proj', gguf: 'attn_k' },
  { module: 'self_attn.v_proj', gguf: 'attn_v' },
  { module: 'self_attn.o_proj', gguf: 'attn_output' },
  { module: 'mlp.gate_proj', gguf: 'ffn_gate' },
  { module: 'mlp.up_proj', gguf: 'ffn_up' },
  { module: 'mlp.down_proj', gguf: 'ffn_down' },
];

function withLlamaHeadOrder(rules: ModuleRule[]): ModuleRule[] {
  const order: Record<string, 'q' | 'k'> = { 'self_attn.q_proj': 'q', 'self_attn.k_proj': 'k' };
  return rules.map((r) => {
    const which = order[r.module];
    return which ? { ...r, order: (cfg: Json) => llamaHeads(cfg, which) } : r;
  });
}

/**
 * HF module → GGUF tensor, per architecture (gguf-py tensor_mapping.py; the `# phi2`, `# falcon`,
 * `# llama-hf`, `# qwen2`, `# phi3` rows of `block_mappings_cfg`).
 */
const RULES: Record<GgufArchitecture, ArchitectureRules> = {
  phi2: {
    arch: 'phi2',
    layers: 'model.layers',
    modules: [
      { module: 'self_attn.q_proj', gguf: 'attn_q' },
      { module: 'self_attn.k_proj', gguf: 'attn_k' },
      { module: 'self_attn.v_proj', gguf: 'attn_v' },
      { module: 'self_attn.dense', gguf: 'attn_output' },
      { module: 'mlp.fc1', gguf: 'ffn_up' },
      { module: 'mlp.fc2', gguf: 'ffn_down' },
    ],
  },
  falcon: {
    arch: 'falcon',
    layers: 'transformer.h',
    modules: [
      { module: 'self_attention.query_key_value', gguf: 'attn_qkv', order: (cfg) => ({ kind: 'falcon-qkv', ...falconHeads(cfg) }) },
      { module: 'self_attention.dense', gguf: 'attn_output' },
      { module: 'mlp.dense_h_to_4h', gguf: 'ffn_up' },
      { module: 'mlp.dense_4h_to_h', gguf: 'ffn_down' },
    ],
  },
  // llama.cpp permutes Llama's q/k rows per head for its rotary layout; Qwen2 it takes as is.
  llama: { arch: 'llama', layers: 'model.layers', modules: withLlamaHeadOrder(SWIGLU_DECODER) },
  qwen2: { arch: 'qwen2', layers: 'model.layers', modules: SWIGLU_DECODER },
  phi3: {
    arch: 'phi3',
    layers: 'model.layers',
    modules: [
      { module: 'self_attn.qkv_proj', gguf: 'attn_qkv' },
      { module: 'self_attn.o_proj', gguf: 'attn_output' },
      { module: 'mlp.gate_up_proj', gguf: 'ffn_up' },
      { module: 'mlp.down_proj', gguf: 'ffn_down' },
    ],
  },
};

/** HF `architectures[0]` → llama.cpp architecture (convert_hf_to_gguf.py `@ModelBase.register`). */
const HF_ARCHITECTURES: Record<string, GgufArchitecture> = {
  PhiForCausalLM: 'phi2',
  FalconForCausalLM: 'falcon',
  RWForCausalLM: 'falcon',
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Phi3ForCausalLM: 'phi3',
};
const MODEL_TYPES: Record<string, GgufArchitecture> = { phi: 'phi2', falcon: 'falcon', RefinedWeb: 'falcon', RefinedWebModel: 'falcon', llama: 'llama', qwen2: 'qwen2', phi3: 'phi3' };

/** llama.cpp's architecture for a base config.json, or null when it is not one we export. */
export function ggufArchitecture(baseConfig: Json): GgufArchitecture | null {
  const archs = baseConfig.architectures;
  if (Array.isArray(archs) && typeof archs[0] === 'string') return HF_ARCHITECTURES[archs[0]] ?? null;
  return typeof baseConfig.model_type === 'string' ? (MODEL_TYPES[baseConfig.model_type] ?? null) : null;
}

/** Whether lm_head shares the embedding matrix (PretrainedConfig's default is tied). */
function tiedLmHead(baseConfig: Json): boolean {
  return baseConfig.tie_word_embeddings !== false;
}

/** One adapted module: its PEFT keys, its GGUF names and how lora_b's rows move. */
export interface LoraNameMapEntry {
  /** HF module path, e.g. `model.layers.0.self_attn.q_proj`. */
  module: string;
  peftA: string;
  peftB: string;
  ggufA: string;
  ggufB: string;
  order: RowOrder;
  shapeA: [number, number];
  shapeB: [number, number];
}

/** The tensors of an adapter: a SafetensorsFile, or anything that reads tensors one at a time. */
export interface AdapterTensors {
  readonly names: string[];
  info(name: string): Pick<TensorInfo, 'dtype' | 'shape'>;
  f32(name: string): Float32Array | Promise<Float32Array>;
}

const LORA_KEY = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/;

export class GgufLoraError extends Error {
  constructor(readonly refusals: string[]) {
    super(`the adapter cannot be exported as a llama.cpp LoRA adapter:\n- ${refusals.join('\n- ')}`);
    this.name = 'GgufLoraError';
  }
}

function parseJson(source: string | Json, file: string): Json {
  if (typeof source !== 'string') return source;
  try {
    const v = JSON.parse(source) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Json;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  throw new Error(`${file}: not a JSON object`);
}

interface Planned {
  arch: GgufArchitecture | null;
  entries: LoraNameMapEntry[];
  refusals: string[];
}

function plan(adapterConfig: Json, tensors: AdapterTensors, baseConfig: Json): Planned {
  const refusals: string[] = [];
  const arch = ggufArchitecture(baseConfig);
  if (!arch) {
    const named = Array.isArray(baseConfig.architectures) ? baseConfig.architectures[0] : baseConfig.model_type;
    refusals.push(`config.json: architecture ${JSON.stringify(named)} has no llama.cpp LoRA mapping here (supported: ${Object.keys(HF_ARCHITECTURES).join(', ')})`);
  }
  const cfg = adapterConfig;
  const file = 'adapter_config.json';
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') refusals.push(`${file}: "peft_type" = ${JSON.stringify(cfg.peft_type)}; llama.cpp loads LoRA adapters only`);
  if (typeof cfg.r !== 'number' || !Number.isInteger(cfg.r) || cfg.r <= 0) refusals.push(`${file}: "r" must be a positive integer, found ${JSON.stringify(cfg.r)}`);
  if (typeof (cfg.lora_alpha ?? 8) !== 'number') refusals.push(`${file}: "lora_alpha" must be a number, found ${JSON.stringify(cfg.lora_alpha)}`);
  if (cfg.use_rslora === true) refusals.push(`${file}: "use_rslora" is true; llama.cpp scales every adapter by alpha / r, not rsLoRA's alpha / √r`);
  for (const k of ['rank_pattern', 'alpha_pattern']) {
    const v = cfg[k];
    if (v && typeof v === 'object' && Object.keys(v).length) refusals.push(`${file}: "${k}" has per-module entries; a llama.cpp adapter has one alpha and one rank scale for all modules`);
  }
  if (cfg.use_dora === true) refusals.push(`${file}: "use_dora" is true; llama.cpp has no DoRA magnitude vectors`);
  if (cfg.fan_in_fan_out === true) refusals.push(`${file}: "fan_in_fan_out" is true; the converter expects nn.Linear-shaped LoRA weights`);
  if ((cfg.bias ?? 'none') !== 'none') refusals.push(`${file}: "bias" = ${JSON.stringify(cfg.bias)}; llama.cpp adapters carry no trained biases`);
  if (Array.isArray(cfg.modules_to_save) && cfg.modules_to_save.length) refusals.push(`${file}: "modules_to_save" lists ${JSON.stringify(cfg.modules_to_save)}; llama.cpp adapters carry no fully trained modules`);

  const rules = arch ? RULES[arch] : null;
  const layerCount = intOf(baseConfig, ['num_hidden_layers', 'n_layer', 'n_layers']);
  const pairs = new Map<string, { a?: string; b?: string }>();
  for (const name of tensors.names) {
    const m = LORA_KEY.exec(name);
    if (!m) {
      const what = /bias$/.test(name)
        ? 'a bias'
        : /(norm|layernorm|ln_f|ln_\d)/i.test(name)
          ? 'a norm'
          : /lora_embedding|embed|wte|word_embeddings/.test(name)
            ? 'an embedding'
            : 'not a lora_A / lora_B weight';
      refusals.push(`adapter_model.safetensors: tensor "${name}" is ${what}; llama.cpp adapters hold LoRA pairs on linear layers only`);
      continue;
    }
    const p = pairs.get(m[1]) ?? {};
    if (m[2] === 'A') p.a = name;
    else p.b = name;
    pairs.set(m[1], p);
  }

  const entries: LoraNameMapEntry[] = [];
  for (const [module, p] of pairs) {
    if (!p.a || !p.b) {
      refusals.push(`adapter_model.safetensors: module "${module}" has lora_${p.a ? 'A' : 'B'} but no lora_${p.a ? 'B' : 'A'}`);
      continue;
    }
    const lmHead = module === 'lm_head';
    if (lmHead && tiedLmHead(baseConfig)) {
      refusals.push(`adapter_model.safetensors: LoRA on "${module}", which shares the embedding matrix (tie_word_embeddings); llama.cpp has no separate output tensor to adapt`);
      continue;
    }
    if (/(embed_tokens|word_embeddings|wte)$/.test(module)) {
      refusals.push(`adapter_model.safetensors: LoRA on the embedding "${module}" is not exported`);
      continue;
    }
    if (/(norm|layernorm|ln_f)$/i.test(module)) {
      refusals.push(`adapter_model.safetensors: LoRA on the norm "${module}"; llama.cpp applies LoRA to matrix weights only`);
      continue;
    }
    if (!rules) continue;
    const sa = tensors.info(p.a).shape;
    const sb = tensors.info(p.b).shape;
    if (sa.length !== 2 || sb.length !== 2 || sa[0] !== sb[1]) {
      refusals.push(`adapter_model.safetensors: module "${module}": lora_A [${sa.join(', ')}] and lora_B [${sb.join(', ')}] are not a rank-r pair`);
      continue;
    }
    if (typeof cfg.r === 'number' && sa[0] !== cfg.r) {
      refusals.push(`adapter_model.safetensors: module "${module}" has rank ${sa[0]}, adapter_config.json says r = ${cfg.r}; llama.cpp would scale it by alpha / ${sa[0]}`);
      continue;
    }
    if (lmHead) {
      // An untied lm_head is llama.cpp's `output` (tensor_mapping.py MODEL_TENSOR.OUTPUT).
      entries.push({ module, peftA: p.a, peftB: p.b, ggufA: 'output.weight.lora_a', ggufB: 'output.weight.lora_b', order: { kind: 'same' }, shapeA: [sa[0], sa[1]], shapeB: [sb[0], sb[1]] });
      continue;
    }
    const lm = new RegExp(`^${rules.layers.replace(/\./g, '\\.')}\\.(\\d+)\\.(.+)$`).exec(module);
    const rule = lm ? rules.modules.find((r) => r.module === lm[2]) : undefined;
    if (!lm || !rule) {
      refusals.push(`adapter_model.safetensors: module "${module}" has no ${rules.arch} tensor in llama.cpp's name map (adaptable: ${rules.modules.map((r) => r.module).join(', ')})`);
      continue;
    }
    const block = Number(lm[1]);
    if (layerCount !== undefined && block >= layerCount) {
      refusals.push(`adapter_model.safetensors: module "${module}" is in layer ${block}, but the base model has ${layerCount} layers`);
      continue;
    }
    let order: RowOrder = { kind: 'same' };
    try {
      order = rule.order ? rule.order(baseConfig) : order;
    } catch (err) {
      refusals.push((err as Error).message);
      continue;
    }
    const rowsNeeded = order.kind === 'falcon-qkv' ? (order.heads + 2 * order.kvHeads) * order.headDim : null;
    if (rowsNeeded !== null && sb[0] !== rowsNeeded) {
      refusals.push(`adapter_model.safetensors: module "${module}": lora_B has ${sb[0]} rows, falcon's query_key_value with ${order.kind === 'falcon-qkv' ? `${order.heads} heads and ${order.kvHeads} K/V heads` : ''} has ${rowsNeeded}`);
      continue;
    }
    if (order.kind === 'rope-permute' && (order.heads <= 0 || sb[0] % (2 * order.heads) !== 0)) {
      refusals.push(`adapter_model.safetensors: module "${module}": lora_B's ${sb[0]} rows do not split into ${order.heads} heads of rotary pairs`);
      continue;
    }
    const base = `blk.${block}.${rule.gguf}.weight`;
    entries.push({ module, peftA: p.a, peftB: p.b, ggufA: `${base}.lora_a`, ggufB: `${base}.lora_b`, order, shapeA: [sa[0], sa[1]], shapeB: [sb[0], sb[1]] });
  }
  if (!entries.length && !refusals.length) refusals.push('adapter_model.safetensors: no LoRA pair to export');
  // Layer by layer, in the architecture's module order, like the base model's own tensors.
  if (rules) {
    const key = (e: LoraNameMapEntry) => {
      const m = /^blk\.(\d+)\.([a-z_]+)\./.exec(e.ggufA);
      return m ? Number(m[1]) * 100 + rules.modules.findIndex((r) => r.gguf === m[2]) : Number.MAX_SAFE_INTEGER;
    };
    entries.sort((x, y) => key(x) - key(y));
  }
  return { arch, entries, refusals };
}

/**
 * Why llama.cpp cannot take this adapter, one sentence each (empty when it can): shown before
 * the user downloads.
 */
export function ggufRefusals(adapterConfig: string | Json, tensors: AdapterTensors, baseConfig: Json): string[] {
  return plan(parseJson(adapterConfig, 'adapter_config.json'), tensors, baseConfig).refusals;
}

/** lora_b's rows in the converter's order (see RowOrder). `b` is [rows, r] row-major. */
export function reorderLoraB(b: Float32Array, rows: number, r: number, order: RowOrder): Float32Array {
  if (order.kind === 'same') return b;
  const out = new Float32Array(b.length);
  const copyRow = (to: number, from: number) => out.set(b.subarray(from * r, from * r + r), to * r);
  if (order.kind === 'rope-permute') {
    // reshape(n_head, 2, d/2, r).swapaxes(1, 2): new row h·d + 2j + t ← old row h·d + t·d/2 + j.
    const d = rows / order.heads;
    for (let h = 0; h < order.heads; h++) {
      for (let j = 0; j < d / 2; j++) for (let t = 0; t < 2; t++) copyRow(h * d + 2 * j + t, h * d + t * (d / 2) + j);
    }
    return out;
  }
  // view(n_kv, n_head/n_kv + 2, d, r): queries of every group, then every group's key, then its value.
  const { heads, kvHeads, headDim: d } = order;
  const perGroup = heads / kvHeads + 2;
  let to = 0;
  const copyHead = (group: number, slot: number) => {
    for (let i = 0; i < d; i++) copyRow(to++, (group * perGroup + slot) * d + i);
  };
  for (let g = 0; g < kvHeads; g++) for (let q = 0; q < perGroup - 2; q++) copyHead(g, q);
  for (let g = 0; g < kvHeads; g++) copyHead(g, perGroup - 2);
  for (let g = 0; g < kvHeads; g++) copyHead(g, perGroup - 1);
  return out;
}

export interface GgufLoraOptions {
  /** general.name; the base model's name by default. */
  name?: string;
  /** F32 (the converter's default) or F16. */
  tensorType?: GgmlTypeName;
}

export interface GgufLoraExport {
  architecture: GgufArchitecture;
  alpha: number;
  metadata: GgufKeyValue[];
  tensors: GgufTensor[];
  nameMap: LoraNameMapEntry[];
  /** Header and sizes, known before any tensor is read. */
  layout: GgufLayout;
}

/**
 * The GGUF adapter's metadata and tensors (values read one tensor at a time when written with
 * `ggufChunks`). Throws GgufLoraError with every refusal when llama.cpp cannot take the adapter.
 */
export function ggufLoraAdapter(adapterConfigSource: string | Json, tensors: AdapterTensors, baseConfig: Json, options: GgufLoraOptions = {}): GgufLoraExport {
  const adapterConfig = parseJson(adapterConfigSource, 'adapter_config.json');
  const { arch, entries, refusals } = plan(adapterConfig, tensors, baseConfig);
  if (refusals.length || !arch) throw new GgufLoraError(refusals);
  const alpha = (adapterConfig.lora_alpha as number | undefined) ?? 8;
  const type = options.tensorType ?? 'F32';
  const baseName = typeof adapterConfig.base_model_name_or_path === 'string' && adapterConfig.base_model_name_or_path ? adapterConfig.base_model_name_or_path : String(baseConfig._name_or_path ?? arch);
  const metadata: GgufKeyValue[] = [
    { key: 'general.architecture', value: { type: 'string', value: arch } },
    { key: 'general.type', value: { type: 'string', value: 'adapter' } },
    { key: 'adapter.type', value: { type: 'string', value: 'lora' } },
    { key: 'general.name', value: { type: 'string', value: options.name ?? baseName } },
    { key: 'adapter.lora.alpha', value: { type: 'f32', value: alpha } },
    { key: 'general.quantization_version', value: { type: 'u32', value: 2 } },
    { key: 'general.alignment', value: { type: 'u32', value: GGUF_DEFAULT_ALIGNMENT } },
  ];
  const out: GgufTensor[] = [];
  for (const e of entries) {
    out.push({ name: e.ggufA, type, shape: [...e.shapeA], values: () => tensors.f32(e.peftA) });
    out.push({
      name: e.ggufB,
      type,
      shape: [...e.shapeB],
      values: async () => reorderLoraB(await tensors.f32(e.peftB), e.shapeB[0], e.shapeB[1], e.order),
    });
  }
  return { architecture: arch, alpha, metadata, tensors: out, nameMap: entries, layout: ggufLayout(metadata, out) };
}
