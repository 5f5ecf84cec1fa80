/**
 * recipes/ of a run bundle: the same run for other tools — the base, data/train.jsonl and
 * data/validation.jsonl, the template, the LoRA settings, the schedule and the seed — starting
 * from the adapter the run reached (where the tool can take one). Each names the version of the
 * tool its keys were checked against (tests/interop/recipes.test.ts holds the key lists and
 * where they come from). Paths are relative to the bundle folder, the folder the tools run in.
 */
import type { RunJson } from './run-json';

export const RECIPE_VERSIONS = { trl: '1.9.0', llamafactory: '0.9.5', axolotl: '0.18.0' } as const;

type Yaml = string | number | boolean | null | Yaml[] | { [key: string]: Yaml };

/** YAML of plain data: strings as JSON strings (valid YAML scalars), maps and lists in block style. */
export function toYaml(value: Yaml, indent = ''): string {
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return value.map((v) => `\n${indent}- ${isBlock(v) ? toYaml(v, `${indent}  `).trimStart() : toYaml(v, `${indent}  `)}`).join('');
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (!entries.length) return '{}';
    return entries.map(([k, v]) => `\n${indent}${k}:${isBlock(v) ? toYaml(v, `${indent}  `) : ` ${toYaml(v, indent)}`}`).join('');
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new Error(`recipe: ${value} has no YAML form`);
  return JSON.stringify(value);
}

function isBlock(v: Yaml): boolean {
  return v !== null && typeof v === 'object' && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
}

function yamlFile(header: string[], body: { [key: string]: Yaml }): string {
  return `${header.map((h) => `# ${h}`.trimEnd()).join('\n')}${toYaml(body)}\n`;
}

/** Chat data renders with the model's own chat template; prompt/completion rows are already laid out. */
function isChat(run: RunJson): boolean {
  return run.data.template === 'chat';
}

function revisionOf(run: RunJson): string | null {
  return run.base.commit ?? run.base.revision ?? null;
}

/** LLaMA-Factory's template for a model type (chat data); laid-out rows take `empty` (no formatting). */
const LLAMAFACTORY_TEMPLATES: Record<string, string> = {
  llama: 'llama3',
  qwen2: 'qwen',
  qwen3: 'qwen3',
  mistral: 'mistral',
  gemma: 'gemma',
  gemma2: 'gemma2',
  phi3: 'phi',
  falcon: 'falcon',
};

function llamafactoryTemplate(run: RunJson): string {
  if (!isChat(run)) return 'empty';
  return LLAMAFACTORY_TEMPLATES[String(run.base.config.model_type ?? '')] ?? 'default';
}

/** The training-loop settings every tool shares, in transformers' TrainingArguments words. */
function trainingArguments(run: RunJson, outputDir: string): { [key: string]: Yaml } {
  const s = run.settings;
  const evalEvery = run.intervals.eval_every;
  return {
    output_dir: outputDir,
    seed: run.seed,
    max_steps: run.schedule.total_steps,
    per_device_train_batch_size: s.batchSize,
    per_device_eval_batch_size: s.batchSize,
    gradient_accumulation_steps: s.gradAccum,
    learning_rate: run.schedule.learning_rate,
    lr_scheduler_type: run.schedule.name,
    warmup_steps: run.schedule.warmup_steps,
    optim: 'adamw_torch',
    adam_beta1: run.optimizer.beta1,
    adam_beta2: run.optimizer.beta2,
    adam_epsilon: run.optimizer.eps,
    weight_decay: run.optimizer.weight_decay,
    max_grad_norm: run.optimizer.max_grad_norm,
    eval_strategy: evalEvery > 0 ? 'steps' : 'no',
    ...(evalEvery > 0 ? { eval_steps: evalEvery } : {}),
    save_strategy: 'steps',
    save_steps: run.intervals.checkpoint_every > 0 ? run.intervals.checkpoint_every : run.schedule.total_steps,
    logging_steps: 1,
    report_to: 'none',
  };
}

function nf4(run: RunJson): boolean {
  return run.quantization.type === 'nf4';
}

/** `trl sft --config recipes/trl-sft.yaml`: ScriptArguments, SFTConfig (TrainingArguments) and ModelConfig keys. */
export function trlSftRecipe(run: RunJson): string {
  const revision = revisionOf(run);
  return yamlFile(
    [
      `TRL ${RECIPE_VERSIONS.trl}: trl sft --config recipes/trl-sft.yaml   (from the bundle folder)`,
      'Same base, data, LoRA settings, schedule and seed as the studio run. `trl sft` creates its LoRA from',
      'these settings and has no key to start from an existing adapter: README.md shows the few lines of',
      'Python that hand SFTTrainer the adapter/ of this bundle (PeftModel.from_pretrained, is_trainable=True).',
      'The dataset is the data/ folder: train.jsonl and validation.jsonl are its train and validation splits.',
    ],
    {
      model_name_or_path: run.base.id,
      ...(revision ? { model_revision: revision } : {}),
      dtype: 'bfloat16',
      use_peft: true,
      lora_r: run.lora.r,
      lora_alpha: run.lora.lora_alpha,
      lora_dropout: run.lora.lora_dropout,
      lora_target_modules: run.lora.target_modules,
      ...(nf4(run) ? { load_in_4bit: true, bnb_4bit_quant_type: 'nf4', use_bnb_nested_quant: run.quantization.type === 'nf4' && run.quantization.double_quant } : {}),
      dataset_name: 'data',
      dataset_train_split: 'train',
      dataset_test_split: 'validation',
      max_length: run.data.seq_length,
      packing: false,
      ...(isChat(run) ? {} : { completion_only_loss: true }),
      ...trainingArguments(run, 'trl-output'),
    },
  );
}

/** `llamafactory-cli train recipes/llamafactory.yaml`, continuing adapter/ (create_new_adapter false). */
export function llamafactoryRecipe(run: RunJson): string {
  const revision = revisionOf(run);
  return yamlFile(
    [
      `LLaMA-Factory ${RECIPE_VERSIONS.llamafactory}: llamafactory-cli train recipes/llamafactory.yaml   (from the bundle folder)`,
      'Trains on from the adapter the studio run reached (adapter_name_or_path, create_new_adapter: false),',
      'with its data (recipes/dataset_info.json names data/train.jsonl and data/validation.jsonl), LoRA',
      'settings, schedule and seed.',
    ],
    {
      model_name_or_path: run.base.id,
      ...(revision ? { model_revision: revision } : {}),
      adapter_name_or_path: 'adapter',
      stage: 'sft',
      do_train: true,
      finetuning_type: 'lora',
      create_new_adapter: false,
      lora_rank: run.lora.r,
      lora_alpha: run.lora.lora_alpha,
      lora_dropout: run.lora.lora_dropout,
      lora_target: run.lora.target_modules.join(','),
      ...(nf4(run) ? { quantization_method: 'bnb', quantization_bit: 4, quantization_type: 'nf4', double_quantization: run.quantization.type === 'nf4' && run.quantization.double_quant } : {}),
      dataset_dir: 'recipes',
      dataset: 'studio_train',
      eval_dataset: 'studio_validation',
      template: llamafactoryTemplate(run),
      cutoff_len: run.data.seq_length,
      ...trainingArguments(run, 'llamafactory-output'),
    },
  );
}

/** recipes/dataset_info.json: the bundle's two splits as LLaMA-Factory datasets (paths relative to dataset_dir). */
export function llamafactoryDatasetInfo(run: RunJson): string {
  const entry = (file: string) =>
    isChat(run)
      ? {
          file_name: `../data/${file}`,
          formatting: 'sharegpt',
          columns: { messages: 'messages' },
          tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', system_tag: 'system' },
        }
      : { file_name: `../data/${file}`, formatting: 'alpaca', columns: { prompt: 'prompt', response: 'completion' } };
  return JSON.stringify({ studio_train: entry('train.jsonl'), studio_validation: entry('validation.jsonl') }, null, 2) + '\n';
}

/** `axolotl train recipes/axolotl.yaml`, continuing adapter/ (lora_model_dir). */
export function axolotlRecipe(run: RunJson): string {
  const revision = revisionOf(run);
  const s = run.settings;
  const dataset = (file: string): { [key: string]: Yaml } => ({
    path: `data/${file}`,
    ds_type: 'json',
    split: 'train',
    ...(isChat(run)
      ? { type: 'chat_template', field_messages: 'messages', message_property_mappings: { role: 'role', content: 'content' } }
      : { type: { field_instruction: 'prompt', field_output: 'completion', format: '{instruction}', no_input_format: '{instruction}' } }),
  });
  return yamlFile(
    [
      `axolotl ${RECIPE_VERSIONS.axolotl}: axolotl train recipes/axolotl.yaml   (from the bundle folder)`,
      'Trains on from the adapter the studio run reached (lora_model_dir), with its data, LoRA settings,',
      'schedule and seed; the prompt is not learned (train_on_inputs: false), as in the studio.',
    ],
    {
      base_model: run.base.id,
      ...(revision ? { model_revision: revision } : {}),
      adapter: nf4(run) ? 'qlora' : 'lora',
      ...(nf4(run) ? { load_in_4bit: true } : {}),
      lora_model_dir: 'adapter',
      lora_r: run.lora.r,
      lora_alpha: run.lora.lora_alpha,
      lora_dropout: run.lora.lora_dropout,
      lora_target_modules: run.lora.target_modules,
      ...(isChat(run) ? { chat_template: 'tokenizer_default' } : {}),
      datasets: [dataset('train.jsonl')],
      test_datasets: [dataset('validation.jsonl')],
      dataset_prepared_path: 'axolotl-prepared',
      val_set_size: 0,
      sequence_len: run.data.seq_length,
      sample_packing: false,
      train_on_inputs: false,
      micro_batch_size: s.batchSize,
      gradient_accumulation_steps: s.gradAccum,
      max_steps: run.schedule.total_steps,
      learning_rate: run.schedule.learning_rate,
      lr_scheduler: run.schedule.name,
      warmup_steps: run.schedule.warmup_steps,
      optimizer: 'adamw_torch',
      adam_beta1: run.optimizer.beta1,
      adam_beta2: run.optimizer.beta2,
      adam_epsilon: run.optimizer.eps,
      weight_decay: run.optimizer.weight_decay,
      max_grad_norm: run.optimizer.max_grad_norm,
      seed: run.seed,
      ...(run.intervals.eval_every > 0 ? { eval_steps: run.intervals.eval_every } : {}),
      save_steps: run.intervals.checkpoint_every > 0 ? run.intervals.checkpoint_every : run.schedule.total_steps,
      logging_steps: 1,
      bf16: 'auto',
      output_dir: 'axolotl-output',
    },
  );
}
