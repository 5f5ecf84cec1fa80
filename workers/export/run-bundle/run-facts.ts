/**
 * run.json from what a run knows when it starts (its facts: the base, the quantization, the
 * settings, the data's provenance) and what its checkpoint holds (the position reached, the
 * optimizer's step, the logs).
 */
import type { SnapshotMeta } from '../../train/checkpoint-store';
import { warmupStepsFor } from '../../train/schedule';
import type { RunSettings } from '../../run/settings';
import { targetModuleNames } from '../peft';
import { RUN_BUNDLE_FORMAT, RUN_BUNDLE_VERSION, type RunJson, type RunQuantization } from './run-json';

/** What a run bundle says about a run besides its position: fixed when the run starts. */
export interface RunFacts {
  studioVersion: string;
  /** `id`: the name the adapter gives its base (adapter_config.json's base_model_name_or_path). */
  base: RunJson['base'];
  quantization: RunQuantization;
  settings: RunSettings;
  data: Pick<RunJson['data'], 'template' | 'template_sha256' | 'tokenizer_sha256' | 'pad_token_id' | 'dataset_sha256'>;
}

export const STUDIO_VERSION = '0.1.0';

/** An NF4 load's settings in run.json's words (quantization.ts `runQuantization` covers both storages). */
export function nf4Quantization(q: { blocksize: number; doubleQuant: boolean; nestedBlocksize: number }): RunQuantization {
  return { type: 'nf4', blocksize: q.blocksize, double_quant: q.doubleQuant, nested_blocksize: q.nestedBlocksize, compute_dtype: 'float32' };
}

/**
 * run.json's data.template: the preset template, `chat` when a chat template rendered the rows,
 * else the mapping's plain layout (`instruction` for prompt/response, `text`).
 */
export function runTemplateName(format: { template: string | null; mapping: { kind: string } | null }, tokenizer: { hasChatTemplate: boolean }): string {
  if (!format.mapping) return format.template ?? 'unknown';
  if (format.mapping.kind === 'messages') return 'chat';
  if (format.mapping.kind === 'prompt-response') return tokenizer.hasChatTemplate ? 'chat' : 'instruction';
  return 'text';
}

/** Optimizer steps per epoch of a run with `examples` training examples (the trainer's windowsPerEpoch). */
export function windowsPerEpoch(examples: number, s: Pick<RunSettings, 'batchSize' | 'gradAccum'>): number {
  return Math.ceil(Math.ceil(examples / s.batchSize) / s.gradAccum);
}

export function runJsonOf(facts: RunFacts, meta: SnapshotMeta, counts: { train: number; validation: number }, exportedAt = new Date()): RunJson {
  const s = facts.settings;
  const t = meta.settings;
  return {
    format: RUN_BUNDLE_FORMAT,
    version: RUN_BUNDLE_VERSION,
    studio_version: facts.studioVersion,
    exported_at: exportedAt.toISOString(),
    base: facts.base,
    quantization: facts.quantization,
    settings: s,
    lora: { r: s.rank, lora_alpha: s.alpha, lora_dropout: s.dropout, target_modules: targetModuleNames(meta.lora.map((l) => l.key)) },
    optimizer: { name: 'adamw_torch', beta1: t.beta1, beta2: t.beta2, eps: t.eps, weight_decay: t.weightDecay, max_grad_norm: t.maxGradNorm, step: meta.optimizer.step },
    schedule: { name: s.schedule, learning_rate: s.learningRate, warmup_steps: warmupStepsFor(t.schedule, meta.totalSteps), total_steps: meta.totalSteps, position: meta.step },
    accumulation: 'token-weighted',
    step: meta.step,
    epoch: meta.step / windowsPerEpoch(counts.train, s),
    seed: s.seed,
    intervals: { eval_every: s.evalEvery, checkpoint_every: s.checkpointEvery, sample_every: s.sampleEvery },
    data: { ...facts.data, train_examples: counts.train, validation_examples: counts.validation, seq_length: s.seqLength },
    log: {
      train: meta.history.map((h) => ({ step: h.step + 1, loss: h.loss, lr: h.lr, grad_norm: h.gradNorm })),
      eval: meta.evals.map((e) => ({ step: e.step, eval_loss: e.loss })),
    },
  };
}
