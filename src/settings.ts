/** Training settings as the form edits them: field descriptions and validation, in words for a person. */
import type { TrainSettings } from '../workers/protocol';

export type SettingsErrors = Partial<Record<keyof TrainSettings, string>>;

const isInt = (v: number) => Number.isInteger(v);

/** Every problem with `s`, keyed by field; empty when the settings can start a run. */
export function validateSettings(s: TrainSettings, availableModules: string[]): SettingsErrors {
  const e: SettingsErrors = {};
  const positiveInt = (key: keyof TrainSettings, v: number, label: string, max?: number) => {
    if (!Number.isFinite(v) || !isInt(v) || v < 1) e[key] = `${label} must be a whole number of at least 1.`;
    else if (max !== undefined && v > max) e[key] = `${label} must be at most ${max}.`;
  };
  positiveInt('rank', s.rank, 'Rank', 1024);
  if (!Number.isFinite(s.alpha) || s.alpha <= 0) e.alpha = 'Alpha must be a positive number (the LoRA update is scaled by alpha ÷ rank).';
  if (!Number.isFinite(s.dropout) || s.dropout < 0 || s.dropout >= 1) e.dropout = 'Dropout is a probability: at least 0 and below 1.';
  if (s.targetModules.length === 0) e.targetModules = 'Choose at least one layer to adapt, or nothing will be trained.';
  else {
    const unknown = s.targetModules.filter((m) => !availableModules.includes(m));
    if (unknown.length && availableModules.length) e.targetModules = `This model has no layer named ${unknown.join(', ')}.`;
  }
  if (!Number.isFinite(s.learningRate) || s.learningRate <= 0) e.learningRate = 'The learning rate must be a positive number, e.g. 2e-4.';
  else if (s.learningRate > 0.1) e.learningRate = 'A learning rate above 0.1 makes LoRA diverge; try 1e-4 to 1e-3.';
  if (!Number.isFinite(s.warmupRatio) || s.warmupRatio < 0 || s.warmupRatio >= 1) e.warmupRatio = 'Warmup ratio is a fraction of the run: at least 0 and below 1.';
  if (!Number.isFinite(s.warmupSteps) || !isInt(s.warmupSteps) || s.warmupSteps < 0) e.warmupSteps = 'Warmup steps must be a whole number, 0 or more.';
  if (!Number.isFinite(s.maxSteps) || !isInt(s.maxSteps) || s.maxSteps < 0) e.maxSteps = 'Max steps must be a whole number; 0 means "use the epochs".';
  if (s.maxSteps === 0 && (!Number.isFinite(s.epochs) || s.epochs <= 0)) e.epochs = 'Give a positive number of epochs, or set max steps.';
  else if (!Number.isFinite(s.epochs) || s.epochs < 0) e.epochs = 'Epochs cannot be negative.';
  positiveInt('batchSize', s.batchSize, 'Batch size', 256);
  positiveInt('gradAccum', s.gradAccum, 'Gradient accumulation', 1024);
  positiveInt('seqLength', s.seqLength, 'Sequence length', 32768);
  if (!e.seqLength && s.seqLength < 8) e.seqLength = 'Sequence length must be at least 8 tokens.';
  if (!Number.isFinite(s.seed) || !isInt(s.seed) || s.seed < 0 || s.seed > 2 ** 32 - 1) e.seed = 'The seed is a whole number from 0 to 4294967295.';
  for (const [key, label] of [['evalEvery', 'Evaluate every'], ['sampleEvery', 'Sample every'], ['checkpointEvery', 'Checkpoint every']] as const) {
    if (!Number.isFinite(s[key]) || !isInt(s[key]) || s[key] < 0) e[key] = `${label} must be a whole number of steps; 0 turns it off.`;
  }
  if (!Number.isFinite(s.validationFraction) || s.validationFraction < 0 || s.validationFraction > 0.5) e.validationFraction = 'Hold out between 0 and 0.5 of the rows for validation.';
  return e;
}

export const SCHEDULES = [
  { value: 'constant', label: 'constant' },
  { value: 'constant_with_warmup', label: 'constant with warmup' },
  { value: 'linear', label: 'linear decay' },
  { value: 'cosine', label: 'cosine decay' },
] as const;
