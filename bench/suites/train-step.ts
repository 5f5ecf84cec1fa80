/**
 * `bench train-step`: a QLoRA training step (forward + loss + backward into LoRA r 16 on every
 * linear layer, NF4 base) on random models with the published phi-1_5 and falcon-7b configs,
 * with and without gradient checkpointing. `full` uses every layer, the real vocabulary and
 * sequence 512; `cpu` keeps the real layer widths with fewer layers, a shorter sequence and a
 * smaller vocabulary, so SwiftShader finishes; `smoke` also narrows the layers. Reports
 * tokens/s and the pool's peak GPU bytes. (Decoding has its own suite, `decode`.)
 */
import type { ModelConfig } from '../../workers/model/config';
import type { Batch } from '../../workers/model/types';
import { BENCH_MODELS, benchModelConfig, cutNote, loadBenchModel } from '../models';
import { isEmulated, profileGpu, timeGpu, type BenchContext, type BenchRow, type BenchSize, type BenchSuite } from '../suite';

interface Plan {
  layers: number | null;
  seq: number;
  vocab: number | null;
  runs: number;
  warmup: number;
  withoutCheckpointing: boolean;
}

export function trainStepPlan(size: BenchSize): Plan {
  if (size === 'full') return { layers: null, seq: 512, vocab: null, runs: 5, warmup: 1, withoutCheckpointing: true };
  if (size === 'cpu') return { layers: 1, seq: 32, vocab: 2048, runs: 1, warmup: 0, withoutCheckpointing: true };
  return { layers: 1, seq: 8, vocab: 512, runs: 1, warmup: 0, withoutCheckpointing: false };
}

function randomBatch(c: ModelConfig, seq: number): Batch {
  const inputIds = Int32Array.from({ length: seq }, (_, i) => (i * 7919 + 13) % c.vocabSize);
  return { inputIds, attentionMask: new Int32Array(seq).fill(1), labels: Int32Array.from(inputIds), batch: 1, seq };
}

async function run(ctx: BenchContext) {
  const { gpu, io, size } = ctx;
  const plan = trainStepPlan(size);
  const runs = Number(ctx.flags.runs ?? plan.runs);
  const rows: BenchRow[] = [];
  const ratios: Record<string, number> = {};
  const notes = [
    'A step is CausalLM.forwardBackward (embedding, every layer, chunked lm_head + cross-entropy, backward into LoRA A/B) with batch 1; the AdamW update is not included.',
    'NF4 base linear layers (double quantization, fused dequantize-matmul); embedding and lm_head 16-bit as the checkpoints store them (torch_dtype), LayerNorms f32; LoRA r 16, alpha 32 on every linear layer.',
    `Wall-clock time per step to queue completion, median of ${runs} runs after ${plan.warmup} warm-up; peak bytes from the buffer pool during one step.`,
    'gpu_ms <kernel>: GPU timestamp time of each dispatch label in one further step (where the adapter has timestamp-query); dispatches and submits: counts of the first step (the one whose peak bytes are reported).',
  ];
  if (size !== 'full') notes.push(`${size} size: sequence ${plan.seq}.`);
  if (isEmulated(gpu.adapter)) notes.push('SwiftShader: CPU emulation of a GPU; the numbers say nothing about GPU performance.');
  for (const name of BENCH_MODELS) {
    const c = benchModelConfig(name, plan, size, ctx.flags);
    const note = cutNote(size, c, plan);
    if (note && !notes.includes(note)) notes.push(note);
    io.log(`${name}: loading ${c.layers} layers (hidden ${c.hidden}, ffn ${c.ffn}, vocab ${c.vocabSize}) as NF4`);
    const model = await loadBenchModel(gpu, c, { seed: 1, checkpointing: true, maxPositions: plan.seq });
    const batch = randomBatch(c, plan.seq);
    const shape = { model: name, layers: c.layers, hidden: c.hidden, ffn: c.ffn, vocab: c.vocabSize, seq: plan.seq, batch: 1, lora_r: 16 };
    const modes = plan.withoutCheckpointing ? [true, false] : [true];
    const stepTimes: Record<string, number> = {};
    const peaks: Record<string, number> = {};
    for (const checkpointing of modes) {
      model.checkpointing = checkpointing;
      const step = async () => {
        await model.forwardBackward(batch, { gradScale: 1 / plan.seq });
      };
      await gpu.done();
      gpu.pool.resetPeak();
      const [d0, s0] = [gpu.dispatches, gpu.submits];
      await step();
      await gpu.done();
      const counts = { dispatches: gpu.dispatches - d0, submits: gpu.submits - s0 };
      const stats = gpu.pool.stats();
      const timing = await timeGpu(gpu, step, { warmup: plan.warmup, runs, wallClock: true });
      const tag = checkpointing ? 'checkpointing' : 'no checkpointing';
      // One more step with a timestamp per dispatch, where the adapter has them: where the time goes.
      const profile = await profileGpu(gpu, step);
      const byKernel = Object.fromEntries((profile ?? []).map(([label, sec]) => [`gpu_ms ${label}`, sec * 1e3]));
      if (profile) {
        const total = profile.reduce((a, [, sec]) => a + sec, 0);
        io.log(`${name} (${tag}) GPU time by kernel: ${profile.slice(0, 8).map(([label, sec]) => `${label} ${((100 * sec) / total).toFixed(1)}%`).join(', ')}`);
      }
      stepTimes[tag] = timing.median;
      peaks[tag] = stats.peakTotal;
      rows.push({
        name: `train step ${name} (${tag})`,
        shape: { ...shape, checkpointing: checkpointing ? 'yes' : 'no' },
        timing,
        metrics: {
          tokens_per_s: plan.seq / timing.median,
          peak_bytes: stats.peakTotal,
          peak_activation_bytes: stats.peak.activations,
          peak_scratch_bytes: stats.peak.scratch,
          weight_bytes: stats.live.weights,
          lora_bytes: stats.live.lora,
          ...counts,
          ...byKernel,
        },
      });
      io.log(`${name} (${tag}): ${(plan.seq / timing.median).toFixed(1)} tokens/s, peak ${(stats.peakTotal / 2 ** 20).toFixed(1)} MiB`);
    }
    if (plan.withoutCheckpointing) {
      ratios[`${name} checkpointing time / no checkpointing`] = stepTimes.checkpointing / stepTimes['no checkpointing'];
      ratios[`${name} checkpointing peak / no checkpointing`] = peaks.checkpointing / peaks['no checkpointing'];
    }
    model.dispose();
    gpu.pool.trim();
  }
  return { rows, ratios, notes };
}

export const trainStepSuite: BenchSuite = {
  name: 'train-step',
  description: 'QLoRA training step (with and without checkpointing) on random NF4 models with phi-1_5 and falcon-7b shapes',
  run,
};
