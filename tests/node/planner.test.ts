import { describe, expect, it } from 'vitest';
import { planMemory, planPreset, modelBytes, checkpointingFor, CHECKPOINTING_ABOVE_BYTES, GIB } from '../../workers/load/planner';
import { countingGpu } from '../../workers/gpu/counting-device';
import { parseModelConfig } from '../../workers/model/config';
import { DEFAULT_QUANT, getPreset } from '../../workers/load/presets';
import { tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { archFromConfig } from '../../workers/load/arch';
import { storedTensorBytes } from '../../workers/load/sizes';

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

describe('memory planner', { timeout: 120_000 }, () => {
  it('the counting device counts like the pool of a real device: 16-byte rounding, peak of simultaneous live bytes, largest request', async () => {
    const { gpu, largest } = countingGpu({ maxStorageBufferBindingSize: GIB });
    const a = gpu.alloc(10, 'weights', 'a');
    const b = gpu.alloc(100, 'scratch', 'b');
    gpu.release(b);
    gpu.alloc(50, 'activations', 'c');
    const stats = gpu.pool.stats();
    expect(a.size).toBe(16);
    expect(stats.peakTotal).toBe(16 + 112);
    expect(stats.atPeak).toEqual({ weights: 16, lora: 0, optimizer: 0, activations: 0, scratch: 112 });
    expect(() => gpu.release(b)).toThrow(/released twice/);
    expect(largest).toEqual({ label: 'b', size: 112 });
    // Readbacks come back as zeros, without any GPU.
    expect(await gpu.readF32(a, 2)).toEqual(new Float32Array(2));
  });

  it('reports a breakdown that sums to the peak, for both presets', async () => {
    for (const name of ['phi-1_5', 'falcon-7b', 'demo']) {
      const plan = await planPreset(name);
      expect(sum(plan.byCategory)).toBe(plan.peakBytes);
      expect(plan.byCategory.weights).toBeGreaterThan(0);
      expect(plan.byCategory.lora).toBe(plan.byCategory.optimizer); // A, B + grads vs two moments
      expect(plan.verdict).toBe('fits');
    }
  });

  it('counts parameters and trainable parameters of the published architectures', async () => {
    const phi = await planPreset('phi-1_5');
    expect(phi.parameters).toBe(1418270720);
    // r · (in + out) over q,k,v,dense (2048→2048), fc1 (2048→8192), fc2 (8192→2048), 24 layers.
    expect(phi.trainableParameters).toBe(24 * 16 * (4 * 4096 + 2 * 10240));
    const falcon = await planPreset('falcon-7b');
    expect(falcon.parameters).toBeGreaterThan(6.9e9);
    expect(falcon.parameters).toBeLessThan(7.0e9);
  });

  it('activations grow with sequence and batch; checkpointing keeps them to one layer', async () => {
    const base = await planPreset('phi-1_5', { seq: 256 });
    expect((await planPreset('phi-1_5', { seq: 512 })).peakBytes).toBeGreaterThan(base.peakBytes);
    expect((await planPreset('phi-1_5', { seq: 256, batch: 2 })).peakBytes).toBeGreaterThan(base.peakBytes);
    const without = await planPreset('phi-1_5', { seq: 256, checkpointing: false });
    expect(without.byCategory.activations).toBeGreaterThan(4 * base.byCategory.activations);
  });

  it('checkpoints where the activations it saves are large: phi-1_5 yes, the demo model no until its batches grow', async () => {
    const phi = await planPreset('phi-1_5');
    expect(phi.checkpointing).toBe(true);
    expect((await planPreset('phi-1_5', { checkpointing: false })).byCategory.activations).toBeGreaterThan(CHECKPOINTING_ABOVE_BYTES);
    const demo = await planPreset('demo');
    expect(demo.checkpointing).toBe(false);
    expect(demo.byCategory.activations).toBeLessThanOrEqual(CHECKPOINTING_ABOVE_BYTES);
    expect(demo.peakBytes).toEqual((await planPreset('demo', { checkpointing: false })).peakBytes);
    expect((await planPreset('demo', { checkpointing: true })).peakBytes).toBeLessThan(demo.peakBytes);
    expect((await planPreset('demo', { seq: 512, batch: 16 })).checkpointing).toBe(true);
    // Without room for the activations, checkpointing whatever their size.
    expect((await planPreset('demo', { gpuMemoryBytes: 12 * 1024 ** 2 })).checkpointing).toBe(true);
    // What a run asks for is what the plan says.
    const p = getPreset('demo');
    const run = { seq: p.settings.seqLength, batch: p.settings.batchSize, rank: p.settings.rank, targets: p.settings.targetModules, quant: p.quant };
    expect(await checkpointingFor(parseModelConfig(p.config), run)).toBe(false);
    expect(await checkpointingFor(parseModelConfig(getPreset('phi-1_5').config), { ...run, targets: getPreset('phi-1_5').settings.targetModules, seq: 512 })).toBe(true);
  });

  it('answers fits-shorter with a setting that fits, and does-not-fit with the reason', async () => {
    const tight = await planPreset('phi-1_5', { seq: 2048, batch: 4, checkpointing: false, gpuMemoryBytes: 4 * GIB });
    expect(tight.verdict).toBe('fits-shorter');
    expect(tight.suggestion).not.toBeNull();
    const s = tight.suggestion!;
    expect(tight.reason).toContain(`fits with sequence ${s.seq} and batch ${s.batch}`);
    expect((await planPreset('phi-1_5', { seq: s.seq, batch: s.batch, checkpointing: false, gpuMemoryBytes: 4 * GIB })).verdict).toBe('fits');
    const none = await planPreset('falcon-7b', { gpuMemoryBytes: 2 * GIB });
    expect(none.verdict).toBe('does-not-fit');
    expect(none.reason).toMatch(/needs .* but the GPU has 2.00 GiB; even sequence 16, batch 1 needs/);
  });

  it('flags a single buffer larger than the adapter allows', async () => {
    // falcon-7b's tied bf16 embedding: 65024 × 4544 × 2 bytes ≈ 0.55 GiB.
    expect((await planPreset('falcon-7b', { limits: { maxBufferSize: GIB, maxStorageBufferBindingSize: GIB } })).verdict).toBe('fits');
    const plan = await planPreset('falcon-7b', { limits: { maxBufferSize: GIB / 2, maxStorageBufferBindingSize: GIB / 2 } });
    expect(plan.largestBuffer.label).toBe('transformer.word_embeddings.weight');
    expect(plan.largestBuffer.bytes).toBe(65024 * 4544 * 2);
    expect(plan.verdict).toBe('does-not-fit');
    expect(plan.reason).toContain('but this GPU allows 512.0 MiB per buffer');
  });

  it('meets the memory budgets: sequence 512, batch 1, r 16 on every linear layer', async () => {
    // 16-bit checkpoints keep their embedding and lm_head 16-bit; the linear layers are NF4.
    expect((await planPreset('phi-1_5', { seq: 512, batch: 1 })).peakBytes).toBeLessThan(1.5 * GIB);
    expect((await planPreset('falcon-7b', { seq: 512, batch: 1 })).peakBytes).toBeLessThan(5.5 * GIB);
  });

  it('refuses bad settings with the key', async () => {
    await expect(planPreset('phi-1_5', { seq: 0 })).rejects.toThrow('seq must be a positive integer');
    await expect(planPreset('phi-1_5', { seq: 4096 })).rejects.toThrow(/exceeds the model's max_position_embeddings/);
    await expect(planPreset('phi-1_5', { targets: ['query_key_value'] })).rejects.toThrow(/match no linear layer/);
    await expect(planMemory({ ...getPreset('phi-1_5'), config: { model_type: 'phi' }, seq: 8, batch: 1, rank: 4, targets: ['fc1'], checkpointing: true })).rejects.toThrow(/"hidden_size" is missing/);
  });

  it('storage bytes equal what the loader stores for the same model', async () => {
    const config = tinyPhiConfig();
    const arch = archFromConfig(config);
    const stored = tinyModelTensors(config, 'F16').reduce((n, t) => n + storedTensorBytes(arch, t.name, t.dtype, t.shape, DEFAULT_QUANT), 0);
    expect(modelBytes(parseModelConfig(config), DEFAULT_QUANT).storage).toBe(stored);
  });
});
