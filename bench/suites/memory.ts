/**
 * `bench memory`: the memory planner against the buffer pool's measured peak. For each model,
 * CausalLM loads random NF4 weights with LoRA r 16 on every linear layer and runs one
 * forward+backward; the pool's peak is compared with the planner's prediction for the same
 * settings (which replays the engine's allocations without a GPU). The AdamW moments are
 * persistent buffers of a known size (two f32 per LoRA parameter): the planned training-step
 * peak adds them, and is what the budgets (phi-1_5 ≤ 1.5 GiB, falcon-7b ≤ 5.5 GiB at sequence
 * 512, batch 1) are checked against. `full` runs the published architectures whole; `cpu` and
 * `smoke` keep the layer widths with one layer and a small vocabulary so SwiftShader finishes.
 */
import { parseModelConfig, type ModelConfig } from '../../workers/model/config';
import type { CausalLM } from '../../workers/model/causal-lm';
import { allLinearNames } from '../../workers/model/architecture';
import type { Batch } from '../../workers/model/types';
import { getPreset } from '../../workers/load/presets';
import { GIB, planModel } from '../../workers/load/planner';
import { isEmulated, type BenchContext, type BenchRow, type BenchSize, type BenchSuite } from '../suite';
import { loadBenchModel } from '../models';

const BUDGETS: Record<string, number> = { 'phi-1_5': 1.5 * GIB, 'falcon-7b': 5.5 * GIB };

interface MemoryCase {
  preset: string;
  layers: number | null;
  vocab: number | null;
  seq: number;
}

export function memoryCases(size: BenchSize): MemoryCase[] {
  if (size === 'full') return ['demo', 'phi-1_5', 'falcon-7b'].map((preset) => ({ preset, layers: null, vocab: null, seq: preset === 'demo' ? 128 : 512 }));
  if (size === 'cpu') {
    return [
      { preset: 'demo', layers: null, vocab: null, seq: 128 },
      { preset: 'phi-1_5', layers: 1, vocab: 4096, seq: 4 },
      { preset: 'falcon-7b', layers: 1, vocab: 4096, seq: 4 },
    ];
  }
  return [{ preset: 'demo', layers: null, vocab: null, seq: 32 }];
}

function batchOf(c: ModelConfig, seq: number): Batch {
  const inputIds = Int32Array.from({ length: seq }, (_, i) => (i * 7919 + 13) % c.vocabSize);
  return { inputIds, attentionMask: new Int32Array(seq).fill(1), labels: Int32Array.from(inputIds), batch: 1, seq };
}

async function run(ctx: BenchContext) {
  const { gpu, io, size } = ctx;
  const rows: BenchRow[] = [];
  const ratios: Record<string, number> = {};
  const notes = [
    'measured: the buffer pool’s peak over CausalLM.load (NF4) + one forwardBackward (batch 1, LoRA r 16 on every linear layer, dropout 0.05, checkpointing).',
    'predicted: workers/load/planner.ts for the same settings without the optimizer; planned_step_bytes adds the AdamW moments (2 × 4 bytes per LoRA parameter, persistent).',
  ];
  if (size !== 'full') notes.push(`${size} size: phi-1_5 and falcon-7b with one layer of the real widths, vocabulary 4096, sequence 4.`);
  if (isEmulated(gpu.adapter)) notes.push('SwiftShader: CPU emulation; byte counts are exact, times are not GPU times.');
  for (const k of memoryCases(size)) {
    const preset = getPreset(k.preset);
    const base = parseModelConfig(preset.config);
    const c: ModelConfig = { ...base, layers: k.layers ?? base.layers, vocabSize: k.vocab ?? base.vocabSize };
    const targets = allLinearNames(c);
    const name = `${k.preset}${k.layers ? ` (${k.layers} layer, vocab ${c.vocabSize})` : ''} seq ${k.seq}`;
    gpu.pool.trim();
    await gpu.done();
    const lifetime = gpu.lifetimeBuffers();
    const baseline = gpu.pool.stats().liveTotal;
    gpu.pool.resetPeak();
    const t0 = performance.now();
    let model: CausalLM | null = null;
    let t1 = t0;
    try {
      model = await loadBenchModel(gpu, c, { seed: 1, dropout: 0.05, checkpointing: true });
      t1 = performance.now();
      await model.forwardBackward(batchOf(c, k.seq), { gradScale: 1 / k.seq, dropoutSeed: 1, step: 1 });
    } catch (err) {
      // e.g. a buffer beyond this adapter's limits: the other models still run.
      notes.push(`${name}: not measured: ${(err as Error).message}`);
      io.log(`${name}: not measured: ${(err as Error).message}`);
      model?.dispose();
      gpu.pool.trim();
      continue;
    }
    const t2 = performance.now();
    const measured = gpu.pool.stats().peakTotal - baseline + lifetime;
    model.dispose();
    gpu.pool.trim();
    const settings = { seq: k.seq, batch: 1, rank: 16, targets, checkpointing: true, dropout: true, padded: false };
    const limits = { maxBufferSize: gpu.limits.maxBufferSize, maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize };
    const predicted = (await planModel(c, { ...settings, includeOptimizer: false, limits })).peakBytes;
    const step = await planModel(c, { ...settings, includeOptimizer: true, limits });
    const rel = (predicted - measured) / measured;
    const metrics: Record<string, number> = {
      measured_bytes: measured,
      predicted_bytes: predicted,
      abs_rel_error: Math.abs(rel),
      planned_step_bytes: step.peakBytes,
      load_seconds: (t1 - t0) / 1000,
    };
    const budget = BUDGETS[k.preset];
    if (budget && k.layers === null) {
      metrics.budget_bytes = budget;
      ratios[`${k.preset} planned step / budget`] = step.peakBytes / budget;
      ratios[`${k.preset} measured fwd+bwd + moments / budget`] = (measured + step.persistent.optimizer) / budget;
    }
    ratios[`${name} predicted / measured`] = predicted / measured;
    rows.push({
      name,
      shape: { preset: k.preset, layers: c.layers, hidden: c.hidden, vocab: c.vocabSize, seq: k.seq, batch: 1, lora_r: 16 },
      timing: { method: 'submitted-work-done', median: (t2 - t1) / 1000, min: (t2 - t1) / 1000, max: (t2 - t1) / 1000, runs: 1 },
      metrics,
    });
    io.log(`${name}: measured ${measured} B, predicted ${predicted} B (${(100 * rel).toFixed(3)}%), planned step with AdamW ${(step.peakBytes / GIB).toFixed(3)} GiB${budget && k.layers === null ? ` (budget ${(budget / GIB).toFixed(1)} GiB)` : ''}`);
  }
  return { rows, ratios, notes };
}

export const memorySuite: BenchSuite = {
  name: 'memory',
  description: 'memory planner prediction vs the buffer pool’s measured peak (load + forward/backward) and the preset budgets',
  run,
};
