/**
 * The adapter's README.md as the Hugging Face hub reads it: YAML front matter (`base_model`,
 * `library_name: peft`, `pipeline_tag`, `tags`) and a body with the base model and its commit,
 * the LoRA and training settings, the data fingerprint and the final losses. Also the rule that
 * names the base model in adapter_config.json (`base_model_name_or_path`).
 */

/** Where the base model came from. */
export type BaseModelOrigin =
  | { kind: 'hub'; id: string }
  /** A model the studio ships (the demo): not on the hub. */
  | { kind: 'bundled'; name: string }
  /** A dropped folder: its name and its parsed config.json. */
  | { kind: 'folder'; folderName: string; config?: Record<string, unknown> | null };

export interface BaseModelName {
  /** What adapter_config.json's `base_model_name_or_path` says. */
  name: string;
  /** The hub id the base can be loaded from, when there is one. */
  hubId: string | null;
  /** The weights came from a local folder (or the studio), not from the hub. */
  local: boolean;
}

/**
 * A hub repo id in its `namespace/name` form (huggingface_hub's `validate_repo_id`: letters,
 * digits, `-`, `_`, `.`, at most 96 characters a part, no `--` or `..`, not ending in `.git`).
 * A bare name is not taken for one: for a config's `_name_or_path` it is far more often a local
 * folder than a legacy namespace-less hub id.
 */
export function isHubId(value: string): boolean {
  const m = /^([A-Za-z0-9][\w.-]{0,95})\/([A-Za-z0-9][\w.-]{0,95})$/.exec(value);
  if (!m) return false;
  return !/--|\.\./.test(value) && !value.endsWith('.git') && !/[.-]$/.test(m[1]) && !/[.-]$/.test(m[2]);
}

/**
 * `base_model_name_or_path` for the adapter: the hub id; for a dropped folder its config's
 * `_name_or_path` when that is a hub id, otherwise the folder's name (never an absolute path).
 */
export function baseModelName(origin: BaseModelOrigin): BaseModelName {
  switch (origin.kind) {
    case 'hub':
      if (!isHubId(origin.id) && !/^[A-Za-z0-9][\w.-]*$/.test(origin.id)) throw new Error(`base model: "${origin.id}" is not a hub repo id`);
      return { name: origin.id, hubId: origin.id, local: false };
    case 'bundled':
      return { name: origin.name, hubId: null, local: true };
    case 'folder': {
      const declared = origin.config?._name_or_path;
      if (typeof declared === 'string' && isHubId(declared)) return { name: declared, hubId: declared, local: true };
      const folder = origin.folderName.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? '';
      if (!folder) throw new Error('base model: the dropped folder has no name');
      return { name: folder, hubId: null, local: true };
    }
    default:
      throw new Error(`base model: unknown origin ${JSON.stringify((origin as { kind: unknown }).kind)}`);
  }
}

export interface ModelCardInput {
  base: BaseModelName;
  /** The commit of the base the run trained on. */
  revision: string | null;
  /** llama.cpp's or transformers' architecture name, shown in the card. */
  architecture?: string;
  lora: { r: number; alpha: number; dropout: number; targetModules: string[] | string; useRslora?: boolean };
  /** Training settings as the run used them; absent fields are "not recorded". */
  training?: {
    /** How the base's weights were held while training: NF4 (QLoRA; assumed when absent) or not quantized (plain LoRA). */
    baseQuantization?: 'nf4' | 'none';
    learningRate?: number;
    schedule?: string;
    warmupRatio?: number;
    epochs?: number;
    steps?: number;
    microBatch?: number;
    gradAccumulation?: number;
    maxLength?: number;
    seed?: number;
    weightDecay?: number;
    maxGradNorm?: number;
  };
  data?: {
    /** File name or hub dataset id. */
    name: string;
    /** A digest of the data bytes, e.g. `crc32:1a2b3c4d` or `sha256:…`. */
    fingerprint: string;
    /** A hub dataset id, listed under `datasets` in the front matter. */
    hubDataset?: string;
    template?: string;
    trainExamples?: number;
    validationExamples?: number;
  };
  results?: { finalTrainLoss?: number | null; finalEvalLoss?: number | null; steps?: number };
  /** Files beside the adapter (GGUF, Modelfile), listed in the card. */
  extraFiles?: string[];
  /**
   * A merged model instead of an adapter: which weights the delta went into (the original 16-bit
   * checkpoint, or the NF4 base dequantized when the original was out of reach) and the dtype.
   */
  merged?: { into: 'original' | 'dequantized-nf4'; dtype: string };
}

/** A YAML scalar: JSON's double-quoted strings are valid YAML. */
const yaml = (value: string) => JSON.stringify(value);

function fmt(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'not recorded';
  return String(Number(value.toPrecision(digits)));
}

/** The README.md text. */
export function modelCard(input: ModelCardInput): string {
  const { base, revision, lora } = input;
  const merged = input.merged;
  const relation = merged ? 'merge' : 'adapter';
  // Only a run on the NF4 base is QLoRA; plain LoRA trained on the unquantized base.
  const qlora = (input.training?.baseQuantization ?? 'nf4') === 'nf4';
  const tags = [...(merged ? ['merge'] : ['peft']), 'lora', ...(qlora ? ['qlora'] : []), 'qlora-studio', 'text-generation'];
  if (base.hubId) tags.unshift(`base_model:${merged ? 'merge' : 'adapter'}:${base.hubId}`);
  const front = [
    '---',
    ...(base.hubId ? [`base_model: ${yaml(base.hubId)}`, `base_model_relation: ${relation}`] : []),
    `library_name: ${merged ? 'transformers' : 'peft'}`,
    'pipeline_tag: text-generation',
    'tags:',
    ...tags.map((t) => `- ${yaml(t)}`),
    ...(input.data?.hubDataset ? ['datasets:', `- ${yaml(input.data.hubDataset)}`] : []),
    '---',
  ];

  const baseLine = base.hubId
    ? `[${base.hubId}](https://huggingface.co/${base.hubId})${revision ? ` at commit \`${revision}\`` : ''}`
    : `\`${base.name}\``;
  const localNote = base.local
    ? base.hubId
      ? `The base weights were a local folder whose config names \`${base.hubId}\`; load that repo (at the same commit, if the folder was a copy of it) to use the adapter.`
      : `The base model is local: the folder \`${base.name}\`, not a hub repo. Keep a copy of it: the adapter only works on top of those exact weights.`
    : null;
  const t = input.training ?? {};
  const targets = Array.isArray(lora.targetModules) ? lora.targetModules.join(', ') : `regex \`${lora.targetModules}\``;
  const rows: [string, string][] = [
    ['LoRA rank r / alpha / dropout', `${lora.r} / ${lora.alpha} / ${lora.dropout}`],
    ['scale', lora.useRslora ? `alpha / √r = ${fmt(lora.alpha / Math.sqrt(lora.r))} (rsLoRA)` : `alpha / r = ${fmt(lora.alpha / lora.r)}`],
    ['target modules', targets],
    ['base weights during training', qlora ? 'NF4 with double quantization (QLoRA), blocksize 64' : 'not quantized: the checkpoint\'s values in float32 (plain LoRA)'],
    ['learning rate', fmt(t.learningRate)],
    ['schedule / warmup ratio', `${t.schedule ?? 'not recorded'} / ${fmt(t.warmupRatio)}`],
    ['optimizer', `AdamW, weight decay ${fmt(t.weightDecay)}, gradient clipping ${fmt(t.maxGradNorm)}`],
    ['epochs / steps', `${fmt(t.epochs)} / ${fmt(t.steps ?? input.results?.steps)}`],
    ['micro-batch × accumulation', `${fmt(t.microBatch)} × ${fmt(t.gradAccumulation)}`],
    ['sequence length', fmt(t.maxLength)],
    ['seed', fmt(t.seed)],
  ];
  const d = input.data;
  const r = input.results;
  const loadBase = base.hubId ? `"${base.hubId}"${revision ? `, revision="${revision}"` : ''}` : `"path/to/${base.name}"`;
  const lines = [
    ...front,
    '',
    merged ? `# ${base.hubId ?? base.name} with a LoRA adapter merged in` : `# LoRA adapter for ${base.hubId ?? base.name}`,
    '',
    merged
      ? `${baseLine}${input.architecture ? ` (${input.architecture})` : ''} with a LoRA adapter trained in QLoRA Studio merged in (W + scale·B·A), stored in ${merged.dtype}. ` +
        (merged.into === 'original'
          ? 'The delta was added to the original checkpoint weights.'
          : 'The original weights were out of reach: the delta was added to the NF4 base dequantized, so the weights carry the NF4 rounding.')
      : `A LoRA adapter trained with QLoRA Studio (${qlora ? 'QLoRA' : 'plain LoRA on the unquantized base'} in the browser on WebGPU) on ${baseLine}${input.architecture ? ` (${input.architecture})` : ''}.`,
    ...(localNote ? ['', localNote] : []),
    '',
    '## Training',
    '',
    '| setting | value |',
    '| --- | --- |',
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
    '',
    '## Data',
    '',
    ...(d
      ? [
          `- data: \`${d.name}\``,
          `- fingerprint: \`${d.fingerprint}\``,
          ...(d.template ? [`- prompt format: ${d.template}`] : []),
          `- examples: ${fmt(d.trainExamples)} training, ${fmt(d.validationExamples)} validation`,
        ]
      : ['- not recorded']),
    '',
    '## Results',
    '',
    `- final training loss: ${fmt(r?.finalTrainLoss)}`,
    `- final validation loss: ${fmt(r?.finalEvalLoss)}`,
    `- optimizer steps: ${fmt(r?.steps ?? t.steps)}`,
    '',
    '## Use',
    '',
    '```python',
    ...(merged
      ? ['from transformers import AutoModelForCausalLM', '', 'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder", torch_dtype="auto")']
      : ['from peft import PeftModel', 'from transformers import AutoModelForCausalLM', '', `base = AutoModelForCausalLM.from_pretrained(${loadBase})`, 'model = PeftModel.from_pretrained(base, "path/to/this/adapter")']),
    '```',
    ...(input.extraFiles?.length ? ['', 'Also in this folder: ' + input.extraFiles.map((f) => `\`${f}\``).join(', ') + '.'] : []),
    '',
  ];
  return lines.join('\n');
}
