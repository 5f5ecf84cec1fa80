import { Gpu } from '../../gpu/runtime';
import { CausalLM } from '../../model/causal-lm';
import { parseModelConfig } from '../../model/config';
import { allLinearNames } from '../../model/architecture';
import { SHADERS as MODEL_SHADERS } from '../../kernels/shader-sources';
import { openSafetensorsWeights } from '../../model/weights';
import type { Batch, LoraSettings } from '../../model/types';
import { makeBatch, prepareDataset, readRows, type Example, type PresetName } from '../../data';
import { PRESETS as MODEL_PRESETS, type Preset } from '../../load/presets';
import { tokenizerFromFiles, tokenizerFromUrl, type TextTokenizer } from '../../tokenizer';
import { ShuffledExamples } from '../../train/batches';
import { CheckpointStore } from '../../train/checkpoint-store';
import { crc32 } from '../../util/crc32';
import { SHADERS as OPTIMIZER_SHADERS } from '../../kernels/shader-sources';
import { SCHEDULE_NAMES, type ScheduleName } from '../../train/schedule';
import { Trainer, type TrainSettings } from '../../train/trainer';
import { parseMapping } from './data-check';
import { CliInputError, joinPath, type CliArgs, type CliCommand, type CliIo } from '../io';

const USAGE =
  'usage: train --model <hf-folder|demo> --data <file> [--steps N] [--epochs E] [--seed S] [--out DIR] [--resume] [--profile DIR] ' +
  '[--lr X] [--schedule cosine|linear|constant|constant_with_warmup] [--warmup-ratio F] [--batch B] [--accum A] [--max-length T] ' +
  '[--template ds1000|counseling | --map prompt=COL,response=COL] [--tokenizer DIR] [--r R] [--alpha A] [--dropout P] ' +
  '[--eval-every N] [--sample-every N] [--checkpoint-every N] [--stop-after N] [--optimizer-budget BYTES]';

/** Reads a model's files: the studio's own folders (presets with a URL) by HTTP, others through the CLI. */
interface ModelFiles {
  label: string;
  read(name: string): Promise<Uint8Array | null>;
  preset: Preset | null;
}

function modelFiles(spec: string, io: CliIo): ModelFiles {
  const preset = MODEL_PRESETS[spec] ?? null;
  if (preset) {
    if (preset.model.kind !== 'url') throw new CliInputError(`preset "${spec}" is downloaded from the hub (${preset.model.repo}); download it and pass its folder with --model`);
    const base = preset.model.baseUrl;
    return {
      label: spec,
      preset,
      read: async (name) => {
        const res = await fetch(base + name);
        const type = res.headers.get('content-type') ?? '';
        return res.ok && !type.includes('text/html') ? new Uint8Array(await res.arrayBuffer()) : null;
      },
    };
  }
  return {
    label: spec,
    preset: null,
    read: async (name) => {
      const path = joinPath(spec, name);
      return (await io.exists(path)) ? io.readFile(path) : null;
    },
  };
}

function num(args: CliArgs, name: string, fallback: number, check: (n: number) => boolean = Number.isFinite): number {
  const v = args.flags[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v === true || !check(n)) throw new CliInputError(`--${name} needs a valid number, got ${JSON.stringify(v)}`);
  return n;
}

const positiveInt = (n: number) => Number.isInteger(n) && n >= 1;
const nonNegativeInt = (n: number) => Number.isInteger(n) && n >= 0;

async function loadTokenizer(args: CliArgs, files: ModelFiles, io: CliIo): Promise<TextTokenizer> {
  const dir = typeof args.flags.tokenizer === 'string' ? args.flags.tokenizer : null;
  if (!dir && files.preset?.tokenizer.kind === 'url') return tokenizerFromUrl(new URL(files.preset.tokenizer.baseUrl, location.origin).href);
  const read = async (name: string) => {
    if (dir) {
      const path = joinPath(dir, name);
      return (await io.exists(path)) ? io.readText(path) : null;
    }
    const bytes = await files.read(name);
    return bytes ? new TextDecoder().decode(bytes) : null;
  };
  const json = await read('tokenizer.json');
  if (!json) throw new CliInputError(`no tokenizer.json in ${dir ?? files.label}; pass --tokenizer DIR`);
  return tokenizerFromFiles(json, await read('tokenizer_config.json'));
}

/** The prompt part (tokens before the first learned label) of an example, as a fixed sample prompt. */
function promptOf(e: Example, maxTokens = 96): number[] {
  let end = e.labels.findIndex((l) => l !== -100);
  if (end < 0) end = e.inputIds.length;
  return Array.from(e.inputIds.subarray(Math.max(0, end - maxTokens), end));
}

/**
 * `train`: fine-tunes LoRA adapters on a dataset with the studio's trainer, checkpointing to
 * IndexedDB (use --profile so checkpoints survive between runs, --resume to continue one).
 * One JSON line per step, eval and sample lines, and `{"ok":true,"steps","final_loss","adapter"}`.
 */
export const train: CliCommand = async (args, io) => {
  const f = args.flags;
  if (typeof f.model !== 'string' || typeof f.data !== 'string') throw new CliInputError(USAGE);
  const files = modelFiles(f.model, io);
  const preset = files.preset;
  const configBytes = await files.read('config.json');
  if (!configBytes) throw new CliInputError(`${files.label}: config.json is missing`);
  const config = parseModelConfig(new TextDecoder().decode(configBytes), joinPath(files.label, 'config.json'));

  // Data: template from the flag, else the preset's.
  const template = (typeof f.template === 'string' ? f.template : preset?.template) as PresetName | undefined;
  if (template && template !== 'ds1000' && template !== 'counseling') throw new CliInputError(`--template must be ds1000 or counseling, got "${template}"`);
  const dataName = f.data.split(/[\\/]/).pop() ?? f.data;
  const mapping = typeof f.map === 'string' ? parseMapping(f.map, dataName) : undefined;
  if (!template && !mapping) throw new CliInputError('say how rows become text: --template ds1000|counseling or --map prompt=COL,response=COL');
  const maxLength = num(args, 'max-length', preset?.train.seqLen ?? 512, positiveInt);
  const seed = num(args, 'seed', 42, Number.isInteger);
  const tokenizer = await loadTokenizer(args, files, io);
  const dataBytes = await io.readFile(f.data);
  const data = await prepareDataset(readRows(new Blob([dataBytes as BlobPart]), dataName), { preset: mapping ? undefined : template, mapping, tokenizer, maxLength, seed, file: dataName });
  for (const w of data.stats.warnings) io.log(`data: ${w}`);
  // Examples with no learned token after the shift teach nothing and would make an empty window.
  const learns = (e: Example) => e.labels.some((l, i) => i > 0 && l !== -100);
  const trainExamples = data.train.filter(learns);
  const validationExamples = data.validation.filter(learns);
  if (!trainExamples.length) throw new CliInputError(`${dataName}: no training example keeps a learned token at --max-length ${maxLength}`);
  if (trainExamples.length < data.train.length) io.log(`data: ${data.train.length - trainExamples.length} training examples without learned tokens are left out`);
  io.log(`data: ${data.train.length} training and ${data.validation.length} validation examples, ${data.stats.tokens.labelTokens} learned tokens`);

  // Settings: flags over the preset over defaults.
  const pt = preset?.train;
  const schedule = (typeof f.schedule === 'string' ? f.schedule : pt?.scheduler ?? 'linear') as ScheduleName;
  if (!SCHEDULE_NAMES.includes(schedule)) throw new CliInputError(`--schedule must be one of ${SCHEDULE_NAMES.join(', ')}`);
  const microBatch = num(args, 'batch', pt?.microBatch ?? 1, positiveInt);
  const settings: Partial<TrainSettings> = {
    lr: num(args, 'lr', pt?.learningRate ?? 2e-4, (n) => n > 0),
    weightDecay: num(args, 'weight-decay', 0, (n) => n >= 0),
    schedule: { name: schedule, warmupRatio: num(args, 'warmup-ratio', pt?.warmupRatio ?? 0, (n) => n >= 0 && n < 1) },
    maxGradNorm: num(args, 'max-grad-norm', 1, (n) => n >= 0),
    gradAccum: num(args, 'accum', pt?.gradAccumulation ?? 1, positiveInt),
    epochs: num(args, 'epochs', pt?.epochs ?? 1, (n) => n > 0),
    maxSteps: num(args, 'steps', 0, nonNegativeInt),
    seed,
    evalEvery: num(args, 'eval-every', 0, nonNegativeInt),
    sampleEvery: num(args, 'sample-every', 0, nonNegativeInt),
    sampleMaxNewTokens: num(args, 'sample-tokens', 24, positiveInt),
    checkpointEvery: num(args, 'checkpoint-every', 0, nonNegativeInt),
    paging: f['optimizer-budget'] !== undefined ? { budgetBytes: num(args, 'optimizer-budget', 0, (n) => n > 0), pageElems: 1 << 16 } : undefined,
  };
  const lora: LoraSettings = {
    r: num(args, 'r', preset?.lora.r ?? 8, positiveInt),
    alpha: num(args, 'alpha', preset?.lora.alpha ?? 16, (n) => n > 0),
    dropout: num(args, 'dropout', preset?.lora.dropout ?? 0.05, (n) => n >= 0 && n < 1),
    targetModules: preset?.lora.targetModules ?? allLinearNames(config),
  };

  // Same model, data, seed and settings → the same run id, so --resume finds its checkpoints.
  const runId = `train-${crc32(new TextEncoder().encode(JSON.stringify({ model: files.label, data: dataName, bytes: dataBytes.byteLength, crc: crc32(dataBytes), settings, lora, maxLength, microBatch, template, mapping }))).toString(16)}`;
  const gpu = await Gpu.create();
  const store = await CheckpointStore.open();
  let model: CausalLM | null = null;
  let trainer: Trainer | null = null;
  try {
    io.log(`model ${files.label}: ${config.arch}, ${config.layers} layers, hidden ${config.hidden}; NF4 base, LoRA r ${lora.r} on ${lora.targetModules.join(', ')}; run ${runId}`);
    const weights = await openSafetensorsWeights('', files.read);
    model = await CausalLM.load(gpu, MODEL_SHADERS, config, weights, {
      mode: 'nf4',
      lora: { settings: lora, init: { seed } },
      checkpointing: true,
      maxPositions: Math.max(config.maxPositions, maxLength + (settings.sampleMaxNewTokens ?? 0)),
    });
    const padId = tokenizer.padTokenId;
    const validation: Batch[] = [];
    for (let i = 0; i < validationExamples.length; i += microBatch) validation.push(makeBatch(validationExamples.slice(i, i + microBatch), padId));
    const samplePrompts = validationExamples.slice(0, 2).map((e) => promptOf(e));
    let stopAfter = num(args, 'stop-after', 0, nonNegativeInt);
    const t: Trainer = new Trainer(
      {
        gpu,
        model,
        shaders: OPTIMIZER_SHADERS,
        train: new ShuffledExamples({ examples: trainExamples, microBatchSize: microBatch, seed, shuffle: true, collate: (ex) => makeBatch(ex, padId) }),
        validation,
        samplePrompts,
        eosTokenIds: [tokenizer.eosTokenId],
        decode: (ids) => tokenizer.decode(ids),
        checkpoints: store.sink(runId),
        onEvent: (e) => {
          if (e.type === 'step') {
            io.line({ step: e.step + 1, loss: e.loss, lr: e.lr, grad_norm: e.gradNorm, tokens_per_s: Math.round(e.tokensPerS * 10) / 10, gpu_bytes: e.gpuBytes });
            io.log(`step ${e.step + 1}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} grad_norm ${e.gradNorm.toFixed(3)}`);
            if (stopAfter && e.step + 1 >= stopAfter) t.stop();
          } else if (e.type === 'eval') io.line({ step: e.step, eval_loss: e.loss, eval_tokens: e.tokens });
          else if (e.type === 'sample') io.line({ step: e.step, sample: e.index, text: e.text });
          else if (e.type === 'checkpoint') io.log(`checkpoint at step ${e.step} (${e.reason})`);
          else if (e.type === 'status' && e.message) io.log(`${e.status}: ${e.message}`);
        },
      },
      settings,
    );
    trainer = t;
    if (f.resume) {
      const loaded = await store.loadLatest(runId);
      if (!loaded) throw new CliInputError(`no checkpoint of this run (same model, data, seed and settings) to resume; run without --resume first (and keep the same --profile)`);
      for (const w of loaded.warnings) {
        io.log(`warning: ${w}`);
        io.line({ warning: w });
      }
      t.restore(loaded.snapshot);
      io.line({ resumed_from_step: loaded.info.step });
      if (stopAfter && stopAfter <= loaded.info.step) stopAfter = 0;
    } else {
      await store.deleteRun(runId);
    }
    const result = await t.run();
    if (result.status === 'error' || result.status === 'device-lost') return { exitCode: 1, result: { ok: false, status: result.status, steps: result.step, error: result.message } };
    const finalLoss = result.history.length ? result.history[result.history.length - 1].loss : null;
    let adapter: string | null = null;
    if (typeof f.out === 'string') {
      const exported = await model.exportAdapter(preset ? preset.name : f.model);
      await io.writeFile(joinPath(f.out, 'adapter_model.safetensors'), exported.adapterModel);
      await io.writeFile(joinPath(f.out, 'adapter_config.json'), exported.adapterConfig);
      adapter = f.out;
      io.log(`adapter written to ${f.out}`);
    }
    const evalLoss = result.evals.length ? result.evals[result.evals.length - 1].loss : null;
    return { exitCode: 0, result: { ok: true, status: result.status, steps: result.step, final_loss: finalLoss, eval_loss: evalLoss, adapter } };
  } finally {
    trainer?.dispose();
    model?.dispose();
    store.close();
    gpu.destroy();
  }
};
