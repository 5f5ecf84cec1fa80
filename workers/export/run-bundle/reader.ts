/**
 * Reads a run bundle back (docs/RUN-BUNDLE.md): run.json, the adapter, the AdamW moments, the
 * examples and the order, each checked against the format and against each other (keys, shapes,
 * finite values, token ids in the vocabulary, the order inside the training split), with errors
 * naming the file and the field or tensor. What comes back is what a trainer needs to continue:
 * a snapshot and the examples.
 */
import type { Example } from '../../data/types';
import { SafetensorsFile, type TensorInfo } from '../../formats/safetensors';
import { validateRunSettings } from '../../run/settings';
import { trainerView } from '../../run/settings';
import type { StepRecord, TrainerSnapshot } from '../../train/trainer';
import { stepWindow } from '../../train/batches';
import { remainingOrder, type RemainingOrder } from './order';
import { windowsPerEpoch } from './run-facts';
import { RUN_BUNDLE_FORMAT, RUN_BUNDLE_VERSION, type RunJson } from './run-json';

/** A bundle's files by their path in it (`run.json`, `adapter/adapter_model.safetensors`, …); null when absent. */
export interface BundleFiles {
  label: string;
  read(path: string): Promise<Uint8Array | null>;
}

export class RunBundleError extends Error {
  constructor(
    readonly file: string,
    readonly field: string | null,
    message: string,
  ) {
    super(`${file}${field ? ` (${field})` : ''}: ${message}`);
    this.name = 'RunBundleError';
  }
}

export interface ReadRunBundle {
  run: RunJson;
  adapterConfig: string;
  /** What the trainer restores: LoRA weights, moments, step, logs (its settings are the run's trainer view). */
  snapshot: TrainerSnapshot;
  train: Example[];
  validation: Example[];
  order: RemainingOrder;
}

const decoder = new TextDecoder();

async function need(files: BundleFiles, path: string): Promise<Uint8Array> {
  const bytes = await files.read(path);
  if (!bytes) throw new RunBundleError(`${files.label}/${path}`, null, 'missing from the bundle');
  return bytes;
}

function safetensors(files: BundleFiles, path: string, bytes: Uint8Array): SafetensorsFile {
  try {
    return new SafetensorsFile(bytes, `${files.label}/${path}`);
  } catch (err) {
    throw new RunBundleError(`${files.label}/${path}`, null, (err as Error).message);
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** run.json checked field by field: the format, the numbers the continuation relies on, the settings. */
export function checkRunJson(text: string, file = 'run.json'): RunJson {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new RunBundleError(file, null, `not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(v)) throw new RunBundleError(file, null, 'not a JSON object');
  if (v.format !== RUN_BUNDLE_FORMAT) throw new RunBundleError(file, 'format', `expected "${RUN_BUNDLE_FORMAT}", found ${JSON.stringify(v.format)}`);
  if (v.version !== RUN_BUNDLE_VERSION) throw new RunBundleError(file, 'version', `this studio reads version ${RUN_BUNDLE_VERSION}, the bundle is version ${JSON.stringify(v.version)}`);
  const obj = (path: string): Json => {
    const parts = path.split('.');
    let at: unknown = v;
    for (const p of parts) at = isObject(at) ? at[p] : undefined;
    if (!isObject(at)) throw new RunBundleError(file, path, 'missing or not an object');
    return at;
  };
  const int = (path: string, min = 0): number => {
    const [head, key] = path.includes('.') ? [obj(path.slice(0, path.lastIndexOf('.'))), path.slice(path.lastIndexOf('.') + 1)] : [v as Json, path];
    const n = head[key];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min) throw new RunBundleError(file, path, `expected an integer ≥ ${min}, found ${JSON.stringify(n)}`);
    return n;
  };
  const finite = (path: string): number => {
    const head = obj(path.slice(0, path.lastIndexOf('.')));
    const n = head[path.slice(path.lastIndexOf('.') + 1)];
    if (typeof n !== 'number' || !Number.isFinite(n)) throw new RunBundleError(file, path, `expected a number, found ${JSON.stringify(n)}`);
    return n;
  };
  obj('base');
  if (!isObject(obj('base').config)) throw new RunBundleError(file, 'base.config', 'missing or not an object');
  if (typeof obj('base').id !== 'string') throw new RunBundleError(file, 'base.id', 'missing or not a string');
  const q = obj('quantization');
  if (q.type !== 'nf4' && q.type !== 'none') throw new RunBundleError(file, 'quantization.type', `expected "nf4" or "none", found ${JSON.stringify(q.type)}`);
  const problems = validateRunSettings(v.settings);
  if (problems.length) throw new RunBundleError(file, `settings.${problems[0].setting}`, problems[0].message);
  const step = int('step');
  const total = int('schedule.total_steps', 1);
  if (step > total) throw new RunBundleError(file, 'step', `${step} steps done but the run has ${total}`);
  if (int('schedule.position') !== step) throw new RunBundleError(file, 'schedule.position', `must equal step (${step})`);
  const optimizerStep = int('optimizer.step');
  if (optimizerStep !== step) throw new RunBundleError(file, 'optimizer.step', `AdamW has taken ${optimizerStep} steps but the run ${step}`);
  for (const f of ['optimizer.beta1', 'optimizer.beta2', 'optimizer.eps', 'optimizer.weight_decay', 'optimizer.max_grad_norm', 'schedule.learning_rate']) finite(f);
  int('schedule.warmup_steps');
  int('data.train_examples', 1);
  int('data.validation_examples');
  int('data.pad_token_id');
  if (v.accumulation !== 'token-weighted') throw new RunBundleError(file, 'accumulation', `expected "token-weighted", found ${JSON.stringify(v.accumulation)}`);
  const run = v as unknown as RunJson;
  const s = run.settings;
  if (run.seed !== s.seed) throw new RunBundleError(file, 'seed', `${run.seed} differs from settings.seed ${s.seed}`);
  if (run.schedule.learning_rate !== s.learningRate) throw new RunBundleError(file, 'schedule.learning_rate', `differs from settings.learningRate ${s.learningRate}`);
  if (!isObject(run.log) || !Array.isArray(run.log.train) || !Array.isArray(run.log.eval)) throw new RunBundleError(file, 'log', 'expected {train: [...], eval: [...]}');
  return run;
}

/** The adapter and the moments: the same keys, F32 [r, in] / [out, r] shapes, finite values. */
function readTensors(files: BundleFiles, run: RunJson, adapter: SafetensorsFile, optimizer: SafetensorsFile, adapterPath: string, optimizerPath: string) {
  const f32 = (file: SafetensorsFile, path: string, name: string, shape: number[]): Float32Array => {
    const info: TensorInfo = file.info(name);
    if (info.dtype !== 'F32') throw new RunBundleError(`${files.label}/${path}`, name, `expected F32, found ${info.dtype}`);
    if (info.shape.join(',') !== shape.join(',')) throw new RunBundleError(`${files.label}/${path}`, name, `shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
    const data = file.f32(name).slice();
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) throw new RunBundleError(`${files.label}/${path}`, name, `holds ${data[i]} at index ${i}`);
    return data;
  };
  const loraKeys = adapter.names.filter((k) => /\.lora_[AB]\.weight$/.test(k));
  if (loraKeys.length !== adapter.names.length) throw new RunBundleError(`${files.label}/${adapterPath}`, adapter.names.find((k) => !loraKeys.includes(k)) ?? null, 'not a LoRA tensor (…lora_A.weight / …lora_B.weight)');
  if (!loraKeys.length) throw new RunBundleError(`${files.label}/${adapterPath}`, null, 'holds no LoRA tensor');
  const expected = new Set(loraKeys.flatMap((k) => [`${k}.exp_avg`, `${k}.exp_avg_sq`]));
  for (const name of optimizer.names) if (!expected.has(name)) throw new RunBundleError(`${files.label}/${optimizerPath}`, name, 'no such LoRA tensor in the adapter (expected `<adapter key>.exp_avg` / `.exp_avg_sq`)');
  for (const name of expected) if (!optimizer.has(name)) throw new RunBundleError(`${files.label}/${optimizerPath}`, name, 'missing');
  const meta = optimizer.header.metadata;
  if (meta.format !== 'qlora-studio-optimizer') throw new RunBundleError(`${files.label}/${optimizerPath}`, '__metadata__.format', `expected "qlora-studio-optimizer", found ${JSON.stringify(meta.format)}`);
  if (meta.step !== String(run.optimizer.step)) throw new RunBundleError(`${files.label}/${optimizerPath}`, '__metadata__.step', `${JSON.stringify(meta.step)} differs from run.json optimizer.step ${run.optimizer.step}`);
  const r = run.lora.r;
  const lora = loraKeys.map((key) => {
    const shape = adapter.info(key).shape;
    const isA = key.endsWith('.lora_A.weight');
    if (shape.length !== 2 || (isA ? shape[0] : shape[1]) !== r) throw new RunBundleError(`${files.label}/${adapterPath}`, key, `shape [${shape.join(', ')}] does not have rank ${r} (run.json lora.r)`);
    return { key, shape: [shape[0], shape[1]] as [number, number], data: f32(adapter, adapterPath, key, shape) };
  });
  const tensors = lora.map((l) => ({ key: l.key, expAvg: f32(optimizer, optimizerPath, `${l.key}.exp_avg`, l.shape), expAvgSq: f32(optimizer, optimizerPath, `${l.key}.exp_avg_sq`, l.shape) }));
  for (const t of tensors) {
    const i = t.expAvgSq.findIndex((x) => x < 0);
    if (i >= 0) throw new RunBundleError(`${files.label}/${optimizerPath}`, `${t.key}.exp_avg_sq`, `negative second moment ${t.expAvgSq[i]} at index ${i}`);
  }
  return { lora, optimizer: { step: run.optimizer.step, tensors } };
}

/** data/<split>.safetensors as examples: offsets from 0 to the token count, ids in the vocabulary, labels −100 or the id. */
function readSplit(files: BundleFiles, path: string, file: SafetensorsFile, count: number, vocab: number): Example[] {
  const where = `${files.label}/${path}`;
  for (const [name, dtype] of [['input_ids', 'I32'], ['labels', 'I32'], ['offsets', 'I64']] as const) {
    if (!file.has(name)) throw new RunBundleError(where, name, 'missing');
    const info = file.info(name);
    if (info.dtype !== dtype || info.shape.length !== 1) throw new RunBundleError(where, name, `expected ${dtype} [n], found ${info.dtype} [${info.shape.join(', ')}]`);
  }
  const extra = file.names.find((n) => !['input_ids', 'labels', 'offsets'].includes(n));
  if (extra) throw new RunBundleError(where, extra, 'not a tensor of the format (input_ids, labels, offsets)');
  const ids = file.ints('input_ids');
  const labels = file.ints('labels');
  const offsets = file.ints('offsets');
  if (offsets.length !== count + 1) throw new RunBundleError(where, 'offsets', `${offsets.length - 1} examples, run.json says ${count}`);
  if (labels.length !== ids.length) throw new RunBundleError(where, 'labels', `${labels.length} labels for ${ids.length} input ids`);
  if (offsets[0] !== 0 || offsets[count] !== ids.length) throw new RunBundleError(where, 'offsets', `must run from 0 to ${ids.length}, runs from ${offsets[0]} to ${offsets[count]}`);
  const out: Example[] = [];
  for (let i = 0; i < count; i++) {
    if (!(offsets[i + 1] > offsets[i])) throw new RunBundleError(where, 'offsets', `example ${i} is empty or the offsets go backwards (${offsets[i]} → ${offsets[i + 1]})`);
    out.push({ inputIds: ids.slice(offsets[i], offsets[i + 1]), labels: labels.slice(offsets[i], offsets[i + 1]) });
  }
  for (let t = 0; t < ids.length; t++) {
    if (ids[t] < 0 || ids[t] >= vocab) throw new RunBundleError(where, 'input_ids', `token ${ids[t]} at position ${t} is outside the vocabulary (${vocab})`);
    if (labels[t] !== -100 && labels[t] !== ids[t]) throw new RunBundleError(where, 'labels', `label ${labels[t]} at position ${t} is neither −100 nor the token there (${ids[t]})`);
  }
  return out;
}

/** data/<split>.jsonl: each example's row text (kept, so a continued run exports its text form again). */
function attachText(where: string, text: string, examples: Example[]): void {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length !== examples.length) throw new RunBundleError(where, null, `${lines.length} lines for ${examples.length} examples`);
  lines.forEach((line, i) => {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      throw new RunBundleError(where, `line ${i + 1}`, `not valid JSON (${(err as Error).message})`);
    }
    const chat = isObject(v) && Array.isArray(v.messages) && v.messages.every((m) => isObject(m) && typeof m.role === 'string' && typeof m.content === 'string');
    const pair = isObject(v) && typeof v.prompt === 'string' && typeof v.completion === 'string';
    if (!chat && !pair) throw new RunBundleError(where, `line ${i + 1}`, 'expected {"prompt", "completion"} or {"messages": [{"role", "content"}, …]}');
    const o = v as Json;
    examples[i].text = chat ? { messages: (o.messages as { role: string; content: string }[]).map((m) => ({ role: m.role, content: m.content })) } : { prompt: o.prompt as string, completion: o.completion as string };
  });
}

/** data/order.safetensors: every remaining step's micro-batches, equal to the order the trainer derives from the run's seed. */
function checkOrder(files: BundleFiles, path: string, file: SafetensorsFile, run: RunJson, train: number): RemainingOrder {
  const where = `${files.label}/${path}`;
  if (!file.has('micro_batches')) throw new RunBundleError(where, 'micro_batches', 'missing');
  const info = file.info('micro_batches');
  const s = run.settings;
  const rows = (run.schedule.total_steps - run.step) * s.gradAccum;
  if (info.dtype !== 'I32' || info.shape.join(',') !== `${rows},${s.batchSize}`) throw new RunBundleError(where, 'micro_batches', `expected I32 [${rows}, ${s.batchSize}], found ${info.dtype} [${info.shape.join(', ')}]`);
  const meta = file.header.metadata;
  for (const [k, want] of [['first_step', run.step], ['grad_accum', s.gradAccum], ['batch_size', s.batchSize]] as const) {
    if (meta[k] !== String(want)) throw new RunBundleError(where, `__metadata__.${k}`, `${JSON.stringify(meta[k])}, run.json says ${want}`);
  }
  const given = file.ints('micro_batches');
  const derived = remainingOrder({ examples: train, settings: s, fromStep: run.step, totalSteps: run.schedule.total_steps });
  for (let i = 0; i < given.length; i++) {
    if (given[i] < -1 || given[i] >= train) throw new RunBundleError(where, 'micro_batches', `index ${given[i]} at row ${Math.floor(i / s.batchSize)} is outside the training split (${train} examples)`);
    if (given[i] !== derived.microBatches[i]) {
      throw new RunBundleError(where, 'micro_batches', `row ${Math.floor(i / s.batchSize)} (step ${run.step + Math.floor(i / s.batchSize / s.gradAccum) + 1}) differs from the order the studio's trainer feeds for seed ${s.seed}; the studio continues only in its own order`);
    }
  }
  return derived;
}

/** The whole bundle, checked; `vocab` overrides run.json's base.config.vocab_size (the loaded model's). */
export async function readRunBundle(files: BundleFiles, options: { vocab?: number } = {}): Promise<ReadRunBundle> {
  const run = checkRunJson(decoder.decode(await need(files, 'run.json')), `${files.label}/run.json`);
  const adapterConfig = decoder.decode(await need(files, 'adapter/adapter_config.json'));
  const adapterPath = 'adapter/adapter_model.safetensors';
  const optimizerPath = 'optimizer/optimizer.safetensors';
  const adapter = safetensors(files, adapterPath, await need(files, adapterPath));
  const optimizer = safetensors(files, optimizerPath, await need(files, optimizerPath));
  const { lora, optimizer: state } = readTensors(files, run, adapter, optimizer, adapterPath, optimizerPath);
  const vocab = options.vocab ?? Number(run.base.config.vocab_size);
  if (!Number.isInteger(vocab) || vocab <= 0) throw new RunBundleError(`${files.label}/run.json`, 'base.config.vocab_size', `expected a positive integer, found ${JSON.stringify(run.base.config.vocab_size)}`);
  const split = async (name: 'train' | 'validation', count: number) => {
    const path = `data/${name}.safetensors`;
    const examples = readSplit(files, path, safetensors(files, path, await need(files, path)), count, vocab);
    const jsonl = await files.read(`data/${name}.jsonl`);
    if (jsonl) attachText(`${files.label}/data/${name}.jsonl`, decoder.decode(jsonl), examples);
    return examples;
  };
  const train = await split('train', run.data.train_examples);
  const validation = await split('validation', run.data.validation_examples);
  const orderPath = 'data/order.safetensors';
  const order = checkOrder(files, orderPath, safetensors(files, orderPath, await need(files, orderPath)), run, train.length);

  const settings = trainerView(run.settings);
  const perEpoch = windowsPerEpoch(train.length, run.settings);
  const microPerEpoch = Math.ceil(train.length / run.settings.batchSize);
  const history: StepRecord[] = run.log.train.map((h, i) => {
    if (!Number.isInteger(h.step) || ![h.loss, h.lr, h.grad_norm].every(Number.isFinite)) throw new RunBundleError(`${files.label}/run.json`, `log.train[${i}]`, 'expects an integer step and finite loss, lr and grad_norm');
    return { step: h.step - 1, epoch: Math.floor((h.step - 1) / perEpoch), loss: h.loss, lr: h.lr, gradNorm: h.grad_norm, clipped: settings.maxGradNorm > 0 && h.grad_norm > settings.maxGradNorm, micro: [] };
  });
  const [[epoch, microBatch]] = run.step < run.schedule.total_steps ? stepWindow(run.step, microPerEpoch, run.settings.gradAccum) : [[Math.floor(run.step / perEpoch), 0]];
  const snapshot: TrainerSnapshot = {
    settings,
    step: run.step,
    totalSteps: run.schedule.total_steps,
    cursor: { epoch, microBatch },
    rng: { seed: run.seed, dropoutSeed: run.seed },
    history,
    evals: run.log.eval.map((e) => ({ step: e.step, loss: e.eval_loss, tokens: 0 })),
    lora,
    optimizer: state,
  };
  return { run, adapterConfig, snapshot, train, validation, order };
}

/** The bundle's adapter against the model it continues on: the same LoRA keys, each of the same shape. */
export function checkAgainstModel(bundle: ReadRunBundle, model: { key: string; shape: [number, number] }[], label: string): void {
  const where = `${label}/adapter/adapter_model.safetensors`;
  const have = new Map(bundle.snapshot.lora.map((l) => [l.key, l.shape]));
  for (const t of model) {
    const shape = have.get(t.key);
    if (!shape) throw new RunBundleError(where, t.key, `missing: the model (LoRA r ${bundle.run.lora.r} on ${bundle.run.lora.target_modules.join(', ')}) has this tensor`);
    if (shape[0] !== t.shape[0] || shape[1] !== t.shape[1]) throw new RunBundleError(where, t.key, `shape [${shape.join(', ')}], the model's is [${t.shape.join(', ')}]`);
    have.delete(t.key);
  }
  const extra = [...have.keys()][0];
  if (extra) throw new RunBundleError(where, extra, 'the model has no such LoRA tensor');
}
