/**
 * `bench decode`: KV-cache decoding tokens/s on random NF4 models with the published phi-1_5 and
 * falcon-7b configs (LoRA r 16 on every linear layer, batch 1, greedy). Prefill and per-token
 * decode are separated: a generate of 1 new token times the prefill, and the decode rate is
 * (N − 1) / (time(N) − time(1)). `full` keeps every layer and the real vocabulary; `cpu` keeps
 * the real layer widths with fewer layers and a smaller vocabulary; `smoke` narrows them too.
 */
import { BENCH_MODELS, benchModelConfig, cutNote, loadBenchModel } from './models';
import { isEmulated, timeGpu, type BenchContext, type BenchRow, type BenchSize, type BenchSuite } from './suite';

interface DecodePlan {
  layers: number | null;
  vocab: number | null;
  prompt: number;
  newTokens: number;
  runs: number;
  warmup: number;
}

export function decodePlan(size: BenchSize): DecodePlan {
  if (size === 'full') return { layers: null, vocab: null, prompt: 32, newTokens: 64, runs: 5, warmup: 1 };
  if (size === 'cpu') return { layers: 1, vocab: 4096, prompt: 8, newTokens: 4, runs: 2, warmup: 0 };
  return { layers: 1, vocab: 512, prompt: 4, newTokens: 6, runs: 3, warmup: 1 };
}

async function run(ctx: BenchContext) {
  const { gpu, io, size, flags } = ctx;
  const plan = decodePlan(size);
  const runs = Number(flags.runs ?? plan.runs);
  const rows: BenchRow[] = [];
  const ratios: Record<string, number> = {};
  const notes = [
    `Greedy decoding with the KV cache, batch 1, a ${plan.prompt}-token prompt; wall-clock time to queue completion (each token is read back to choose the next), median of ${runs} runs after ${plan.warmup} warm-up.`,
    'decode_tokens_per_s = (N − 1) / (time of N new tokens − time of 1 new token): the prefill is excluded.',
    'NF4 base linear layers (double quantization) through the matrix-vector NF4 kernel; LoRA r 16, alpha 32 on every linear layer, active.',
  ];
  if (isEmulated(gpu.adapter)) notes.push('SwiftShader: CPU emulation of a GPU; the numbers say nothing about GPU performance.');
  for (const name of BENCH_MODELS) {
    const c = benchModelConfig(name, plan, size, flags);
    const note = cutNote(size, c, plan);
    if (note && !notes.includes(note)) notes.push(note);
    io.log(`${name}: ${c.layers} layers, hidden ${c.hidden}, vocab ${c.vocabSize}, NF4`);
    const model = await loadBenchModel(gpu, c, { seed: 7, maxPositions: plan.prompt + plan.newTokens });
    const prompt = Array.from({ length: plan.prompt }, (_, i) => (i * 131 + 17) % c.vocabSize);
    const generate = (n: number) => async () => {
      await model.generate(prompt, { maxNewTokens: n });
    };
    const prefill = await timeGpu(gpu, generate(1), { warmup: plan.warmup, runs, wallClock: true });
    const whole = await timeGpu(gpu, generate(plan.newTokens), { warmup: plan.warmup, runs, wallClock: true });
    // Timing noise can make N tokens look no slower than 1 on tiny models: then the end-to-end
    // rate is the honest number.
    const incremental = (whole.median - prefill.median) / Math.max(plan.newTokens - 1, 1);
    const perToken = incremental > 0 ? incremental : whole.median / plan.newTokens;
    if (!(incremental > 0)) notes.push(`${name}: ${plan.newTokens} tokens took no longer than 1 (timing noise); decode_tokens_per_s is the end-to-end rate.`);
    const shape = { model: name, layers: c.layers, hidden: c.hidden, vocab: c.vocabSize, prompt: plan.prompt, new_tokens: plan.newTokens, lora_r: 16 };
    rows.push({ name: `prefill + 1 token ${name}`, shape, timing: prefill, metrics: { prompt_tokens_per_s: plan.prompt / prefill.median } });
    rows.push({
      name: `decode ${name}`,
      shape,
      timing: whole,
      metrics: { decode_tokens_per_s: 1 / perToken, ms_per_token: perToken * 1000, end_to_end_tokens_per_s: plan.newTokens / whole.median, peak_bytes: gpu.pool.stats().peakTotal },
    });
    ratios[`${name} decode tokens/s`] = 1 / perToken;
    io.log(`${name}: prefill ${(prefill.median * 1000).toFixed(1)} ms, decode ${(1 / perToken).toFixed(2)} tokens/s`);
    model.dispose();
    gpu.pool.trim();
  }
  return { rows, ratios, notes };
}

export const decodeSuite: BenchSuite = {
  name: 'decode',
  description: 'KV-cache decoding tokens/s on random NF4 models with the phi-1_5 and falcon-7b configs',
  run,
};
