/**
 * The run contract: every setting a fine-tuning run is configured by, its default, its limits,
 * and the views the LoRA modules and the trainer take. The page edits a `RunSettings`, the CLI
 * builds one from its flags, the presets are `RunSettings`, and the engine checks each one it
 * receives against the same limits (`checkRunSettings`) before it does anything with it.
 * Plain data: structured-clone safe, no GPU, no DOM.
 */
import { EngineError } from '../errors';
import type { LoraSettings } from '../model/types';
import { SCHEDULE_NAMES, type ScheduleName } from '../train/schedule';
import type { TrainSettings as TrainerSettings } from '../train/trainer';

export type Schedule = ScheduleName;
export { SCHEDULE_NAMES };

export interface RunSettings {
  /** LoRA rank r: A is [r, in], B is [out, r]. */
  rank: number;
  /** The LoRA update is scaled by alpha / rank. */
  alpha: number;
  /** Dropout on the LoRA input (PEFT's lora_dropout); 0 turns it off. */
  dropout: number;
  /** Module names as PEFT's `target_modules` lists them (at least one). */
  targetModules: string[];
  learningRate: number;
  schedule: Schedule;
  /** Fraction of the total steps spent warming up (ignored when warmupSteps > 0, as in HF). */
  warmupRatio: number;
  warmupSteps: number;
  /** AdamW's decoupled weight decay. */
  weightDecay: number;
  /** clip_grad_norm_'s max_norm; 0 turns clipping off. */
  maxGradNorm: number;
  epochs: number;
  /** When > 0 the run stops after this many optimizer steps, whatever `epochs` says. */
  maxSteps: number;
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step (token-weighted). */
  gradAccum: number;
  /** Tokens per example; longer ones are cut. */
  seqLength: number;
  /** Keys the LoRA initialisation, the shuffling, the split and the dropout masks. */
  seed: number;
  /** Steps between validation losses; 0 = only before the first and after the last step. */
  evalEvery: number;
  /** Steps between sample generations; 0 = never. */
  sampleEvery: number;
  /** New tokens per sample generation. */
  sampleTokens: number;
  /** Steps between checkpoints; 0 = only on pause, stop and at the end. */
  checkpointEvery: number;
  /** Fraction of the rows held out for validation. */
  validationFraction: number;
}

export type SettingName = keyof RunSettings;

/** AdamW's constants (torch's and HF TrainingArguments' defaults); no interface exposes them. */
export const ADAMW_BETAS = { beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const;

/** The defaults every run starts from; a preset overrides a few of them. */
export const RUN_DEFAULTS: Readonly<RunSettings> = Object.freeze({
  rank: 16,
  alpha: 32,
  dropout: 0.05,
  /** No model's layers are known here: a preset names its own, the CLI takes every linear layer. */
  targetModules: [],
  learningRate: 2e-4,
  schedule: 'cosine',
  warmupRatio: 0.03,
  warmupSteps: 0,
  weightDecay: 0,
  maxGradNorm: 1,
  epochs: 1,
  maxSteps: 0,
  batchSize: 1,
  gradAccum: 4,
  seqLength: 512,
  seed: 42,
  evalEvery: 10,
  sampleEvery: 20,
  sampleTokens: 32,
  checkpointEvery: 10,
  validationFraction: 0.1,
});

/** The defaults with `overrides` on top: a fresh object the caller may edit. */
export function runSettings(overrides: Partial<RunSettings> = {}): RunSettings {
  const s = { ...RUN_DEFAULTS, ...overrides };
  return { ...s, targetModules: [...s.targetModules] };
}

/** One setting outside its limits: which setting, the limit in words, and a sentence for a person. */
export interface SettingProblem {
  setting: SettingName;
  limit: string;
  message: string;
}

/**
 * The limits, in one table. Each check returns the limit it broke (or null); labels are the
 * page's field labels, so a message reads the same in the form, the CLI and an engine error.
 */
interface Limit {
  label: string;
  check(v: number, s: RunSettings): { limit: string; message: string } | null;
}

const int = (label: string, min: number, max = Infinity, zero = '') => ({
  label,
  check(v: number) {
    const limit = max === Infinity ? `a whole number ≥ ${min}` : `a whole number from ${min} to ${max}`;
    if (!Number.isFinite(v) || !Number.isInteger(v) || v < min) {
      return { limit, message: min === 1 ? `${label} must be a whole number of at least 1.` : `${label} must be a whole number, ${min} or more${zero}.` };
    }
    if (v > max) return { limit, message: `${label} must be at most ${max}.` };
    return null;
  },
});

const LIMITS: Record<Exclude<SettingName, 'targetModules' | 'schedule'>, Limit> = {
  rank: int('Rank', 1, 1024),
  alpha: {
    label: 'Alpha',
    check: (v) => (Number.isFinite(v) && v > 0 ? null : { limit: '> 0', message: 'Alpha must be a positive number (the LoRA update is scaled by alpha ÷ rank).' }),
  },
  dropout: {
    label: 'Dropout',
    check: (v) => (Number.isFinite(v) && v >= 0 && v < 1 ? null : { limit: '≥ 0 and < 1', message: 'Dropout is a probability: at least 0 and below 1.' }),
  },
  learningRate: {
    label: 'Learning rate',
    check: (v) => {
      if (!Number.isFinite(v) || v <= 0) return { limit: '> 0 and ≤ 0.1', message: 'The learning rate must be a positive number, e.g. 2e-4.' };
      if (v > 0.1) return { limit: '> 0 and ≤ 0.1', message: 'A learning rate above 0.1 makes LoRA diverge; try 1e-4 to 1e-3.' };
      return null;
    },
  },
  warmupRatio: {
    label: 'Warmup ratio',
    check: (v) => (Number.isFinite(v) && v >= 0 && v < 1 ? null : { limit: '≥ 0 and < 1', message: 'Warmup ratio is a fraction of the run: at least 0 and below 1.' }),
  },
  warmupSteps: int('Warmup steps', 0),
  weightDecay: {
    label: 'Weight decay',
    check: (v) => (Number.isFinite(v) && v >= 0 ? null : { limit: '≥ 0', message: 'Weight decay must be a number, 0 or more.' }),
  },
  maxGradNorm: {
    label: 'Max gradient norm',
    check: (v) => (Number.isFinite(v) && v >= 0 ? null : { limit: '≥ 0', message: 'The max gradient norm must be a number, 0 or more (0 turns clipping off).' }),
  },
  epochs: {
    label: 'Epochs',
    check: (v, s) => {
      if (s.maxSteps === 0 && (!Number.isFinite(v) || v <= 0)) return { limit: '> 0 when max steps is 0', message: 'Give a positive number of epochs, or set max steps.' };
      if (!Number.isFinite(v) || v < 0) return { limit: '≥ 0', message: 'Epochs cannot be negative.' };
      return null;
    },
  },
  maxSteps: int('Max steps', 0, Infinity, '; 0 means "use the epochs"'),
  batchSize: int('Batch size', 1, 256),
  gradAccum: int('Gradient accumulation', 1, 1024),
  seqLength: {
    label: 'Sequence length',
    check(v) {
      const broken = int('Sequence length', 1, 32768).check(v);
      if (broken) return { ...broken, limit: 'a whole number from 8 to 32768' };
      return v < 8 ? { limit: 'a whole number from 8 to 32768', message: 'Sequence length must be at least 8 tokens.' } : null;
    },
  },
  seed: {
    label: 'Seed',
    check: (v) => (Number.isInteger(v) && v >= 0 && v <= 2 ** 32 - 1 ? null : { limit: 'a whole number from 0 to 4294967295', message: 'The seed is a whole number from 0 to 4294967295.' }),
  },
  evalEvery: int('Evaluate every', 0, Infinity, ' (steps; 0 turns it off)'),
  sampleEvery: int('Sample every', 0, Infinity, ' (steps; 0 turns it off)'),
  sampleTokens: int('Sample tokens', 1, 4096),
  checkpointEvery: int('Checkpoint every', 0, Infinity, ' (steps; 0 turns it off)'),
  validationFraction: {
    label: 'Validation fraction',
    check: (v) => (Number.isFinite(v) && v >= 0 && v <= 0.5 ? null : { limit: '≥ 0 and ≤ 0.5', message: 'Hold out between 0 and 0.5 of the rows for validation.' }),
  },
};

const NUMERIC = Object.keys(LIMITS) as (keyof typeof LIMITS)[];
const KNOWN = new Set<string>([...NUMERIC, 'targetModules', 'schedule']);

/**
 * Every problem with `s`, in field order; empty when the settings can start a run.
 * `modules`: the linear layers the model has (when known), which target modules must name.
 * Refuses what it does not understand: unknown fields, missing ones, wrong types.
 */
export function validateRunSettings(s: unknown, modules: readonly string[] = []): SettingProblem[] {
  if (!s || typeof s !== 'object' || Array.isArray(s)) {
    return [{ setting: 'rank', limit: 'an object of run settings', message: 'The run settings are missing.' }];
  }
  const problems: SettingProblem[] = [];
  const given = s as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!KNOWN.has(key)) problems.push({ setting: key as SettingName, limit: `one of ${[...KNOWN].join(', ')}`, message: `"${key}" is not a run setting.` });
  }
  const rs = given as unknown as RunSettings;
  for (const key of NUMERIC) {
    const v = given[key];
    if (typeof v !== 'number') {
      problems.push({ setting: key, limit: 'a number', message: `${LIMITS[key].label} must be a number${v === undefined ? ' (it is missing)' : ''}.` });
      continue;
    }
    const broken = LIMITS[key].check(v, rs);
    if (broken) problems.push({ setting: key, ...broken });
  }
  if (!SCHEDULE_NAMES.includes(given.schedule as Schedule)) {
    problems.push({ setting: 'schedule', limit: `one of ${SCHEDULE_NAMES.join(', ')}`, message: `The schedule must be one of ${SCHEDULE_NAMES.join(', ')}.` });
  }
  const targets = given.targetModules;
  if (!Array.isArray(targets) || targets.some((t) => typeof t !== 'string')) {
    problems.push({ setting: 'targetModules', limit: 'a list of module names', message: 'Target modules must be a list of layer names.' });
  } else if (targets.length === 0) {
    problems.push({ setting: 'targetModules', limit: 'at least one module', message: 'Choose at least one layer to adapt, or nothing will be trained.' });
  } else if (modules.length) {
    const unknown = targets.filter((m) => !modules.includes(m));
    if (unknown.length) problems.push({ setting: 'targetModules', limit: `one of ${modules.join(', ')}`, message: `This model has no layer named ${unknown.join(', ')}.` });
  }
  return problems;
}

/** Checks only the settings given (a dataset request carries seqLength, validationFraction and seed). */
export function checkSomeSettings(partial: Partial<RunSettings>): void {
  const given = Object.keys(partial) as SettingName[];
  const problems = validateRunSettings({ ...RUN_DEFAULTS, targetModules: ['-'], ...partial }).filter((p) => given.includes(p.setting));
  if (problems.length) checkRunSettings({ ...RUN_DEFAULTS, targetModules: ['-'], ...partial });
}

/** The engine's gate: throws an `invalid-setting` error naming the first bad setting and its limit. */
export function checkRunSettings(s: unknown, modules: readonly string[] = []): RunSettings {
  const [first, ...rest] = validateRunSettings(s, modules);
  if (first) {
    const more = rest.length ? ` (and ${rest.length} more: ${rest.map((p) => p.setting).join(', ')})` : '';
    throw new EngineError('invalid-setting', `setting "${first.setting}" must be ${first.limit}, got ${JSON.stringify((s as Record<string, unknown>)[first.setting])}: ${first.message}${more}`, {
      setting: first.setting,
      limit: first.limit,
    });
  }
  return s as RunSettings;
}

/** The LoRA modules' view: PEFT's names (`r`, `targetModules`). */
export function loraView(s: RunSettings): LoraSettings {
  return { r: s.rank, alpha: s.alpha, dropout: s.dropout, targetModules: [...s.targetModules] };
}

/** The trainer's view: HF TrainingArguments' vocabulary, with AdamW's constants. */
export function trainerView(s: RunSettings): TrainerSettings {
  return {
    lr: s.learningRate,
    ...ADAMW_BETAS,
    weightDecay: s.weightDecay,
    schedule: { name: s.schedule, warmupRatio: s.warmupRatio, warmupSteps: s.warmupSteps > 0 ? s.warmupSteps : undefined },
    maxGradNorm: s.maxGradNorm,
    gradAccum: s.gradAccum,
    epochs: s.epochs,
    maxSteps: s.maxSteps > 0 ? s.maxSteps : undefined,
    seed: s.seed,
    accumulation: 'token-weighted',
    evalEvery: s.evalEvery,
    sampleEvery: s.sampleEvery,
    sampleMaxNewTokens: s.sampleTokens,
    checkpointEvery: s.checkpointEvery,
  };
}
