/**
 * run.json of a run bundle (docs/RUN-BUNDLE.md): every setting of a run and the position it
 * reached, in the form the continuation (continue.py) and the studio's import read.
 */
import type { HfConfig } from '../../load/presets';
import type { RunSettings } from '../../run/settings';

export const RUN_BUNDLE_FORMAT = 'qlora-studio-run';
export const RUN_BUNDLE_VERSION = 1;

export type RunQuantization = { type: 'nf4'; blocksize: number; double_quant: boolean; nested_blocksize: number; compute_dtype: 'float32' } | { type: 'none' };

export interface RunJson {
  format: typeof RUN_BUNDLE_FORMAT;
  version: typeof RUN_BUNDLE_VERSION;
  studio_version: string;
  exported_at: string;
  base: { id: string; revision: string | null; commit: string | null; config: HfConfig };
  quantization: RunQuantization;
  settings: RunSettings;
  lora: { r: number; lora_alpha: number; lora_dropout: number; target_modules: string[] };
  optimizer: { name: 'adamw_torch'; beta1: number; beta2: number; eps: number; weight_decay: number; max_grad_norm: number; step: number };
  schedule: { name: RunSettings['schedule']; learning_rate: number; warmup_steps: number; total_steps: number; position: number };
  accumulation: 'token-weighted';
  step: number;
  epoch: number;
  seed: number;
  intervals: { eval_every: number; checkpoint_every: number; sample_every: number };
  data: {
    template: string;
    template_sha256: string | null;
    tokenizer_sha256: string | null;
    pad_token_id: number;
    train_examples: number;
    validation_examples: number;
    seq_length: number;
    dataset_sha256: string | null;
  };
  log: { train: { step: number; loss: number; lr: number; grad_norm: number }[]; eval: { step: number; eval_loss: number }[] };
}
