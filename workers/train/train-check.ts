/**
 * Checks the training loop against a folder of the hf-train format (tests/fixtures/hf-train):
 * reads train.json and batches.safetensors, runs the studio's Trainer with exactly those
 * settings and micro-batches, and compares every recorded quantity with expected.safetensors
 * as the fixture README defines it: max |ours − expected| / max |expected| per series (scalars)
 * and per tensor (weights, moments); token counts, clip decisions and the step count exact.
 */
import type { Gpu } from '../gpu/runtime';
import type { Batch, TrainableCausalLM } from '../model/types';
import { SafetensorsFile } from '../formats/safetensors';
import { FixedBatches } from './batches';
import type { OptimizerShaders } from '../kernels/shaders';
import { SCHEDULE_NAMES, type ScheduleName } from './schedule';
import { ownEntry } from '../util/own';
import { Trainer, type Accumulation, type TrainEvent, type TrainSettings } from './trainer';

export const TRAIN_CHECK_TOLERANCE = 1e-4;

/** What the hf-train README's train.json holds (the fields the loop needs). */
export interface HfTrainJson {
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  schedule: string;
  num_warmup_steps: number;
  num_training_steps: number;
  num_cycles?: number;
  gradient_accumulation_steps: number;
  max_grad_norm: number;
  amsgrad?: boolean;
}

export class TrainCheckInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliInputError';
  }
}

const SCHEDULE_ALIASES: Record<string, ScheduleName> = { cosine_with_warmup: 'cosine', linear_with_warmup: 'linear' };

export function settingsFromTrainJson(json: HfTrainJson, file = 'train.json'): TrainSettings {
  const need = (field: keyof HfTrainJson, ok: boolean) => {
    if (!ok) throw new TrainCheckInputError(`${file}: field "${field}" is missing or invalid (${JSON.stringify(json[field])})`);
  };
  need('lr', typeof json.lr === 'number');
  need('betas', Array.isArray(json.betas) && json.betas.length === 2);
  need('eps', typeof json.eps === 'number');
  need('weight_decay', typeof json.weight_decay === 'number');
  need('num_training_steps', Number.isInteger(json.num_training_steps) && json.num_training_steps > 0);
  need('gradient_accumulation_steps', Number.isInteger(json.gradient_accumulation_steps) && json.gradient_accumulation_steps > 0);
  need('max_grad_norm', typeof json.max_grad_norm === 'number');
  need('amsgrad', !json.amsgrad);
  const name = ownEntry(SCHEDULE_ALIASES, json.schedule) ?? (json.schedule as ScheduleName);
  need('schedule', SCHEDULE_NAMES.includes(name));
  return {
    lr: json.lr,
    beta1: json.betas[0],
    beta2: json.betas[1],
    eps: json.eps,
    weightDecay: json.weight_decay,
    schedule: { name, warmupSteps: json.num_warmup_steps ?? 0, numCycles: json.num_cycles ?? 0.5 },
    maxGradNorm: json.max_grad_norm,
    gradAccum: json.gradient_accumulation_steps,
    epochs: 1,
    maxSteps: json.num_training_steps,
    seed: 0,
    accumulation: 'token-weighted',
    evalEvery: 0,
    sampleEvery: 0,
    checkpointEvery: 0,
  };
}

/** batches.safetensors: input_ids, attention_mask, labels as [micro-batches, B, T]. */
export function batchesFromSafetensors(file: SafetensorsFile): Batch[] {
  const shape = file.info('input_ids').shape;
  if (shape.length !== 3) throw new TrainCheckInputError(`${file.file}: input_ids has shape [${shape}], expected [micro-batches, batch, seq]`);
  for (const name of ['attention_mask', 'labels']) {
    if (file.info(name).shape.join() !== shape.join()) throw new TrainCheckInputError(`${file.file}: ${name} has shape [${file.info(name).shape}], input_ids [${shape}]`);
  }
  const [count, batch, seq] = shape;
  const ids = file.ints('input_ids');
  const mask = file.ints('attention_mask');
  const labels = file.ints('labels');
  const per = batch * seq;
  return Array.from({ length: count }, (_, m) => ({
    inputIds: ids.slice(m * per, (m + 1) * per),
    attentionMask: mask.slice(m * per, (m + 1) * per),
    labels: labels.slice(m * per, (m + 1) * per),
    batch,
    seq,
  }));
}

/** What a finished run produced, in the fixture's terms. */
export interface TrainedRun {
  microTokenCounts: number[];
  microSumLosses: number[];
  stepLosses: number[];
  stepLrs: number[];
  stepGradNorms: number[];
  stepClipped: number[];
  evalLoss: number;
  optimizerStep: number;
  weights: Map<string, Float32Array>;
  expAvg: Map<string, Float32Array>;
  expAvgSq: Map<string, Float32Array>;
}

export interface QuantityCheck {
  name: string;
  /** Max relative error (for exact quantities: 0 when equal, Infinity otherwise). */
  rel: number;
  ok: boolean;
  exact?: boolean;
  /** For tensor groups: the tensor with the worst error. */
  worstTensor?: string;
}

export interface TrainCheckReport {
  ok: boolean;
  worst: { name: string; rel: number };
  quantities: QuantityCheck[];
}

export function relativeError(ours: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (ours.length !== expected.length) return Infinity;
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = Math.abs(ours[i] - expected[i]);
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
    ref = Math.max(ref, Math.abs(expected[i]));
  }
  return ref === 0 ? diff : diff / ref;
}

/** Compares a run with expected.safetensors; every quantity it records is checked. */
export function compareWithExpected(run: TrainedRun, expected: SafetensorsFile, tolerance = TRAIN_CHECK_TOLERANCE): TrainCheckReport {
  const quantities: QuantityCheck[] = [];
  const series = (name: string, ours: ArrayLike<number>) => {
    const rel = relativeError(ours, expected.f32(name));
    quantities.push({ name, rel, ok: rel <= tolerance });
  };
  const exact = (name: string, ours: number[]) => {
    const want = [...expected.ints(name)];
    const same = want.length === ours.length && want.every((v, i) => v === ours[i]);
    quantities.push({ name, rel: same ? 0 : Infinity, ok: same, exact: true });
  };
  exact('micro_token_counts', run.microTokenCounts);
  series('micro_sum_losses', run.microSumLosses);
  series('step_losses', run.stepLosses);
  series('step_lrs', run.stepLrs);
  series('step_grad_norms', run.stepGradNorms);
  exact('step_clipped', run.stepClipped);
  series('eval_loss', [run.evalLoss]);
  exact('optimizer_step', [run.optimizerStep]);
  const group = (label: string, suffix: string, tensors: Map<string, Float32Array>) => {
    let worst: QuantityCheck = { name: label, rel: 0, ok: true };
    const keys = expected.names.filter((n) => (suffix ? n.endsWith(suffix) : /\.lora_[AB]\.weight$/.test(n)));
    if (!keys.length) throw new TrainCheckInputError(`${expected.file}: no ${label} tensors`);
    for (const name of keys) {
      const key = suffix ? name.slice(0, -suffix.length) : name;
      const ours = tensors.get(key);
      const rel = ours ? relativeError(ours, expected.f32(name)) : Infinity;
      if (rel >= worst.rel) worst = { name: label, rel, ok: rel <= tolerance, worstTensor: key };
    }
    quantities.push(worst);
  };
  group('lora_weights', '', run.weights);
  group('exp_avg', '.exp_avg', run.expAvg);
  group('exp_avg_sq', '.exp_avg_sq', run.expAvgSq);
  const worstQ = quantities.reduce((a, b) => (b.rel > a.rel ? b : a));
  return { ok: quantities.every((q) => q.ok), worst: { name: worstQ.worstTensor ? `${worstQ.name} ${worstQ.worstTensor}` : worstQ.name, rel: worstQ.rel }, quantities };
}

export interface TrainCheckRun {
  gpu: Gpu;
  model: TrainableCausalLM;
  shaders: OptimizerShaders;
  trainJson: HfTrainJson;
  batches: Batch[];
  /** Overrides for experiments (e.g. the accumulation mode); the check itself passes none. */
  accumulation?: Accumulation;
  onEvent?: (e: TrainEvent) => void;
}

/** Trains with the fixture's settings on its micro-batches and collects what it records. */
export async function trainLikeFixture(r: TrainCheckRun): Promise<TrainedRun> {
  const settings = settingsFromTrainJson(r.trainJson);
  if (r.accumulation) settings.accumulation = r.accumulation;
  const needed = settings.gradAccum * (settings.maxSteps ?? 0);
  if (r.batches.length !== needed) {
    throw new TrainCheckInputError(`batches.safetensors holds ${r.batches.length} micro-batches; train.json asks for ${settings.maxSteps} steps × ${settings.gradAccum} = ${needed}`);
  }
  const trainer = new Trainer(
    { gpu: r.gpu, model: r.model, shaders: r.shaders, train: new FixedBatches(r.batches), validation: [r.batches[0]], onEvent: r.onEvent },
    settings,
  );
  try {
    const result = await trainer.run();
    if (result.status !== 'done') throw new Error(`training ended with status ${result.status}${result.message ? `: ${result.message}` : ''}`);
    const h = result.history;
    const snap = await trainer.snapshot();
    return {
      microTokenCounts: h.flatMap((s) => s.micro.map((m) => m.tokens)),
      microSumLosses: h.flatMap((s) => s.micro.map((m) => m.lossSum)),
      stepLosses: h.map((s) => s.loss),
      stepLrs: h.map((s) => s.lr),
      stepGradNorms: h.map((s) => s.gradNorm),
      stepClipped: h.map((s) => (s.clipped ? 1 : 0)),
      evalLoss: result.evals[result.evals.length - 1]?.loss ?? NaN,
      optimizerStep: snap.optimizer.step,
      weights: new Map(snap.lora.map((l) => [l.key, l.data])),
      expAvg: new Map(snap.optimizer.tensors.map((t) => [t.key, t.expAvg])),
      expAvgSq: new Map(snap.optimizer.tensors.map((t) => [t.key, t.expAvgSq])),
    };
  } finally {
    trainer.dispose();
  }
}

/** The files of an hf-train folder a model is built from. */
export interface HfTrainModelFiles {
  config: string;
  weights: SafetensorsFile;
  adapterConfig: string;
  adapter: SafetensorsFile;
}

export type TrainCheckModelFactory = (gpu: Gpu, files: HfTrainModelFiles) => Promise<TrainableCausalLM>;

export interface TrainCheckFolderOptions {
  gpu: Gpu;
  folder: string;
  /** Reads a file of the folder by name; throws a readable error when it is absent. */
  read: (name: string) => Promise<Uint8Array>;
  createModel: TrainCheckModelFactory;
  shaders: OptimizerShaders;
  log?: (line: string) => void;
  /** Per-step records as they happen. */
  onStep?: (record: { step: number; loss: number; lr: number; grad_norm: number; clipped: boolean }) => void;
}

/** Reads an hf-train folder, trains on it with the studio's Trainer and compares. */
export async function runTrainCheckFolder(o: TrainCheckFolderOptions): Promise<TrainCheckReport & { steps: number }> {
  const text = async (name: string) => new TextDecoder().decode(await o.read(name));
  const tensors = async (name: string) => new SafetensorsFile(await o.read(name), `${o.folder}/${name}`);
  let trainJson: HfTrainJson;
  try {
    trainJson = JSON.parse(await text('train.json')) as HfTrainJson;
  } catch (err) {
    throw new TrainCheckInputError(`${o.folder}/train.json: ${(err as Error).message}`);
  }
  const batches = batchesFromSafetensors(await tensors('batches.safetensors'));
  const expected = await tensors('expected.safetensors');
  const model = await o.createModel(o.gpu, {
    config: await text('config.json'),
    weights: await tensors('model.safetensors'),
    adapterConfig: await text('adapter_config.json'),
    adapter: await tensors('adapter_model.safetensors'),
  });
  try {
    const run = await trainLikeFixture({
      gpu: o.gpu,
      model,
      shaders: o.shaders,
      trainJson,
      batches,
      onEvent: (e) => {
        if (e.type === 'step') o.onStep?.({ step: e.step, loss: e.loss, lr: e.lr, grad_norm: e.gradNorm, clipped: e.clipped });
      },
    });
    const report = compareWithExpected(run, expected);
    for (const q of report.quantities) {
      o.log?.(`${q.ok ? 'ok  ' : 'FAIL'} ${q.name.padEnd(20)} ${q.exact ? (q.ok ? 'exact' : 'differs') : `max rel ${q.rel.toExponential(2)}`}${q.worstTensor ? ` (worst: ${q.worstTensor})` : ''}`);
    }
    return { ...report, steps: run.stepLosses.length };
  } finally {
    model.dispose();
  }
}
