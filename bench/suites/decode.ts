/**
 * `bench decode`: KV-cache decoding tokens/s on random NF4 models with the published phi-1_5 and
 * falcon-7b configs (LoRA r 16 on every linear layer, batch 1), greedy and sampled (the chat's
 * temperature 0.7, top-p 0.9). Prefill and per-token decode are separated: a generate of 1 new
 * token times the prefill, and the decode rate is (N − 1) / (time(N) − time(1)). `full` keeps
 * every layer and the real vocabulary; `cpu` keeps the real layer widths with fewer layers and a
 * smaller vocabulary; `smoke` narrows them too.
 *
 * It also times, on the CPU alone, choosing one sampled token from a 51200-word vocabulary
 * (phi-1_5's) with the sorting reference and with the selecting sampler decoding uses.
 */
import { BENCH_MODELS, benchModelConfig, cutNote, loadBenchModel } from '../models';
import { isEmulated, timeGpu, timingOf, type BenchContext, type BenchRow, type BenchSize, type BenchSuite, type Timing } from '../suite';
import { sampleToken, sampleTokenBySort, type SamplingOptions } from '../../workers/model/sampling';
import type { GenerateOptions } from '../../workers/model/types';
import { seededNormals, seededRandom } from '../../workers/util/random';

interface DecodePlan {
  layers: number | null;
  vocab: number | null;
  prompt: number;
  newTokens: number;
  runs: number;
  warmup: number;
  /** Tokens chosen per timing of the CPU sampler. */
  samplerDraws: number;
}

export function decodePlan(size: BenchSize): DecodePlan {
  if (size === 'full') return { layers: null, vocab: null, prompt: 32, newTokens: 64, runs: 5, warmup: 1, samplerDraws: 50 };
  if (size === 'cpu') return { layers: 1, vocab: 4096, prompt: 8, newTokens: 4, runs: 2, warmup: 0, samplerDraws: 20 };
  return { layers: 1, vocab: 512, prompt: 4, newTokens: 6, runs: 3, warmup: 1, samplerDraws: 3 };
}

/** The studio chat's defaults. */
const CHAT_SAMPLING: SamplingOptions = { temperature: 0.7, topP: 0.9 };
const MODES: { name: string; options: Omit<GenerateOptions, 'maxNewTokens'> }[] = [
  { name: 'greedy', options: {} },
  { name: 'sampled', options: { ...CHAT_SAMPLING, seed: 3 } },
];

const SAMPLER_VOCAB = 51200;
const SAMPLER_SETTINGS: { name: string; options: SamplingOptions }[] = [
  { name: 'temperature 0.7, top-p 0.9', options: CHAT_SAMPLING },
  { name: 'temperature 1', options: { temperature: 1 } },
  { name: 'temperature 1, top-k 50', options: { temperature: 1, topK: 50 } },
];

/**
 * Logits of two shapes: `peaked` is Zipf-like (−1.1·ln rank, ranks shuffled over the ids), as a
 * trained language model tends to give; `flat` is normal with standard deviation 2, like the
 * random benchmark models, whose nucleus holds most of the vocabulary.
 */
function samplerLogits(shape: 'peaked' | 'flat', seed: number): Float32Array {
  const noise = seededNormals(SAMPLER_VOCAB, seed, shape === 'flat' ? 2 : 0.01);
  if (shape === 'flat') return noise;
  const r = seededRandom(seed + 1);
  const ranks = Int32Array.from({ length: SAMPLER_VOCAB }, (_, i) => i + 1);
  for (let i = ranks.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [ranks[i], ranks[j]] = [ranks[j], ranks[i]];
  }
  return Float32Array.from(ranks, (k, i) => -1.1 * Math.log(k) + noise[i]);
}

/** Seconds per token of each sampler, alternating runs so both see the same machine load. */
function timeSamplers(logits: Float32Array, o: SamplingOptions, draws: number, runs: number): { reference: Timing; selection: Timing } {
  const samplers = { reference: sampleTokenBySort, selection: sampleToken };
  const samples = { reference: [] as number[], selection: [] as number[] };
  const chosen = { reference: [] as number[], selection: [] as number[] };
  for (let run = 0; run < runs; run++) {
    for (const name of ['reference', 'selection'] as const) {
      const random = seededRandom(run);
      const t0 = performance.now();
      for (let i = 0; i < draws; i++) chosen[name].push(samplers[name](logits, o, random));
      samples[name].push((performance.now() - t0) / 1000 / draws);
    }
  }
  if (chosen.reference.some((t, i) => t !== chosen.selection[i])) throw new Error('bench decode: the selecting sampler drew other tokens than the reference');
  return { reference: timingOf('cpu-clock', samples.reference), selection: timingOf('cpu-clock', samples.selection) };
}

async function run(ctx: BenchContext) {
  const { gpu, io, size, flags } = ctx;
  const plan = decodePlan(size);
  const runs = Number(flags.runs ?? plan.runs);
  const rows: BenchRow[] = [];
  const ratios: Record<string, number> = {};
  const notes = [
    `KV-cache decoding, batch 1, a ${plan.prompt}-token prompt; wall-clock time to queue completion, median of ${runs} runs after ${plan.warmup} warm-up.`,
    'greedy: the argmax runs on the GPU and writes the next input id there; only ids are read back, and each step is recorded before the previous token is awaited. sampled (temperature 0.7, top-p 0.9, the chat defaults): each step reads its logits back and the CPU draws.',
    'decode_tokens_per_s = (N − 1) / (time of N new tokens − time of 1 new token): the prefill is excluded.',
    'NF4 base linear layers (double quantization) through the matrix-vector NF4 kernel; LoRA r 16, alpha 32 on every linear layer, active.',
    `CPU sampler rows: seconds per token to choose one token from ${SAMPLER_VOCAB} logits on the CPU (no GPU), the sorting reference against the selecting sampler, runs alternated; both draw the same tokens (checked). peaked = Zipf-like logits (−1.1·ln rank), flat = normal logits with standard deviation 2.`,
  ];
  if (isEmulated(gpu.adapter)) notes.push('SwiftShader: CPU emulation of a GPU; the numbers say nothing about GPU performance.');
  for (const name of BENCH_MODELS) {
    const c = benchModelConfig(name, plan, size, flags);
    const note = cutNote(size, c, plan);
    if (note && !notes.includes(note)) notes.push(note);
    io.log(`${name}: ${c.layers} layers, hidden ${c.hidden}, vocab ${c.vocabSize}, NF4`);
    const model = await loadBenchModel(gpu, c, { seed: 7, maxPositions: plan.prompt + plan.newTokens });
    const prompt = Array.from({ length: plan.prompt }, (_, i) => (i * 131 + 17) % c.vocabSize);
    const shape = { model: name, layers: c.layers, hidden: c.hidden, vocab: c.vocabSize, prompt: plan.prompt, new_tokens: plan.newTokens, lora_r: 16 };
    for (const mode of MODES) {
      const generate = (n: number) => async () => {
        await model.generate(prompt, { ...mode.options, maxNewTokens: n });
      };
      const prefill = await timeGpu(gpu, generate(1), { warmup: plan.warmup, runs, wallClock: true });
      const whole = await timeGpu(gpu, generate(plan.newTokens), { warmup: plan.warmup, runs, wallClock: true });
      // Timing noise can make N tokens look no slower than 1 on tiny models: then the end-to-end
      // rate is the honest number.
      const incremental = (whole.median - prefill.median) / Math.max(plan.newTokens - 1, 1);
      const perToken = incremental > 0 ? incremental : whole.median / plan.newTokens;
      if (!(incremental > 0)) notes.push(`${name} ${mode.name}: ${plan.newTokens} tokens took no longer than 1 (timing noise); decode_tokens_per_s is the end-to-end rate.`);
      rows.push({ name: `prefill + 1 token ${name} ${mode.name}`, shape: { ...shape, mode: mode.name }, timing: prefill, metrics: { prompt_tokens_per_s: plan.prompt / prefill.median } });
      rows.push({
        name: `decode ${name} ${mode.name}`,
        shape: { ...shape, mode: mode.name },
        timing: whole,
        metrics: { decode_tokens_per_s: 1 / perToken, ms_per_token: perToken * 1000, end_to_end_tokens_per_s: plan.newTokens / whole.median, peak_bytes: gpu.pool.stats().peakTotal },
      });
      ratios[`${name} ${mode.name} decode tokens/s`] = 1 / perToken;
      io.log(`${name} ${mode.name}: prefill ${(prefill.median * 1000).toFixed(1)} ms, decode ${(1 / perToken).toFixed(2)} tokens/s`);
    }
    model.dispose();
    gpu.pool.trim();
  }
  for (const shape of ['peaked', 'flat'] as const) {
    const logits = samplerLogits(shape, 11);
    for (const s of SAMPLER_SETTINGS) {
      const t = timeSamplers(logits, s.options, plan.samplerDraws, Math.max(runs, 3));
      const label = `${s.name}, ${shape}`;
      const samplerShape = { vocab: SAMPLER_VOCAB, logits: shape, setting: s.name, draws: plan.samplerDraws };
      rows.push({ name: `CPU sampler by sorting, ${label}`, shape: samplerShape, timing: t.reference, metrics: { ms_per_token: t.reference.median * 1000 } });
      rows.push({ name: `CPU sampler by selection, ${label}`, shape: samplerShape, timing: t.selection, metrics: { ms_per_token: t.selection.median * 1000 } });
      ratios[`CPU sampler speed-up (sorting / selection), ${label}`] = t.reference.median / t.selection.median;
      io.log(`sampler ${label}: sorting ${(t.reference.median * 1000).toFixed(2)} ms, selection ${(t.selection.median * 1000).toFixed(3)} ms per token`);
    }
  }
  return { rows, ratios, notes };
}

export const decodeSuite: BenchSuite = {
  name: 'decode',
  description: 'KV-cache decoding tokens/s (greedy and sampled) on random NF4 models with the phi-1_5 and falcon-7b configs, and the CPU time of choosing a sampled token',
  run,
};
