/**
 * CausalLM behaviour on random tiny models of both families: checkpointing changes memory, not
 * results; padding; micro-batch accumulation; KV-cache decoding against a full recompute;
 * sampling options; LoRA init and PEFT export round trip; dropout reproducibility.
 */
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../workers/gpu/runtime';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { CausalLM } from '../../workers/model/causal-lm';
import type { ModelConfig } from '../../workers/model/config';
import { allLinearNames } from '../../workers/model/architecture';
import { parsePeftConfig } from '../../workers/model/lora-adapter';
import { RandomWeights, tinyConfig } from '../../workers/model/random-weights';
import { SHADERS } from '../../workers/kernels/shader-sources';
import type { Batch, LoraSettings } from '../../workers/model/types';
import { randn, relErr, rng, testGpu } from './helpers';
import type { WeightSource } from '../../workers/model/weights';

const settingsFor = (c: ModelConfig, dropout = 0): LoraSettings => ({ r: 3, alpha: 6, dropout, targetModules: allLinearNames(c) });

async function build(gpu: Gpu, c: ModelConfig, opts: { checkpointing?: boolean; dropout?: number; randomB?: boolean; headChunkRows?: number; headBridgeRows?: number } = {}): Promise<CausalLM> {
  const model = await CausalLM.load(gpu, SHADERS, c, new RandomWeights(c, 7), {
    mode: 'exact',
    lora: { settings: settingsFor(c, opts.dropout ?? 0), init: { seed: 3 } },
    checkpointing: opts.checkpointing,
    headChunkRows: opts.headChunkRows,
    headBridgeRows: opts.headBridgeRows,
  });
  if (opts.randomB !== false) {
    // PEFT starts B at zero; a non-zero B makes every gradient path visible.
    model.lora.filter((t) => t.key.includes('lora_B')).forEach((t, i) => gpu.write(t.weight, randn(t.shape[0] * t.shape[1], 100 + i, 0.05)));
  }
  return model;
}

function randomBatch(c: ModelConfig, batch: number, seq: number, lengths: number[], seed: number): Batch {
  const r = rng(seed);
  const inputIds = Int32Array.from({ length: batch * seq }, () => Math.floor(r() * c.vocabSize));
  const attentionMask = Int32Array.from({ length: batch * seq }, (_, i) => (i % seq < lengths[Math.floor(i / seq)] ? 1 : 0));
  const labels = Int32Array.from(inputIds, (id, i) => (attentionMask[i] && i % seq >= 2 ? id : -100));
  return { inputIds, attentionMask, labels, batch, seq };
}

async function grads(gpu: Gpu, m: CausalLM): Promise<Float32Array[]> {
  return Promise.all(m.lora.map((t) => gpu.readF32(t.grad, t.shape[0] * t.shape[1])));
}

describe('CausalLM', () => {
  it('lm_head over the scored rows only: each run apart or one range across the gap, the same loss and gradients', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('phi');
    // Two rows of 40 whose first 22 labels are a prompt (-100), the second padded after 33: the
    // scored rows come in two runs 22 rows apart. Chunks of 7 rows split each run.
    const b = randomBatch(c, 2, 40, [40, 33], 9);
    for (let i = 0; i < b.labels.length; i++) if (i % 40 < 22) b.labels[i] = -100;
    const results: { r: Awaited<ReturnType<CausalLM['forwardBackward']>>; g: Float32Array[]; forwardLoss: number }[] = [];
    for (const headBridgeRows of [1, 1000]) {
      const m = await build(gpu, c, { headChunkRows: 7, headBridgeRows });
      // A first step leaves its buffers in the pool: rows left out must come back as zeros, not as these.
      await m.forwardBackward(randomBatch(c, 2, 40, [40, 40], 3), { gradScale: 1 });
      m.zeroGrads();
      const r = await m.forwardBackward(b, { gradScale: 0.5 }, { embeddingGrad: true });
      results.push({ r, g: await grads(gpu, m), forwardLoss: (await m.forward(b)).lossSum });
      m.dispose();
    }
    const [apart, across] = results;
    expect(apart.r.tokens).toBe(18 + 11);
    expect(relErr([apart.r.lossSum], [across.r.lossSum])).toBeLessThan(1e-6);
    // forward() computes every row's logits.
    expect(relErr([apart.r.lossSum], [apart.forwardLoss])).toBeLessThan(1e-6);
    expect(relErr(apart.r.embeddingGrad!, across.r.embeddingGrad!)).toBeLessThan(1e-6);
    apart.g.forEach((g, i) => expect(relErr(g, across.g[i]), `LoRA tensor ${i}`).toBeLessThan(1e-6));
    // The prompt rows' gradient reaches the embedding only through attention, never from their own logits.
    expect(apart.r.embeddingGrad!.every(Number.isFinite)).toBe(true);
  });

  for (const arch of ['phi', 'falcon'] as const) {
    it(`${arch}: checkpointing gives the same loss and gradients`, async () => {
      const gpu = await testGpu();
      const c = tinyConfig(arch);
      const b = randomBatch(c, 2, 11, [11, 8], 5);
      const results: { r: Awaited<ReturnType<CausalLM['forwardBackward']>>; g: Float32Array[] }[] = [];
      for (const checkpointing of [false, true]) {
        const m = await build(gpu, c, { checkpointing });
        const r = await m.forwardBackward(b, { gradScale: 0.1 }, { embeddingGrad: true });
        results.push({ r, g: await grads(gpu, m) });
        m.dispose();
      }
      expect(results[1].r.lossSum).toBe(results[0].r.lossSum);
      expect(results[1].r.tokens).toBe(results[0].r.tokens);
      results[0].g.forEach((g, i) => expect(Array.from(results[1].g[i])).toEqual(Array.from(g)));
      expect(Array.from(results[1].r.embeddingGrad!)).toEqual(Array.from(results[0].r.embeddingGrad!));
      expect(results[0].g.some((g) => g.some((v) => v !== 0))).toBe(true);
    });

    it(`${arch}: a right-padded row scores like the same row alone`, async () => {
      const gpu = await testGpu();
      const c = tinyConfig(arch);
      const m = await build(gpu, c);
      const padded = randomBatch(c, 2, 10, [10, 6], 9);
      const alone: Batch = { inputIds: padded.inputIds.slice(10, 16), attentionMask: padded.attentionMask.slice(10, 16), labels: padded.labels.slice(10, 16), batch: 1, seq: 6 };
      const full = await m.forward(padded);
      const single = await m.forward(alone);
      const V = c.vocabSize;
      expect(relErr(full.logits.subarray(10 * V, 16 * V), single.logits)).toBeLessThan(1e-5);
      const first: Batch = { inputIds: padded.inputIds.slice(0, 10), attentionMask: padded.attentionMask.slice(0, 10), labels: padded.labels.slice(0, 10), batch: 1, seq: 10 };
      const row0 = await m.loss(first);
      expect(Math.abs(full.lossSum - row0.lossSum - single.lossSum)).toBeLessThan(1e-4);
      expect(full.tokens).toBe(row0.tokens + single.tokens);
      m.dispose();
    });

    it(`${arch}: gradients add up over calls, scaled by gradScale`, async () => {
      const gpu = await testGpu();
      const c = tinyConfig(arch);
      const m = await build(gpu, c);
      const b = randomBatch(c, 1, 9, [9], 2);
      await m.forwardBackward(b, { gradScale: 1 });
      const once = await grads(gpu, m);
      m.zeroGrads();
      await m.forwardBackward(b, { gradScale: 0.25 });
      await m.forwardBackward(b, { gradScale: 0.75 });
      const twice = await grads(gpu, m);
      // 0.25·g + 0.75·g rounds differently from g in f32: a few ulps of the largest gradient.
      once.forEach((g, i) => expect(relErr(twice[i], g)).toBeLessThan(5e-6));
      m.dispose();
    });

    it(`${arch}: NF4 mode keeps a 16-bit checkpoint's embedding and lm_head 16-bit, with the results of the same values in f32`, async () => {
      const gpu = await testGpu();
      const stored = arch === 'phi' ? 'F16' : 'BF16';
      const c = tinyConfig(arch, { storedDtype: stored });
      const sixteen = new RandomWeights(c, 7);
      // The same tensors announced and served as f32 (widened exactly).
      const widened: WeightSource = {
        label: 'widened',
        names: () => sixteen.names(),
        info: (n) => {
          const i = sixteen.info(n);
          return i && { ...i, dtype: 'F32' };
        },
        readF32: (n) => sixteen.readF32(n),
        readRaw: async (n) => new Uint8Array((await sixteen.readF32(n)).buffer),
      };
      expect(sixteen.info('lm_head.weight')?.dtype ?? sixteen.info('transformer.word_embeddings.weight')?.dtype).toBe(stored);
      const b = randomBatch(c, 2, 9, [9, 6], 11);
      const results: { weights: number; loss: number; logits: Float32Array; grads: Float32Array[]; tokens: number[] }[] = [];
      for (const source of [sixteen, widened]) {
        const m = await CausalLM.load(gpu, SHADERS, c, source, { mode: 'nf4', lora: { settings: settingsFor(c), init: { seed: 3 } } });
        m.lora.filter((t) => t.key.includes('lora_B')).forEach((t, i) => gpu.write(t.weight, randn(t.shape[0] * t.shape[1], 100 + i, 0.05)));
        const f = await m.forward(b);
        const r = await m.forwardBackward(b, { gradScale: 1 });
        const g = await m.generate([5, 17, 3], { maxNewTokens: 4 });
        results.push({ weights: m.weightBytes, loss: r.lossSum, logits: f.logits, grads: await grads(gpu, m), tokens: g.tokens });
        m.dispose();
      }
      const [h, w] = results;
      // Half the bytes of each table: phi's embedding and lm_head, falcon's one tied matrix.
      expect(w.weights - h.weights).toBe((c.tiedLmHead ? 1 : 2) * c.vocabSize * c.hidden * 2);
      expect(relErr(h.logits, w.logits)).toBeLessThan(1e-5);
      expect(Math.abs(h.loss - w.loss) / Math.abs(w.loss)).toBeLessThan(1e-5);
      h.grads.forEach((g, i) => expect(relErr(g, w.grads[i])).toBeLessThan(1e-4));
      expect(h.tokens).toEqual(w.tokens);
    });

    it(`${arch}: KV-cache decoding matches a full forward of the generated text`, async () => {
      const gpu = await testGpu();
      const c = tinyConfig(arch);
      const m = await build(gpu, c);
      const prompt = [5, 17, 3, 99, 42];
      const stepLogits: Float32Array[] = [];
      const streamed: number[] = [];
      const out = await m.generate(prompt, { maxNewTokens: 6, onLogits: (l) => stepLogits.push(l.slice()), onToken: (t) => streamed.push(t) });
      expect(out.tokens.length).toBe(6);
      expect(streamed).toEqual(out.tokens);
      const all = [...prompt, ...out.tokens];
      const seq = all.length - 1;
      const ones = new Int32Array(seq).fill(1);
      const f = await m.forward({ inputIds: Int32Array.from(all.slice(0, seq)), attentionMask: ones, labels: new Int32Array(seq).fill(-100), batch: 1, seq });
      const V = c.vocabSize;
      stepLogits.forEach((l, k) => expect(relErr(l, f.logits.subarray((prompt.length - 1 + k) * V, (prompt.length + k) * V))).toBeLessThan(1e-5));
      m.dispose();
    });
  }

  it('sampling: top-k 1 is greedy, seeds reproduce, EOS stops early', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('falcon');
    const m = await build(gpu, c);
    const prompt = [7, 8, 9];
    const greedy = await m.generate(prompt, { maxNewTokens: 5 });
    const topk1 = await m.generate(prompt, { maxNewTokens: 5, temperature: 0.8, topK: 1, seed: 4 });
    expect(topk1.tokens).toEqual(greedy.tokens);
    const s1 = await m.generate(prompt, { maxNewTokens: 8, temperature: 1.5, topP: 0.9, seed: 11 });
    const s2 = await m.generate(prompt, { maxNewTokens: 8, temperature: 1.5, topP: 0.9, seed: 11 });
    expect(s2.tokens).toEqual(s1.tokens);
    const eos = greedy.tokens[1];
    const stop = await m.generate(prompt, { maxNewTokens: 5, eosTokenIds: [eos] });
    expect(stop.tokens).toEqual(greedy.tokens.slice(0, greedy.tokens.indexOf(eos) + 1));
    expect(stop.stoppedBy).toBe('eos');
    expect(greedy.stoppedBy).toBe('length');
    m.dispose();
  });

  it('PEFT init: A within ±1/√in, B zero (the adapted model equals the base model)', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('phi');
    const m = await build(gpu, c, { randomB: false });
    for (const t of m.lora) {
      const w = await gpu.readF32(t.weight, t.shape[0] * t.shape[1]);
      if (t.key.endsWith('lora_B.weight')) expect(w.every((v) => v === 0)).toBe(true);
      else {
        const bound = 1 / Math.sqrt(t.shape[1]);
        expect(w.every((v) => Math.abs(v) <= bound)).toBe(true);
        expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.8 * bound);
      }
    }
    const b = randomBatch(c, 1, 8, [8], 1);
    const withLora = await m.forward(b);
    const base = await m.forward(b, { noLora: true });
    expect(Array.from(withLora.logits)).toEqual(Array.from(base.logits));
    m.dispose();
  });

  it('PEFT export round trip: same keys, same tensors, same loss after reloading', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('falcon');
    const m = await build(gpu, c);
    const b = randomBatch(c, 2, 7, [7, 5], 3);
    const before = await m.loss(b);
    const commit = '0123456789abcdef0123456789abcdef01234567';
    const exported = await m.exportAdapter('tiiuae/falcon-7b', commit);
    const cfg = JSON.parse(exported.adapterConfig);
    // revision: PEFT loads the base at the commit the adapter was trained on.
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 3, lora_alpha: 6, lora_dropout: 0, bias: 'none', base_model_name_or_path: 'tiiuae/falcon-7b', revision: commit });
    expect(JSON.parse((await m.exportAdapter('tiiuae/falcon-7b')).adapterConfig).revision).toBeNull();
    expect(cfg.target_modules).toEqual(['dense', 'dense_4h_to_h', 'dense_h_to_4h', 'query_key_value']);
    const file = new SafetensorsFile(exported.adapterModel, 'adapter_model.safetensors');
    expect(file.names.sort()).toEqual(m.lora.map((t) => t.key).sort());
    expect(file.names).toContain('base_model.model.transformer.h.1.self_attention.query_key_value.lora_B.weight');
    const settings = parsePeftConfig(exported.adapterConfig);
    const again = await CausalLM.load(gpu, SHADERS, c, new RandomWeights(c, 7), { mode: 'exact', lora: { settings, init: { adapter: file } } });
    const after = await again.loss(b);
    expect(after.lossSum).toBe(before.lossSum);
    m.dispose();
    again.dispose();
  });

  it('LoRA dropout: same seed and step reproduce the gradients, another step changes them', async () => {
    const gpu = await testGpu();
    const c = tinyConfig('phi');
    const m = await build(gpu, c, { dropout: 0.3 });
    const b = randomBatch(c, 1, 8, [8], 4);
    const run = async (step: number) => {
      m.zeroGrads();
      await m.forwardBackward(b, { gradScale: 1, dropoutSeed: 9, step });
      return grads(gpu, m);
    };
    const a = await run(1);
    const a2 = await run(1);
    const other = await run(2);
    a.forEach((g, i) => expect(Array.from(a2[i])).toEqual(Array.from(g)));
    expect(a.some((g, i) => relErr(other[i], g) > 1e-3)).toBe(true);
    // Evaluation applies no dropout: the loss equals the loss of the same model without dropout.
    const plain = await build(gpu, c);
    expect((await m.loss(b)).lossSum).toBe((await plain.loss(b)).lossSum);
    m.dispose();
    plain.dispose();
  });

  it('checkpointing: peak activation bytes grow by one hidden state per layer, not by a layer of activations', async () => {
    const gpu = await testGpu();
    const peak = async (layers: number, checkpointing: boolean) => {
      const c = tinyConfig('phi', { layers });
      const m = await build(gpu, c, { checkpointing });
      const b = randomBatch(c, 2, 12, [12, 12], 6);
      await gpu.done();
      gpu.pool.resetPeak();
      await m.forwardBackward(b, { gradScale: 1 });
      const stats = gpu.pool.stats();
      m.dispose();
      return { activations: stats.peak.activations, total: stats.peakTotal };
    };
    const rows = 2 * 12;
    const c = tinyConfig('phi');
    const hiddenState = rows * c.hidden * 4;
    const [ck2, ck8, full2, full8] = [await peak(2, true), await peak(8, true), await peak(2, false), await peak(8, false)];
    const perLayerCk = (ck8.activations - ck2.activations) / 6;
    const perLayerFull = (full8.activations - full2.activations) / 6;
    console.info(`peak activation bytes: checkpointed 2 layers ${ck2.activations}, 8 layers ${ck8.activations}; kept 2 layers ${full2.activations}, 8 layers ${full8.activations}; peak total ${ck2.total}/${ck8.total} vs ${full2.total}/${full8.total}`);
    // Each extra layer costs exactly its input hidden state (the checkpoint) with checkpointing...
    expect(perLayerCk).toBe(hiddenState);
    // ...and a whole layer of saved activations without it.
    expect(perLayerFull).toBeGreaterThan(5 * hiddenState);
  });
});
