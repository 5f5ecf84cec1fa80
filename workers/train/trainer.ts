/**
 * The training loop the studio, the CLI (`train`, `train-check`) and the tests all run:
 * windows of `gradAccum` micro-batches, token-weighted over the window (each micro-batch is
 * back-propagated with gradScale = 1 / label tokens of the whole window, so the accumulated
 * gradient equals one big batch's, as transformers ≥ 4.46 does it), global-norm clipping,
 * AdamW at the scheduled lr, evaluation and sample generations every N steps, checkpoints
 * every N steps and on pause/stop, and a report when the GPU device is lost.
 */
import type { Gpu } from '../gpu/runtime';
import type { Batch, TrainableCausalLM } from '../model/types';
import type { PagingOptions } from './paged-moments';
import { AdamWOptimizer, type OptimizerState } from './optimizer';
import type { OptimizerShaders } from '../kernels/shaders';
import { labelTokens, stepWindow, type BatchSource, type EvalBatches } from './batches';
import { scheduledLr, type ScheduleSettings } from './schedule';
import { ADAMW_BETAS, RUN_DEFAULTS } from '../run/settings';
import { EngineError } from '../errors';

export type Accumulation = 'token-weighted' | 'mean-of-micro-means';

/** The trainer's view of the run settings (HF TrainingArguments' vocabulary; see workers/run/settings.ts). */
export interface TrainSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  schedule: ScheduleSettings;
  /** clip_grad_norm_'s max_norm; ≤ 0 disables clipping. */
  maxGradNorm: number;
  /** Micro-batches per optimizer step. */
  gradAccum: number;
  /** Used when maxSteps is absent or 0. */
  epochs: number;
  /** Optimizer steps; wins over epochs when > 0 (as HF's max_steps). */
  maxSteps?: number;
  seed: number;
  /**
   * 'token-weighted' (default): the window's summed token losses over its label-token count.
   * 'mean-of-micro-means': each micro-batch's own mean, averaged (transformers < 4.46).
   */
  accumulation?: Accumulation;
  /** Evaluate before the first step and every N optimizer steps (0 = only after the last step). */
  evalEvery?: number;
  /** Generate from the sample prompts every N steps (0 = never). */
  sampleEvery?: number;
  sampleMaxNewTokens?: number;
  /** Save a checkpoint every N steps (0 = only on pause, stop and at the end). */
  checkpointEvery?: number;
  paging?: PagingOptions;
}

/**
 * A bare trainer (tests, checks): the run defaults' optimizer values, no warmup, no
 * accumulation, nothing periodic. Studio and CLI runs pass `trainerView(runSettings)` instead.
 */
export const DEFAULT_TRAIN_SETTINGS: TrainSettings = {
  lr: RUN_DEFAULTS.learningRate,
  ...ADAMW_BETAS,
  weightDecay: RUN_DEFAULTS.weightDecay,
  schedule: { name: 'linear', warmupRatio: 0 },
  maxGradNorm: RUN_DEFAULTS.maxGradNorm,
  gradAccum: 1,
  epochs: RUN_DEFAULTS.epochs,
  seed: RUN_DEFAULTS.seed,
  accumulation: 'token-weighted',
  evalEvery: 0,
  sampleEvery: 0,
  sampleMaxNewTokens: RUN_DEFAULTS.sampleTokens,
  checkpointEvery: 0,
};

export interface MicroRecord {
  lossSum: number;
  tokens: number;
}

export interface StepRecord {
  /** 0-based optimizer step. */
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  /** Pre-clip global gradient norm. */
  gradNorm: number;
  clipped: boolean;
  micro: MicroRecord[];
}

export interface EvalRecord {
  /** Optimizer steps done when evaluated. */
  step: number;
  loss: number;
  tokens: number;
}

export type TrainStatus = 'running' | 'paused' | 'stopped' | 'done' | 'device-lost' | 'error';

export type TrainEvent =
  | ({ type: 'step'; tokensPerS: number; gpuBytes: number; gpuPeakBytes: number; totalSteps: number } & StepRecord)
  | ({ type: 'eval' } & EvalRecord)
  | { type: 'sample'; step: number; index: number; prompt: number[]; tokens: number[]; text?: string }
  | { type: 'checkpoint'; step: number; reason: CheckpointReason }
  /** `error`: what failed, as thrown, when the status is 'error'. */
  | { type: 'status'; status: TrainStatus; step: number; message?: string; error?: unknown };

export type CheckpointReason = 'interval' | 'pause' | 'stop' | 'end';

/** Everything needed to continue a run exactly where it stopped. */
export interface TrainerSnapshot {
  settings: TrainSettings;
  /** Optimizer steps done. */
  step: number;
  totalSteps: number;
  /** Next micro-batch to read: epoch and index within it. */
  cursor: { epoch: number; microBatch: number };
  /** Shuffling is keyed by (seed, epoch) and dropout by (seed, micro-batch number): no hidden RNG state. */
  rng: { seed: number; dropoutSeed: number };
  history: StepRecord[];
  evals: EvalRecord[];
  lora: { key: string; shape: [number, number]; data: Float32Array }[];
  optimizer: OptimizerState;
}

export interface CheckpointSink {
  save(snapshot: TrainerSnapshot, reason: CheckpointReason): Promise<void>;
}

export interface TrainerDeps {
  gpu: Gpu;
  model: TrainableCausalLM;
  shaders: OptimizerShaders;
  train: BatchSource;
  /** In memory, or read a batch at a time (a stored dataset's split). */
  validation?: Batch[] | EvalBatches;
  samplePrompts?: number[][];
  eosTokenIds?: number[];
  decode?: (ids: number[]) => string;
  checkpoints?: CheckpointSink;
  onEvent?: (event: TrainEvent) => void;
}

export interface TrainResult {
  status: TrainStatus;
  step: number;
  history: StepRecord[];
  evals: EvalRecord[];
  message?: string;
}

export class Trainer {
  readonly settings: TrainSettings;
  readonly optimizer: AdamWOptimizer;
  readonly totalSteps: number;
  readonly windowsPerEpoch: number;
  /** Optimizer steps done. */
  step = 0;
  history: StepRecord[] = [];
  evals: EvalRecord[] = [];
  private pauseRequested = false;
  private stopRequested = false;
  private resumeWaiter: (() => void) | null = null;
  private deviceLost: string | null = null;
  private lastCheckpointStep: number | null = null;
  private readonly lostSignal: Promise<void>;

  constructor(
    private readonly deps: TrainerDeps,
    settings: Partial<TrainSettings> = {},
  ) {
    this.settings = { ...DEFAULT_TRAIN_SETTINGS, ...settings };
    const s = this.settings;
    if (!(s.gradAccum >= 1) || !Number.isInteger(s.gradAccum)) throw new RangeError(`gradAccum must be a positive integer, got ${s.gradAccum}`);
    this.windowsPerEpoch = Math.ceil(deps.train.microBatchesPerEpoch / s.gradAccum);
    this.totalSteps = s.maxSteps && s.maxSteps > 0 ? s.maxSteps : Math.max(1, Math.round(s.epochs * this.windowsPerEpoch));
    this.optimizer = new AdamWOptimizer(
      deps.gpu,
      deps.shaders,
      deps.model.lora.map((t) => ({ key: t.key, numel: t.shape[0] * t.shape[1], weight: t.weight, grad: t.grad })),
      { beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: s.weightDecay },
      s.paging,
    );
    this.optimizer.zeroGrad();
    this.lostSignal = deps.gpu.device.lost.then((info) => {
      this.deviceLost = `GPU device lost (${info.reason}): ${info.message || 'no detail'}`;
      this.resumeWaiter?.();
    });
  }

  get done(): boolean {
    return this.step >= this.totalSteps;
  }

  /** Micro-batches of optimizer step `step`, as [epoch, index] pairs. */
  window(step: number): [number, number][] {
    return stepWindow(step, this.deps.train.microBatchesPerEpoch, this.settings.gradAccum);
  }

  cursor(): { epoch: number; microBatch: number } {
    const [[epoch, microBatch]] = this.window(this.step);
    return { epoch, microBatch };
  }

  /** Finish the current optimizer step, save a checkpoint and wait for resume(). */
  pause(): void {
    this.pauseRequested = true;
  }

  resume(): void {
    this.pauseRequested = false;
    this.resumeWaiter?.();
  }

  /** Finish the current optimizer step, save a checkpoint and return. */
  stop(): void {
    this.stopRequested = true;
    this.resumeWaiter?.();
  }

  /** Runs optimizer steps until the total, `untilStep`, stop() or a lost device. */
  async run(untilStep = this.totalSteps): Promise<TrainResult> {
    const s = this.settings;
    const emit = (e: TrainEvent) => this.deps.onEvent?.(e);
    const end = Math.min(untilStep, this.totalSteps);
    emit({ type: 'status', status: 'running', step: this.step });
    try {
      // A fresh run with periodic evaluation measures the starting point too.
      if (this.step === 0 && !this.evals.length && (s.evalEvery ?? 0) > 0) await this.evaluate();
      while (this.step < end) {
        if (this.deviceLost) return this.lost();
        await this.trainStep();
        const every = (n: number | undefined) => !!n && n > 0 && this.step % n === 0;
        if (every(s.evalEvery) && this.step < this.totalSteps) await this.evaluate();
        if (every(s.sampleEvery)) await this.sample();
        if (every(s.checkpointEvery) && this.step < this.totalSteps) await this.checkpoint('interval');
        if (this.stopRequested) {
          await this.checkpoint('stop');
          emit({ type: 'status', status: 'stopped', step: this.step });
          return this.result('stopped');
        }
        if (this.pauseRequested) {
          await this.checkpoint('pause');
          emit({ type: 'status', status: 'paused', step: this.step });
          await new Promise<void>((resolve) => {
            this.resumeWaiter = resolve;
            if (!this.pauseRequested || this.stopRequested || this.deviceLost) resolve();
          });
          this.resumeWaiter = null;
          if (this.deviceLost) return this.lost();
          if (this.stopRequested) {
            emit({ type: 'status', status: 'stopped', step: this.step });
            return this.result('stopped');
          }
          emit({ type: 'status', status: 'running', step: this.step });
        }
      }
      if (this.done) {
        await this.evaluate();
        await this.checkpoint('end');
        emit({ type: 'status', status: 'done', step: this.step });
        return this.result('done');
      }
      emit({ type: 'status', status: 'paused', step: this.step });
      return this.result('paused');
    } catch (err) {
      // A failed read is often the first sign of a lost device; its lost promise settles soon after.
      await Promise.race([this.lostSignal, new Promise((resolve) => setTimeout(resolve, 250))]);
      if (this.deviceLost) return this.lost();
      const message = (err as Error).message;
      emit({ type: 'status', status: 'error', step: this.step, message, error: err });
      return { ...this.result('error'), message };
    }
  }

  /** One optimizer step: forward/backward over the window, clip, AdamW. */
  async trainStep(): Promise<StepRecord> {
    const { model, gpu } = this.deps;
    const s = this.settings;
    const started = performance.now();
    const window = this.window(this.step);
    const batches = await Promise.all(window.map(([e, i]) => this.deps.train.microBatch(e, i)));
    const counts = batches.map(labelTokens);
    const total = counts.reduce((a, b) => a + b, 0);
    if (total === 0) {
      throw new Error(`optimizer step ${this.step} has no label tokens in its ${batches.length} micro-batch(es) (every label is -100): drop examples that have nothing to learn`);
    }
    const perMicroMean = s.accumulation === 'mean-of-micro-means';
    const micro: MicroRecord[] = [];
    let inputTokens = 0;
    for (let k = 0; k < batches.length; k++) {
      const batch = batches[k];
      const denom = perMicroMean ? counts[k] * batches.length : total;
      const globalMicro = window[k][0] * this.deps.train.microBatchesPerEpoch + window[k][1];
      const r = await model.forwardBackward(batch, { gradScale: denom > 0 ? 1 / denom : 0, dropoutSeed: s.seed, step: globalMicro });
      if (r.tokens !== counts[k]) {
        throw new Error(`micro-batch ${window[k][1]} of epoch ${window[k][0]}: the model counted ${r.tokens} label tokens, the trainer ${counts[k]}`);
      }
      micro.push({ lossSum: r.lossSum, tokens: r.tokens });
      for (let i = 0; i < batch.attentionMask.length; i++) inputTokens += batch.attentionMask[i] ? 1 : 0;
    }
    const loss = perMicroMean
      ? micro.reduce((a, m) => a + m.lossSum / m.tokens, 0) / micro.length
      : micro.reduce((a, m) => a + m.lossSum, 0) / total;
    const lr = scheduledLr(s.lr, s.schedule, this.step, this.totalSteps);
    await this.optimizer.step(lr, s.maxGradNorm);
    const { norm } = await this.optimizer.readClip();
    const record: StepRecord = { step: this.step, epoch: window[0][0], loss, lr, gradNorm: norm, clipped: s.maxGradNorm > 0 && norm > s.maxGradNorm, micro };
    this.history.push(record);
    this.step++;
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
      throw new EngineError('diverged', `training diverged at step ${record.step}: loss ${loss}, gradient norm ${norm} (try a lower learning rate)`, { setting: 'learningRate' });
    }
    const seconds = (performance.now() - started) / 1000;
    const pool = gpu.pool.stats();
    this.deps.onEvent?.({ type: 'step', ...record, tokensPerS: inputTokens / Math.max(seconds, 1e-9), gpuBytes: pool.liveTotal, gpuPeakBytes: pool.peakTotal, totalSteps: this.totalSteps });
    return record;
  }

  /** Token-weighted loss over the validation split (sum of token losses / label tokens). */
  async evaluate(): Promise<EvalRecord | null> {
    const val = this.deps.validation;
    const count = Array.isArray(val) ? val.length : (val?.count ?? 0);
    if (!count) return null;
    let lossSum = 0;
    let tokens = 0;
    for (let k = 0; k < count; k++) {
      const b = Array.isArray(val) ? val[k] : await val!.batch(k);
      const r = await this.deps.model.loss(b);
      lossSum += r.lossSum;
      tokens += r.tokens;
    }
    const rec: EvalRecord = { step: this.step, loss: lossSum / tokens, tokens };
    this.evals.push(rec);
    this.deps.onEvent?.({ type: 'eval', ...rec });
    return rec;
  }

  /** Greedy generations from the fixed prompts, reported with the step number. */
  async sample(): Promise<void> {
    const prompts = this.deps.samplePrompts ?? [];
    for (let index = 0; index < prompts.length; index++) {
      const prompt = prompts[index];
      const r = await this.deps.model.generate(prompt, { maxNewTokens: this.settings.sampleMaxNewTokens ?? 32, temperature: 0, eosTokenIds: this.deps.eosTokenIds });
      this.deps.onEvent?.({ type: 'sample', step: this.step, index, prompt, tokens: r.tokens, text: this.deps.decode?.(r.tokens) });
    }
  }

  async snapshot(): Promise<TrainerSnapshot> {
    const { gpu, model } = this.deps;
    const lora = [];
    for (const t of model.lora) lora.push({ key: t.key, shape: t.shape, data: await gpu.readF32(t.weight, t.shape[0] * t.shape[1]) });
    return {
      settings: this.settings,
      step: this.step,
      totalSteps: this.totalSteps,
      cursor: this.cursor(),
      rng: { seed: this.settings.seed, dropoutSeed: this.settings.seed },
      history: this.history.map((h) => ({ ...h, micro: h.micro.map((m) => ({ ...m })) })),
      evals: this.evals.map((e) => ({ ...e })),
      lora,
      optimizer: await this.optimizer.exportState(),
    };
  }

  /** Continues from a snapshot: weights, moments, step, histories. */
  restore(snap: TrainerSnapshot): void {
    const { gpu, model } = this.deps;
    if (snap.totalSteps !== this.totalSteps) throw new Error(`checkpoint was made for ${snap.totalSteps} steps, this run has ${this.totalSteps}`);
    for (const t of model.lora) {
      const saved = snap.lora.find((l) => l.key === t.key);
      if (!saved) throw new Error(`checkpoint has no LoRA tensor "${t.key}"`);
      if (saved.data.length !== t.shape[0] * t.shape[1]) throw new Error(`checkpoint tensor "${t.key}" has ${saved.data.length} elements, the model's has ${t.shape[0] * t.shape[1]}`);
      gpu.write(t.weight, saved.data);
    }
    this.optimizer.importState(snap.optimizer);
    this.optimizer.zeroGrad();
    this.step = snap.step;
    this.history = snap.history.map((h) => ({ ...h, micro: h.micro.map((m) => ({ ...m })) }));
    this.evals = snap.evals.map((e) => ({ ...e }));
    this.lastCheckpointStep = snap.step;
  }

  private async checkpoint(reason: CheckpointReason): Promise<void> {
    if (!this.deps.checkpoints) return;
    await this.deps.checkpoints.save(await this.snapshot(), reason);
    this.lastCheckpointStep = this.step;
    this.deps.onEvent?.({ type: 'checkpoint', step: this.step, reason });
  }

  private lost(): TrainResult {
    const where = this.lastCheckpointStep === null ? 'no checkpoint was saved yet' : `resume from the checkpoint at step ${this.lastCheckpointStep}`;
    const message = `${this.deviceLost}; ${where}`;
    this.deps.onEvent?.({ type: 'status', status: 'device-lost', step: this.step, message });
    return { ...this.result('device-lost'), message };
  }

  private result(status: TrainStatus): TrainResult {
    return { status, step: this.step, history: this.history, evals: this.evals };
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
