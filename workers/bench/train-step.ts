/**
 * `bench train-step`: a QLoRA training step (forward + loss + backward into LoRA r 16 on every
 * linear layer, NF4 base) and KV-cache decoding on random models with the layer shapes of
 * phi-1_5 and falcon-7b. `full` uses every layer, the real vocabulary and sequence 512; `cpu`
 * and `smoke` keep the real layer widths but fewer layers, a shorter sequence and a smaller
 * vocabulary, so SwiftShader finishes. Reports tokens/s and the pool's peak GPU bytes.
 */
import type { ModelConfig } from '../model/config';
import { CausalLM } from '../model/causal-lm';
import { allLinearNames } from '../model/architecture';
import { RandomWeights } from '../model/random-weights';
import { MODEL_SHADERS } from '../model/shader-sources';
import type { Batch } from '../model/types';
import { timeGpu, type BenchContext, type BenchRow, type BenchSize, type BenchSuite } from './suite';

/** The published architectures (config.json of microsoft/phi-1_5 and tiiuae/falcon-7b). */
const PHI_1_5: ModelConfig = { arch: 'phi', vocabSize: 51200, hidden: 2048, layers: 24, heads: 32, kvHeads: 32, headDim: 64, ffn: 8192, rotaryDim: 32, ropeTheta: 10000, layerNormEps: 1e-5, activation: 'gelu_new', linearBias: true, tiedLmHead: false, lmHeadBias: true, maxPositions: 2048, bosTokenId: null, eosTokenId: null };
const FALCON_7B: ModelConfig = { arch: 'falcon', vocabSize: 65024, hidden: 4544, layers: 32, heads: 71, kvHeads: 1, headDim: 64, ffn: 18176, rotaryDim: 64, ropeTheta: 10000, layerNormEps: 1e-5, activation: 'gelu', linearBias: false, tiedLmHead: true, lmHeadBias: false, maxPositions: 2048, bosTokenId: 11, eosTokenId: 11 };

interface Plan {
  layers: number | null;
  seq: number;
  vocab: number | null;
  newTokens: number;
  runs: number;
  warmup: number;
  withoutCheckpointing: boolean;
}

export function trainStepPlan(size: BenchSize): Plan {
  if (size === 'full') return { layers: null, seq: 512, vocab: null, newTokens: 64, runs: 5, warmup: 1, withoutCheckpointing: true };
  if (size === 'cpu') return { layers: 1, seq: 32, vocab: 2048, newTokens: 4, runs: 1, warmup: 0, withoutCheckpointing: true };
  return { layers: 1, seq: 8, vocab: 512, newTokens: 2, runs: 1, warmup: 0, withoutCheckpointing: false };
}

/** smoke only checks the pipeline end to end: real head size, narrow layers (SwiftShader needs minutes per real-width layer). */
const SMOKE_WIDTH: Record<string, Partial<ModelConfig>> = {
  phi: { hidden: 128, heads: 2, kvHeads: 2, ffn: 512 },
  falcon: { hidden: 256, heads: 4, ffn: 1024 },
};

function sized(base: ModelConfig, plan: Plan, size: BenchSize): ModelConfig {
  const narrow = size === 'smoke' ? SMOKE_WIDTH[base.arch] : {};
  return { ...base, ...narrow, layers: plan.layers ?? base.layers, vocabSize: plan.vocab ?? base.vocabSize };
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
    'NF4 base linear layers (double quantization, fused dequantize-matmul); embeddings, lm_head and LayerNorms in f32; LoRA r 16, alpha 32 on every linear layer.',
    `Wall-clock time per step to queue completion, median of ${runs} runs after ${plan.warmup} warm-up; peak bytes from the buffer pool during one step.`,
    'Decoding: greedy, KV cache, batch 1, an 8-token prompt; tokens/s counts new tokens over the whole generate call (prefill included).',
  ];
  if (size !== 'full') notes.push(`${size} size: layers reduced to ${plan.layers}, vocabulary to ${plan.vocab}, sequence ${plan.seq}; ${size === 'smoke' ? 'layer widths reduced too (pipeline check only)' : 'layer widths are the real ones'}.`);
  if (gpu.adapter.isFallbackAdapter || gpu.adapter.architecture === 'swiftshader') notes.push('SwiftShader: CPU emulation of a GPU; the numbers say nothing about GPU performance.');
  for (const [name, base] of [
    ['phi-1_5', PHI_1_5],
    ['falcon-7b', FALCON_7B],
  ] as const) {
    const c = sized(base, plan, size);
    io.log(`${name}: loading ${c.layers} layers (hidden ${c.hidden}, ffn ${c.ffn}, vocab ${c.vocabSize}) as NF4`);
    const model = await CausalLM.load(gpu, MODEL_SHADERS, c, new RandomWeights(c, 1), {
      mode: 'nf4',
      lora: { settings: { r: 16, alpha: 32, dropout: 0, targetModules: allLinearNames(c) }, init: { seed: 1 } },
      checkpointing: true,
      maxPositions: Math.max(plan.seq, 8 + plan.newTokens),
    });
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
      await step();
      const stats = gpu.pool.stats();
      const timing = await timeGpu(gpu, step, { warmup: plan.warmup, runs, wallClock: true });
      const tag = checkpointing ? 'checkpointing' : 'no checkpointing';
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
        },
      });
      io.log(`${name} (${tag}): ${(plan.seq / timing.median).toFixed(1)} tokens/s, peak ${(stats.peakTotal / 2 ** 20).toFixed(1)} MiB`);
    }
    if (plan.withoutCheckpointing) {
      ratios[`${name} checkpointing time / no checkpointing`] = stepTimes.checkpointing / stepTimes['no checkpointing'];
      ratios[`${name} checkpointing peak / no checkpointing`] = peaks.checkpointing / peaks['no checkpointing'];
    }
    const prompt = Array.from({ length: 8 }, (_, i) => (i * 31 + 5) % c.vocabSize);
    const decode = await timeGpu(gpu, async () => {
      await model.generate(prompt, { maxNewTokens: plan.newTokens });
    }, { warmup: plan.warmup, runs, wallClock: true });
    rows.push({ name: `decode ${name}`, shape: { ...shape, prompt: prompt.length, new_tokens: plan.newTokens }, timing: decode, metrics: { tokens_per_s: plan.newTokens / decode.median } });
    io.log(`${name} decode: ${(plan.newTokens / decode.median).toFixed(2)} tokens/s`);
    model.dispose();
    gpu.pool.trim();
  }
  return { rows, ratios, notes };
}

export const trainStepSuite: BenchSuite = {
  name: 'train-step',
  description: 'QLoRA training step and KV-cache decoding on random NF4 models with phi-1_5 and falcon-7b layer shapes',
  run,
};
