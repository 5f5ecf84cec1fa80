/**
 * Checks the engine against a folder of the hf-golden format (config.json, model.safetensors,
 * adapter_config.json, adapter_model.safetensors, golden.safetensors): forward without and with
 * LoRA, loss, LoRA gradients, embedding-output gradient and greedy decoding, each compared as
 * max|ours − golden| / max|golden| (logits only where attention_mask is 1).
 */
import type { Gpu } from '../gpu/runtime';
import { SafetensorsFile } from '../formats/safetensors';
import { parseModelConfig } from './config';
import { CausalLM, ModelInputError, type WeightMode } from './causal-lm';
import { parsePeftConfig } from './lora-adapter';
import type { ModelShaders } from '../kernels/shaders';
import type { Batch } from './types';
import { openSafetensorsWeights, type WeightInfo, type WeightSource } from './weights';

export const GOLDEN_TOLERANCE = 1e-5;

export interface TensorComparison {
  name: string;
  rel: number;
  maxAbsDiff: number;
}

/** What one engine produced for the golden inputs. */
export interface EngineOutputs {
  tensors: Map<string, Float32Array>;
  tokens: number[];
}

export interface GoldenReport {
  ok: boolean;
  worst: { name: string; rel: number };
  tokens_equal: boolean;
  tensors: TensorComparison[];
  /** --nf4 only: the NF4 engine against the golden numbers (reported, not required to pass). */
  nf4?: { golden_worst: { name: string; rel: number }; golden_tokens_equal: boolean; golden_tensors: TensorComparison[] };
}

/** Returns a file's bytes, or null when it does not exist. */
export type FileReader = (path: string) => Promise<Uint8Array | null>;

const join = (dir: string, name: string) => (dir === '' || dir.endsWith('/') ? dir + name : `${dir}/${name}`);

/** max|a − b| / max|b| over the selected elements (all when `select` is absent). */
export function compare(name: string, ours: ArrayLike<number>, ref: ArrayLike<number>, select?: (i: number) => boolean): TensorComparison {
  if (ours.length !== ref.length) return { name, rel: Infinity, maxAbsDiff: Infinity };
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    if (select && !select(i)) continue;
    const d = Math.abs(ours[i] - ref[i]);
    diff = Number.isNaN(d) || Number.isNaN(diff) ? NaN : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  if (Number.isNaN(diff)) return { name, rel: Infinity, maxAbsDiff: Infinity };
  return { name, rel: scale === 0 ? diff : diff / scale, maxAbsDiff: diff };
}

interface GoldenInputs {
  batch: Batch;
  prompt: number[];
  newTokens: number;
}

function goldenInputs(golden: SafetensorsFile): GoldenInputs {
  const shape = golden.info('input_ids').shape;
  if (shape.length !== 2) throw new ModelInputError(`${golden.file}: input_ids must be [batch, seq], found [${shape.join(', ')}]`);
  const [batch, seq] = shape;
  const batchData: Batch = { inputIds: golden.ints('input_ids'), attentionMask: golden.ints('attention_mask'), labels: golden.ints('labels'), batch, seq };
  return { batch: batchData, prompt: Array.from(golden.ints('gen_prompt_ids')), newTokens: golden.info('gen_new_ids').shape.reduce((a, b) => a * b, 1) };
}

/** Runs one engine (exact or NF4, or exact on given replacement weights) over the golden inputs. */
export async function runEngine(gpu: Gpu, model: CausalLM, inputs: GoldenInputs, log: (m: string) => void): Promise<EngineOutputs> {
  const tensors = new Map<string, Float32Array>();
  const { batch } = inputs;
  log('forward without LoRA');
  const base = await model.forward(batch, { noLora: true });
  tensors.set('logits_no_lora', base.logits);
  tensors.set('loss_no_lora', Float32Array.of(base.lossSum / base.tokens));
  log('forward with LoRA');
  const withLora = await model.forward(batch);
  tensors.set('logits', withLora.logits);
  tensors.set('loss', Float32Array.of(withLora.lossSum / withLora.tokens));
  tensors.set('embedding_output', withLora.embeddingOutput);
  log('backward');
  model.zeroGrads();
  const fb = await model.forwardBackward(batch, { gradScale: 1 / withLora.tokens }, { embeddingGrad: true });
  tensors.set('embedding_output.grad', fb.embeddingGrad!);
  for (const t of model.lora) tensors.set(`${t.key}.grad`, await gpu.readF32(t.grad, t.shape[0] * t.shape[1]));
  log(`greedy decoding of ${inputs.newTokens} tokens`);
  const stepLogits: Float32Array[] = [];
  const gen = await model.generate(inputs.prompt, { maxNewTokens: inputs.newTokens, onLogits: (l) => stepLogits.push(l.slice()) });
  const all = new Float32Array(stepLogits.length * model.config.vocabSize);
  stepLogits.forEach((l, i) => all.set(l, i * model.config.vocabSize));
  tensors.set('gen_step_logits', all);
  return { tensors, tokens: gen.tokens };
}

/** Compares engine outputs with reference tensors (golden file or another engine). */
export function compareOutputs(ours: EngineOutputs, ref: (name: string) => Float32Array | null, mask: Int32Array, vocab: number, refTokens: number[]): { tensors: TensorComparison[]; tokensEqual: boolean } {
  const tensors: TensorComparison[] = [];
  for (const [name, value] of ours.tensors) {
    const r = ref(name);
    if (!r) continue;
    const select = name === 'logits' || name === 'logits_no_lora' ? (i: number) => mask[Math.floor(i / vocab)] !== 0 : undefined;
    tensors.push(compare(name, value, r, select));
  }
  const tokensEqual = ours.tokens.length === refTokens.length && ours.tokens.every((t, i) => t === refTokens[i]);
  return { tensors, tokensEqual };
}

function worstOf(tensors: TensorComparison[]): { name: string; rel: number } {
  let worst = { name: tensors[0]?.name ?? '', rel: tensors[0]?.rel ?? 0 };
  for (const t of tensors) if (!(t.rel <= worst.rel)) worst = { name: t.name, rel: t.rel };
  return worst;
}

/** Replaces some tensors of a source (the exact engine on dequantized NF4 weights). */
class OverriddenSource implements WeightSource {
  constructor(
    private readonly inner: WeightSource,
    private readonly replaced: Map<string, Float32Array>,
  ) {}
  get label(): string {
    return `${this.inner.label} (dequantized NF4 linear weights)`;
  }
  names(): string[] {
    return this.inner.names();
  }
  info(name: string): WeightInfo | undefined {
    return this.inner.info(name);
  }
  async readF32(name: string): Promise<Float32Array> {
    return this.replaced.get(name) ?? this.inner.readF32(name);
  }
  readRaw(name: string): Promise<Uint8Array> {
    return this.inner.readRaw(name);
  }
}

export async function runGoldenCheck(gpu: Gpu, shaders: ModelShaders, folder: string, read: FileReader, options: { nf4?: boolean; log?: (m: string) => void } = {}): Promise<GoldenReport> {
  const log = options.log ?? (() => {});
  const need = async (name: string) => {
    const bytes = await read(join(folder, name));
    if (!bytes) throw new ModelInputError(`${join(folder, name)} is missing (a golden folder holds config.json, model.safetensors, adapter_config.json, adapter_model.safetensors, golden.safetensors)`);
    return bytes;
  };
  const text = async (name: string) => new TextDecoder().decode(await need(name));
  const config = parseModelConfig(await text('config.json'), join(folder, 'config.json'));
  const weights = await openSafetensorsWeights(folder, read);
  const settings = parsePeftConfig(await text('adapter_config.json'), join(folder, 'adapter_config.json'));
  const adapter = new SafetensorsFile(await need('adapter_model.safetensors'), join(folder, 'adapter_model.safetensors'));
  const golden = new SafetensorsFile(await need('golden.safetensors'), join(folder, 'golden.safetensors'));
  const inputs = goldenInputs(golden);
  const mode: WeightMode = options.nf4 ? 'nf4' : 'exact';
  const positions = Math.max(config.maxPositions, inputs.batch.seq, inputs.prompt.length + inputs.newTokens);
  log(`${config.arch}: ${config.layers} layers, hidden ${config.hidden}, vocab ${config.vocabSize}; ${mode} weights; batch ${inputs.batch.batch} x ${inputs.batch.seq}`);
  const load = (source: WeightSource, m: WeightMode) => CausalLM.load(gpu, shaders, config, source, { mode: m, lora: { settings, init: { adapter } }, maxPositions: positions });
  const goldenRef = (name: string) => (golden.has(name) ? golden.f32(name) : null);
  const goldenTokens = Array.from(golden.ints('gen_new_ids'));
  const model = await load(weights, mode);
  let ours: EngineOutputs;
  let dequantized: Map<string, Float32Array> | null = null;
  try {
    ours = await runEngine(gpu, model, inputs, log);
    if (options.nf4) dequantized = await model.dequantizedLinearWeights();
  } finally {
    model.dispose();
  }
  const vsGolden = compareOutputs(ours, goldenRef, inputs.batch.attentionMask, config.vocabSize, goldenTokens);
  if (!options.nf4) {
    const worst = worstOf(vsGolden.tensors);
    const ok = vsGolden.tensors.every((t) => t.rel <= GOLDEN_TOLERANCE) && vsGolden.tokensEqual && vsGolden.tensors.length > 0;
    return { ok, worst, tokens_equal: vsGolden.tokensEqual, tensors: vsGolden.tensors };
  }
  log('exact engine on the dequantized NF4 weights');
  const exactModel = await load(new OverriddenSource(weights, dequantized!), 'exact');
  let exact: EngineOutputs;
  try {
    exact = await runEngine(gpu, exactModel, inputs, log);
  } finally {
    exactModel.dispose();
  }
  const vsExact = compareOutputs(ours, (name) => exact.tensors.get(name) ?? null, inputs.batch.attentionMask, config.vocabSize, exact.tokens);
  const ok = vsExact.tensors.every((t) => t.rel <= GOLDEN_TOLERANCE) && vsExact.tokensEqual && vsExact.tensors.length > 0;
  return {
    ok,
    worst: worstOf(vsExact.tensors),
    tokens_equal: vsExact.tokensEqual,
    tensors: vsExact.tensors,
    nf4: { golden_worst: worstOf(vsGolden.tensors), golden_tokens_equal: vsGolden.tokensEqual, golden_tensors: vsGolden.tensors },
  };
}
