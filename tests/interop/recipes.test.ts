/**
 * The run bundle's recipes/ parse as the tools read them (YAML, JSON) and every key is one the
 * named version of its tool declares. The key lists below are copied from the sources of those
 * versions (git tags of the projects' repositories; file and class named above each list);
 * transformers' TrainingArguments fields, optimizer and scheduler names come live from the
 * transformers of ../shared/pyref (4.44.0) — the recipes use only long-standing ones (TRL 1.9.0
 * requires transformers ≥ 4.56.2, LLaMA-Factory 0.9.5 ≥ 4.55.0; both subclass TrainingArguments).
 * Also: the accelerate configurations parse and name the settings the FSDP-QLoRA documentation
 * asks for. Skipped, with a message, where ../shared/pyref (Python with PyYAML) is absent.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { bundleAssets } from '../../workers/export/run-bundle/assets';
import { RECIPE_VERSIONS } from '../../workers/export/run-bundle/recipes';
import type { RunJson } from '../../workers/export/run-bundle/run-json';
import { runSettings } from '../../workers/run/settings';
import { HAVE_PYREF, PYREF, lastJson, python, pyrefEnv } from './pyref';

if (!HAVE_PYREF) console.warn(`recipes-interop: skipped, ${PYREF} (the Python reference stack) is not here`);

const words = (...lists: string[]) => new Set(lists.join(' ').split(/\s+/).filter(Boolean));

/** TRL v1.9.0 (github.com/huggingface/trl, tag v1.9.0): the dataclasses `trl sft` parses (trl/scripts/sft.py make_parser). */
const TRL_KEYS = words(
  // trl/trainer/model_config.py: ModelConfig
  'model_name_or_path model_revision dtype attn_implementation use_peft lora_r lora_alpha lora_dropout lora_target_modules lora_target_parameters lora_modules_to_save lora_task_type use_rslora use_dora load_in_8bit load_in_4bit bnb_4bit_quant_type use_bnb_nested_quant bnb_4bit_quant_storage',
  // trl/trainer/sft_config.py: SFTConfig (its own fields; the rest are TrainingArguments')
  'learning_rate model_init_kwargs router_aux_loss_coef trust_remote_code chat_template_path dataset_text_field dataset_kwargs dataset_num_proc eos_token max_length truncation_mode shuffle_dataset packing packing_strategy padding_free pad_to_multiple_of eval_packing completion_only_loss assistant_only_loss loss_type activation_offloading pad_token',
  // trl/scripts/utils.py: ScriptArguments
  'dataset_name dataset_config dataset_train_split dataset_test_split dataset_streaming ignore_bias_buffers',
  // trl/trainer/base_config.py: _BaseConfig (TrainingArguments fields it overrides)
  'logging_steps gradient_checkpointing bf16 lr_scheduler_kwargs use_liger_kernel torch_empty_cache_steps',
  // trl/scripts/utils.py: DatasetMixtureConfig
  'datasets streaming test_split_size',
);

/** LLaMA-Factory v0.9.5 (github.com/hiyouga/LLaMA-Factory, tag v0.9.5): src/llamafactory/hparams/*.py. */
const LLAMAFACTORY_KEYS = words(
  // model_args.py: BaseModelArguments
  'model_name_or_path adapter_name_or_path adapter_folder cache_dir use_fast_tokenizer resize_vocab split_special_tokens add_tokens add_special_tokens new_special_tokens_config init_special_tokens model_revision low_cpu_mem_usage rope_scaling flash_attn shift_attn mixture_of_depths use_unsloth use_unsloth_gc enable_liger_kernel moe_aux_loss_coef disable_gradient_checkpointing use_reentrant_gc upcast_layernorm upcast_lmhead_output train_from_scratch infer_backend offload_folder use_kv_cache use_v1_kernels infer_dtype hf_hub_token ms_hub_token om_hub_token print_param_status trust_remote_code',
  // model_args.py: QuantizationArguments, ModelArguments
  'quantization_method quantization_bit quantization_type double_quantization quantization_device_map',
  'compute_dtype device_map model_max_length block_diag_attn',
  // data_args.py: DataArguments
  'template dataset eval_dataset dataset_dir media_dir cutoff_len train_on_prompt mask_history streaming buffer_size mix_strategy interleave_probs overwrite_cache preprocessing_batch_size preprocessing_num_workers max_samples eval_num_beams ignore_pad_token_for_loss val_size eval_on_each_dataset packing neat_packing tool_format default_system enable_thinking preserve_thinking tokenized_path data_shared_file_system',
  // finetuning_args.py: LoraArguments, FinetuningArguments
  'additional_target lora_alpha lora_dropout lora_rank lora_target loraplus_lr_ratio loraplus_lr_embedding use_rslora use_dora pissa_init pissa_iter pissa_convert create_new_adapter',
  'pure_bf16 stage finetuning_type use_llama_pro use_adam_mini use_mca use_hyper_parallel hyper_parallel_args use_muon use_dft_loss use_asft_loss asft_alpha use_eaft_loss eaft_alpha freeze_vision_tower freeze_multi_modal_projector freeze_language_model compute_accuracy disable_shuffling early_stopping_steps plot_loss include_effective_tokens_per_second',
  // training_args.py: TrainingArguments (its own field; it subclasses transformers' Seq2SeqTrainingArguments)
  'overwrite_output_dir',
);
/** LLaMA-Factory v0.9.5 src/llamafactory/data/template.py: the register_template names the recipes may pick. */
const LLAMAFACTORY_TEMPLATES = words('empty default llama3 qwen qwen3 mistral gemma gemma2 phi falcon');
/** LLaMA-Factory v0.9.5 data/README.md: the keys of a dataset_info.json entry, its columns and tags. */
const DATASET_INFO_KEYS = words('hf_hub_url ms_hub_url script_url cloud_file_name file_name formatting ranking subset split folder num_samples columns tags');
const DATASET_INFO_COLUMNS = words('prompt query response history messages system tools images videos audios chosen rejected kto_tag');
const DATASET_INFO_TAGS = words('role_tag content_tag user_tag assistant_tag observation_tag function_tag system_tag');

/** axolotl v0.18.0 (github.com/axolotl-ai-cloud/axolotl, tag v0.18.0): src/axolotl/utils/schemas/. */
const AXOLOTL_KEYS = words(
  // model.py: ModelInputConfig, ModelOutputConfig
  'base_model base_model_config cls_model_config tokenizer_config tokenizer_use_fast tokenizer_legacy tokenizer_use_mistral_common tokenizer_type processor_type processor_kwargs tokenizer_save_jinja_files trust_remote_code experimental_skip_move_to_device use_kernels model_quantization_config model_quantization_config_kwargs use_onebitllms',
  'output_dir hub_model_id hub_strategy hub_revision save_safetensors',
  // deprecated.py: RemappedParameters.revision_of_model, read under its alias
  'model_revision',
  // peft.py: LoraConfig
  'load_in_8bit load_in_4bit adapter lora_model_dir lora_r lora_alpha lora_fan_in_fan_out lora_target_modules lora_target_parameters lora_target_linear lora_modules_to_save lora_rank_pattern lora_alpha_pattern lora_dropout peft_layers_to_transform peft_layers_pattern peft peft_use_dora peft_use_rslora peft_layer_replication peft_init_lora_weights peft_trainable_token_indices peft_ensure_weight_tying peft_autocast_adapter_dtype qlora_sharded_model_loading lora_on_cpu gptq bnb_config_kwargs loraplus_lr_ratio loraplus_lr_embedding merge_lora merge_method',
  // training.py: HyperparametersConfig
  'gradient_accumulation_steps micro_batch_size batch_size eval_batch_size auto_find_batch_size train_on_inputs group_by_length learning_rate embedding_lr embedding_lr_scale weight_decay optimizer optim_args optim_target_modules torchdistx_path lr_scheduler lr_scheduler_kwargs lr_quadratic_warmup cosine_min_lr_ratio cosine_constant_lr_ratio lr_div_factor lr_groups adam_epsilon adam_epsilon2 adam_beta1 adam_beta2 adam_beta3 dion_lr dion_momentum dion_rank_fraction dion_rank_multiple_of qgalore_rank qgalore_update_proj_gap qgalore_scale qgalore_proj_type qgalore_proj_quant qgalore_proj_bits qgalore_proj_group_size qgalore_cos_threshold qgalore_gamma_proj qgalore_queue_size max_grad_norm num_epochs',
  // config.py: AxolotlInputConfig's own fields (223 of them), the ones the recipe uses
  'datasets test_datasets dataset_prepared_path val_set_size sequence_len sample_packing max_steps warmup_steps seed eval_steps save_steps logging_steps bf16 chat_template',
);
/** axolotl v0.18.0 datasets.py: SFTDataset (an entry of datasets / test_datasets) and UserDefinedPrompterType (its `type` as a map). */
const AXOLOTL_DATASET_KEYS = words(
  'path split type input_transform shards shards_idx preprocess_shards conversation chat_template chat_template_jinja data_files input_format name ds_type field field_human field_model field_messages field_tools field_thinking template_thinking_key message_field_role message_field_content message_property_mappings message_field_training message_field_training_detail split_thinking logprobs_field temperature roles_to_train train_on_eos train_on_eot roles drop_system_message trust_remote_code revision',
);
const AXOLOTL_PROMPTER_KEYS = words('system_prompt system_format field_system field_instruction field_input field_output format no_input_format');

/** accelerate's config file keys (accelerate 0.30.1 commands/config/config_args.py BaseConfig, ClusterConfig). */
const ACCELERATE_KEYS = words('compute_environment debug distributed_type downcast_bf16 gpu_ids machine_rank main_training_function mixed_precision num_machines num_processes rdzv_backend same_network use_cpu fsdp_config');
/** fsdp_config keys: accelerate 0.30.1 commands/launch.py, the FSDP arguments the config file fills. */
const ACCELERATE_FSDP_KEYS = words('fsdp_offload_params fsdp_min_num_params fsdp_sharding_strategy fsdp_auto_wrap_policy fsdp_transformer_layer_cls_to_wrap fsdp_backward_prefetch fsdp_state_dict_type fsdp_forward_prefetch fsdp_use_orig_params fsdp_cpu_ram_efficient_loading fsdp_sync_module_states');

function run(over: { quant: 'nf4' | 'none'; template: string; modelType: string; evalEvery: number }): RunJson {
  const settings = runSettings({ targetModules: ['q_proj', 'v_proj'], evalEvery: over.evalEvery, checkpointEvery: 5, maxSteps: 20 });
  return {
    format: 'qlora-studio-run',
    version: 1,
    studio_version: '0.1.0',
    exported_at: '2026-01-01T00:00:00.000Z',
    base: { id: 'org/model', revision: 'main', commit: '0123456789abcdef0123456789abcdef01234567', config: { model_type: over.modelType } },
    quantization: over.quant === 'nf4' ? { type: 'nf4', blocksize: 64, double_quant: true, nested_blocksize: 256, compute_dtype: 'float32' } : { type: 'none' },
    settings,
    lora: { r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: ['q_proj', 'v_proj'] },
    optimizer: { name: 'adamw_torch', beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0, max_grad_norm: 1, step: 7 },
    schedule: { name: 'cosine', learning_rate: 2e-4, warmup_steps: 1, total_steps: 20, position: 7 },
    accumulation: 'token-weighted',
    step: 7,
    epoch: 0.5,
    seed: 42,
    intervals: { eval_every: over.evalEvery, checkpoint_every: 5, sample_every: 0 },
    data: { template: over.template, template_sha256: null, tokenizer_sha256: null, pad_token_id: 0, train_examples: 100, validation_examples: 10, seq_length: 256, dataset_sha256: null },
    log: { train: [], eval: [] },
  };
}

interface Parsed {
  transformers: string;
  files: Record<string, Record<string, unknown>>;
  training_arguments: string[];
  optimizers: string[];
  schedulers: string[];
}

function unknownKeys(obj: Record<string, unknown>, ...known: Set<string>[]): string[] {
  return Object.keys(obj).filter((k) => !known.some((s) => s.has(k)));
}

describe.skipIf(!HAVE_PYREF)('run bundle recipes against the documented keys of their tools', () => {
  let env: NodeJS.ProcessEnv = {};
  let dir: string;
  beforeAll(() => {
    process.env.PYREF_TRANSFORMERS = '4.44.0';
    env = pyrefEnv();
    delete process.env.PYREF_TRANSFORMERS;
    dir = mkdtempSync(join(tmpdir(), 'recipes-interop-'));
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases = [
    { quant: 'nf4', template: 'chat', modelType: 'llama', evalEvery: 10 },
    { quant: 'none', template: 'ds1000', modelType: 'phi', evalEvery: 0 },
  ] as const;
  for (const c of cases) {
    it(`${c.quant} base, ${c.template} data: every recipe parses and uses only its tool's keys`, () => {
      const r = run(c);
      const out = join(dir, `${c.quant}-${c.template}`);
      for (const a of bundleAssets(r)) {
        mkdirSync(dirname(join(out, a.path)), { recursive: true });
        writeFileSync(join(out, a.path), a.text);
      }
      const p = lastJson<Parsed>(python(env, ['tests/interop/recipe_check.py', join(out, 'recipes')]));
      expect(p.transformers).toBe('4.44.0');
      expect(Object.keys(p.files).sort()).toEqual(['axolotl.yaml', 'dataset_info.json', 'llamafactory.yaml', 'trl-sft.yaml']);
      const ta = new Set(p.training_arguments);

      const trl = p.files['trl-sft.yaml'];
      expect(unknownKeys(trl, TRL_KEYS, ta)).toEqual([]);
      expect(trl.model_name_or_path).toBe('org/model');
      expect(trl.model_revision).toBe(r.base.commit);
      expect([trl.lora_r, trl.lora_alpha, trl.lora_dropout, trl.lora_target_modules]).toEqual([16, 32, 0.05, ['q_proj', 'v_proj']]);
      expect(trl.load_in_4bit === true).toBe(c.quant === 'nf4');
      expect([trl.max_steps, trl.warmup_steps, trl.learning_rate, trl.seed, trl.gradient_accumulation_steps]).toEqual([20, 1, 2e-4, 42, r.settings.gradAccum]);

      const lf = p.files['llamafactory.yaml'];
      expect(unknownKeys(lf, LLAMAFACTORY_KEYS, ta)).toEqual([]);
      expect([lf.adapter_name_or_path, lf.create_new_adapter, lf.finetuning_type, lf.lora_target]).toEqual(['adapter', false, 'lora', 'q_proj,v_proj']);
      expect(LLAMAFACTORY_TEMPLATES.has(lf.template as string)).toBe(true);
      expect(lf.template).toBe(c.template === 'chat' ? 'llama3' : 'empty');
      expect(lf.quantization_bit === 4).toBe(c.quant === 'nf4');
      const info = p.files['dataset_info.json'] as Record<string, Record<string, unknown>>;
      expect(Object.keys(info).sort()).toEqual([lf.dataset, lf.eval_dataset].sort());
      for (const entry of Object.values(info)) {
        expect(unknownKeys(entry, DATASET_INFO_KEYS)).toEqual([]);
        expect(unknownKeys(entry.columns as Record<string, unknown>, DATASET_INFO_COLUMNS)).toEqual([]);
        if (entry.tags) expect(unknownKeys(entry.tags as Record<string, unknown>, DATASET_INFO_TAGS)).toEqual([]);
        expect(entry.file_name).toMatch(/^\.\.\/data\/(train|validation)\.jsonl$/);
      }

      const ax = p.files['axolotl.yaml'];
      expect(unknownKeys(ax, AXOLOTL_KEYS)).toEqual([]);
      for (const d of [...(ax.datasets as Record<string, unknown>[]), ...(ax.test_datasets as Record<string, unknown>[])]) {
        expect(unknownKeys(d, AXOLOTL_DATASET_KEYS)).toEqual([]);
        if (typeof d.type === 'object') expect(unknownKeys(d.type as Record<string, unknown>, AXOLOTL_PROMPTER_KEYS)).toEqual([]);
      }
      expect([ax.lora_model_dir, ax.adapter]).toEqual(['adapter', c.quant === 'nf4' ? 'qlora' : 'lora']);

      for (const recipe of [trl, lf]) {
        expect(p.optimizers).toContain(recipe.optim);
        expect(p.schedulers).toContain(recipe.lr_scheduler_type);
      }
      expect(p.schedulers).toContain(ax.lr_scheduler);
      console.log(`${c.quant}/${c.template}: keys checked — trl-sft ${Object.keys(trl).length}, llamafactory ${Object.keys(lf).length}, axolotl ${Object.keys(ax).length}; versions ${JSON.stringify(RECIPE_VERSIONS)}`);
    });
  }

  it('the accelerate configurations parse; fsdp.yaml has the FSDP-QLoRA settings', () => {
    const out = join(dir, 'accelerate-check');
    for (const a of bundleAssets(run(cases[0]))) {
      if (!a.path.startsWith('accelerate/')) continue;
      mkdirSync(join(out, 'recipes'), { recursive: true });
      writeFileSync(join(out, 'recipes', a.path.slice('accelerate/'.length)), a.text);
    }
    const p = lastJson<Parsed>(python(env, ['tests/interop/recipe_check.py', join(out, 'recipes')]));
    const ddp = p.files['ddp.yaml'];
    const fsdp = p.files['fsdp.yaml'];
    expect(unknownKeys(ddp, ACCELERATE_KEYS)).toEqual([]);
    expect(unknownKeys(fsdp, ACCELERATE_KEYS)).toEqual([]);
    expect(ddp.distributed_type).toBe('MULTI_GPU');
    expect(fsdp.distributed_type).toBe('FSDP');
    expect(unknownKeys(fsdp.fsdp_config as Record<string, unknown>, ACCELERATE_FSDP_KEYS)).toEqual([]);
    expect(fsdp.fsdp_config).toMatchObject({ fsdp_cpu_ram_efficient_loading: true, fsdp_sync_module_states: true, fsdp_use_orig_params: true, fsdp_auto_wrap_policy: 'TRANSFORMER_BASED_WRAP' });
  });
});
