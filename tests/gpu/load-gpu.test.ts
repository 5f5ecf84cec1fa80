/**
 * Quantize on load on the GPU: the demo model streamed from its files (HTTP Range through the
 * loader) into the GPU NF4 quantizer chunk by chunk must give exactly what the CPU reference
 * gives on the same bytes, with the GPU never holding more than one chunk of 16-bit input.
 * Then the IndexedDB cache in a real browser: a second load reads no file at all. Then the
 * studio's path: CausalLM.load pulling from a streamed source in the file's order, with the GPU
 * quantizer (forced here: SwiftShader would get the CPU one) and the CPU one.
 */
import { describe, expect, it } from 'vitest';
import { Gpu } from '../../workers/gpu/runtime';
import { downloadNf4 } from '../../workers/nf4/gpu';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { HubClient } from '../../workers/load/hub';
import { cpuTarget, quantizeOnLoad, type LoadedTensor } from '../../workers/load/quantize-on-load';
import { gpuTarget, type GpuTensor } from '../../workers/load/gpu-target';
import { DEFAULT_QUANT } from '../../workers/load/presets';
import { ModelCache } from '../../workers/load/cache';
import { loadModel, openLoad } from '../../workers/load/load-model';
import { localFileSet, openModel, urlFileSet } from '../../workers/load/sources';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { readLinear4bit } from '../../workers/nf4/state-dict';
import { LoadedWeightSource, RangeWeightSource } from '../../workers/load/weight-source';
import { CausalLM } from '../../workers/model/causal-lm';
import { parseModelConfig } from '../../workers/model/config';
import { getPreset } from '../../workers/load/presets';
import { dequantizeNF4 } from '../../workers/nf4/reference';

const demoUrl = () => new URL('/demo/model/', location.origin).href;

describe('quantize on load (GPU)', () => {
  it('streams the demo model into GPU NF4 bit-exact with the CPU reference, one chunk at a time', async () => {
    const gpu = await Gpu.create();
    try {
      const lifetime = gpu.lifetimeBuffers();
      const files = urlFileSet(new HubClient({ retryDelayMs: 1 }), demoUrl());
      const { arch, weights } = await openModel(files);
      const chunkBytes = 8192; // 4096 f16 elements: every linear weight takes several chunks
      const onGpu = new Map<string, GpuTensor>();
      const stats = await quantizeOnLoad(weights, { arch, quant: DEFAULT_QUANT, target: gpuTarget(gpu, SHADERS), chunkBytes, onTensor: (n, t) => void onGpu.set(n, t) });
      const onCpu = new Map<string, LoadedTensor>();
      await quantizeOnLoad(weights, { arch, quant: DEFAULT_QUANT, target: cpuTarget, chunkBytes: 1 << 20, onTensor: (n, t) => void onCpu.set(n, t) });

      expect(stats.quantized).toBe(arch.layers * arch.linears.length);
      expect(stats.peakHeldBytes).toBeLessThanOrEqual(chunkBytes);
      const pool = gpu.pool.stats();
      // Scratch at its peak, beyond the device's lifetime buffers (uniform arena, dummy): one chunk
      // of 16-bit input, its packed codes and absmax, a readback.
      expect(pool.peak.scratch - lifetime).toBeLessThan(2 * chunkBytes);
      expect(pool.live.scratch - lifetime).toBeLessThan(1024);

      for (const [name, cpu] of onCpu) {
        const g = onGpu.get(name)!;
        expect(g.kind).toBe(cpu.kind);
        if (cpu.kind === 'nf4' && g.kind === 'nf4') {
          const back = await downloadNf4(gpu, g.weight);
          expect(Array.from(back.packed)).toEqual(Array.from(cpu.quant.packed));
          expect(Array.from(back.nested!.qabsmax)).toEqual(Array.from(cpu.quant.nested!.qabsmax));
          expect(Array.from(back.nested!.nestedAbsmax)).toEqual(Array.from(cpu.quant.nested!.nestedAbsmax));
          expect(back.nested!.offset).toBe(cpu.quant.nested!.offset);
        } else if (cpu.kind === 'dense' && g.kind === 'dense') {
          const bytes = new Uint8Array(await gpu.read(g.buffer, cpu.data.byteLength));
          expect(Array.from(bytes)).toEqual(Array.from(cpu.data));
        }
      }
    } finally {
      gpu.destroy();
    }
  });

  it('uploads a pre-quantized bitsandbytes Linear4bit layer as it is', async () => {
    const gpu = await Gpu.create();
    try {
      const bytes = new Uint8Array(await (await fetch('/tests/fixtures/bnb-nf4/linear4bit_f32_state_dict.safetensors')).arrayBuffer());
      const config = { model_type: 'falcon', hidden_size: 80, num_attention_heads: 5, num_hidden_layers: 1, vocab_size: 32, ffn_hidden_size: 320, multi_query: true, bias: false, parallel_attn: true };
      const files = localFileSet([new File([JSON.stringify(config)], 'config.json'), new File([bytes], 'model.safetensors')]);
      const { arch, weights } = await openModel(files);
      const out = new Map<string, GpuTensor>();
      const stats = await quantizeOnLoad(weights, { arch, quant: DEFAULT_QUANT, target: gpuTarget(gpu, SHADERS), onTensor: (n, t) => void out.set(n, t) });
      expect(stats.prequantized).toBe(1);
      const prefix = 'transformer.h.0.mlp.dense_h_to_4h.';
      const expected = readLinear4bit(new SafetensorsFile(bytes), prefix).quant;
      const got = out.get(`${prefix}weight`)!;
      expect(got.kind).toBe('nf4');
      if (got.kind !== 'nf4') return;
      const back = await downloadNf4(gpu, got.weight);
      expect(Array.from(back.packed)).toEqual(Array.from(expected.packed));
      expect(Array.from(back.nested!.qabsmax)).toEqual(Array.from(expected.nested!.qabsmax));
      expect(back.nested!.offset).toBe(expected.nested!.offset);
    } finally {
      gpu.destroy();
    }
  });

  it('caches the quantized demo model in IndexedDB; the second load makes no request', async () => {
    const cache = await ModelCache.open(`load-gpu-test-${Date.now()}`);
    let requests = 0;
    const client = new HubClient({ retryDelayMs: 1, fetch: (input, init) => (requests++, fetch(input, init)) });
    const cacheId = { repo: 'studio/demo', revision: 'v1' };
    const first = await loadModel({ files: urlFileSet(client, demoUrl()), quant: DEFAULT_QUANT, cache, cacheId });
    expect(first.fromCache).toBe(false);
    expect(requests).toBeGreaterThan(0);
    requests = 0;
    const second = await loadModel({ files: urlFileSet(client, demoUrl()), quant: DEFAULT_QUANT, cache, cacheId });
    expect(second.fromCache).toBe(true);
    expect(requests).toBe(0);
    expect([...second.tensors.keys()]).toEqual([...first.tensors.keys()]);
    const listed = await cache.list();
    expect(listed[0].bytes).toBe(first.storedBytes);
    cache.close();
  });

  it('builds the model from the cached NF4 states as they are, with no requantizing', async () => {
    const gpu = await Gpu.create();
    const cache = await ModelCache.open(`load-gpu-model-${Date.now()}`);
    try {
      const loaded = await loadModel({ files: urlFileSet(new HubClient({ retryDelayMs: 1 }), demoUrl()), quant: DEFAULT_QUANT, cache, cacheId: { repo: 'studio/demo', revision: 'v1' } });
      const source = new LoadedWeightSource(loaded.tensors, 'cache');
      const config = parseModelConfig(getPreset('demo').config, 'demo config');
      const model = await CausalLM.load(gpu, SHADERS, config, source, { mode: 'nf4' });
      const onGpu = await model.dequantizedLinearWeights();
      let linears = 0;
      for (const [name, t] of loaded.tensors) {
        if (t.kind !== 'nf4') continue;
        linears++;
        expect(Array.from(onGpu.get(name)!), name).toEqual(Array.from(dequantizeNF4(t.quant)));
      }
      expect(linears).toBe(config.layers * 7); // q, k, v, o, gate, up and down in every layer
      const ids = Int32Array.from({ length: 12 }, (_, i) => (i * 37 + 5) % config.vocabSize);
      const f = await model.forward({ inputIds: ids, attentionMask: new Int32Array(12).fill(1), labels: ids, batch: 1, seq: 12 });
      expect(Number.isFinite(f.lossSum)).toBe(true);
      model.dispose();
    } finally {
      cache.close();
      gpu.destroy();
    }
  });

  it('the studio load builds the model as tensors arrive: GPU and CPU quantizers cache the same bytes and build the same model, and so does the cache hit', async () => {
    const gpu = await Gpu.create();
    try {
      const lifetime = gpu.lifetimeBuffers();
      const config = parseModelConfig(getPreset('demo').config, 'demo config');
      const client = new HubClient({ retryDelayMs: 1 });
      const chunkBytes = 8192;
      const ids = Int32Array.from({ length: 12 }, (_, i) => (i * 37 + 5) % config.vocabSize);
      const batch = { inputIds: ids, attentionMask: new Int32Array(12).fill(1), labels: ids, batch: 1, seq: 12 };
      const build = async (weights: Parameters<typeof CausalLM.load>[3]) => {
        gpu.pool.trim();
        await gpu.done();
        gpu.pool.resetPeak();
        const model = await CausalLM.load(gpu, SHADERS, config, weights, { mode: 'nf4' });
        // Scratch beyond the device's lifetime buffers (uniform arena, dummy binding).
        const scratch = gpu.pool.stats().peak.scratch - lifetime;
        const linears = await model.dequantizedLinearWeights();
        const { logits } = await model.forward(batch);
        model.dispose();
        return { linears, logits, scratch };
      };
      // The model built the older way (whole f32 reads quantized by CausalLM itself) is the reference.
      const { weights: fileWeights } = await openModel(urlFileSet(client, demoUrl()));
      const reference = await build(new RangeWeightSource(fileWeights, 'demo'));

      const cached = new Map<string, LoadedTensor[]>();
      for (const quantizer of ['gpu', 'cpu'] as const) {
        const cache = await ModelCache.open(`load-gpu-stream-${quantizer}-${Date.now()}`);
        const cacheId = { repo: 'studio/demo', revision: 'v1' };
        const read: string[] = [];
        const download = await openLoad({ files: urlFileSet(client, demoUrl()), quant: DEFAULT_QUANT, cache, cacheId, chunkBytes, quantizer, onRead: (n) => void read.push(n) });
        expect(download.fromCache).toBe(false);
        const built = await build(download.weights);
        await download.finish();
        // Read in the file's order (the embedding first), every tensor once.
        expect(read).toEqual(download.weights.order());
        expect(read[0]).toBe('model.embed_tokens.weight');
        const scratch = built.scratch;
        expect(built.linears).toEqual(reference.linears);
        expect(Array.from(built.logits)).toEqual(Array.from(reference.logits));

        const manifest = (await cache.manifest((await cache.list())[0].key))!;
        cached.set(quantizer, await Promise.all(manifest.tensors.map((_, i) => cache.readTensor(manifest, i))));

        const hit = await openLoad({ files: urlFileSet(client, demoUrl()), quant: DEFAULT_QUANT, cache, cacheId, chunkBytes, quantizer });
        expect(hit.fromCache).toBe(true);
        const again = await build(hit.weights);
        await hit.finish();
        expect(again.linears).toEqual(reference.linears);
        expect(Array.from(again.logits)).toEqual(Array.from(reference.logits));
        console.info(`demo, ${quantizer} quantizer, chunk ${chunkBytes} B: CPU held at most ${download.held.peak} B downloading, ${hit.held.peak} B from the cache; GPU scratch peak while loading ${scratch} B (download), ${again.scratch} B (cache hit), ${reference.scratch} B (f32 reads quantized by CausalLM)`);
        if (quantizer === 'gpu') {
          // Chunks go to the GPU and the state comes back window by window: one chunk on the CPU at a
          // time, beside the quantizer's own f32 block absmax (gate/up/down_proj: 896 blocks) and its double quantization.
          expect(download.held.peak).toBeLessThanOrEqual(chunkBytes + 5 * 896 + 16);
          // One chunk of 16-bit input, its codes and absmax, the absmax readback and uniforms (forward scratch is smaller).
          expect(scratch).toBeLessThan(2 * chunkBytes);
        } else {
          // The growing NF4 state (gate/up/down_proj: 28 KiB codes + 3.5 KiB absmax) plus a chunk and its f32 widening.
          expect(download.held.peak).toBeLessThanOrEqual(28672 + 3584 + 3 * chunkBytes);
          // NF4 states are uploaded as they are: no quantizer scratch at all.
          expect(scratch).toBeLessThan(1024);
        }
        expect(again.scratch).toBeLessThan(1024);
        // A cache hit holds one NF4 state (an MLP projection's, about 31 KB) or one stored part of a table.
        expect(hit.held.peak).toBeLessThanOrEqual(28672 + 3584);
        cache.close();
      }

      // The cache holds the same bytes whichever quantizer made them.
      const [fromGpu, fromCpu] = [cached.get('gpu')!, cached.get('cpu')!];
      expect(fromGpu.map((t) => t.name)).toEqual(fromCpu.map((t) => t.name));
      for (let i = 0; i < fromCpu.length; i++) {
        const [g, c] = [fromGpu[i], fromCpu[i]];
        expect(g.kind, c.name).toBe(c.kind);
        expect(g.dtype, c.name).toBe(c.dtype);
        if (g.kind === 'nf4' && c.kind === 'nf4') {
          expect(g.quant.shape).toEqual(c.quant.shape);
          expect(Array.from(g.quant.packed), c.name).toEqual(Array.from(c.quant.packed));
          expect(Array.from(g.quant.quantMap)).toEqual(Array.from(c.quant.quantMap));
          expect(Array.from(g.quant.nested!.qabsmax), c.name).toEqual(Array.from(c.quant.nested!.qabsmax));
          expect(Array.from(g.quant.nested!.nestedAbsmax), c.name).toEqual(Array.from(c.quant.nested!.nestedAbsmax));
          expect(Array.from(g.quant.nested!.nestedMap)).toEqual(Array.from(c.quant.nested!.nestedMap));
          expect(g.quant.nested!.offset, c.name).toBe(c.quant.nested!.offset);
        } else if (g.kind === 'dense' && c.kind === 'dense') {
          expect(Array.from(g.data), c.name).toEqual(Array.from(c.data));
        }
      }
    } finally {
      gpu.destroy();
    }
  });

  it('a cache write that fails during a GPU-quantized download leaves no GPU memory behind', async () => {
    const gpu = await Gpu.create();
    try {
      gpu.lifetimeBuffers();
      const live = gpu.pool.stats().live;
      const config = parseModelConfig(getPreset('demo').config, 'demo config');
      const cache = await ModelCache.open(`load-gpu-failing-cache-${Date.now()}`);
      // The cache takes the dense tensors, then refuses the first NF4 state (a full disk, say).
      const openWrite = cache.openWrite.bind(cache);
      cache.openWrite = async (...args: Parameters<ModelCache['openWrite']>) => {
        const writer = (await openWrite(...args))!;
        const tensor = writer.tensor.bind(writer);
        writer.tensor = (meta) => {
          if (meta.kind === 'nf4') throw new Error('quota exceeded');
          return tensor(meta);
        };
        return writer;
      };
      const load = await openLoad({ files: urlFileSet(new HubClient({ retryDelayMs: 1 }), demoUrl()), quant: DEFAULT_QUANT, cache, cacheId: { repo: 'studio/demo', revision: 'v1' }, quantizer: 'gpu' });
      await expect(CausalLM.load(gpu, SHADERS, config, load.weights, { mode: 'nf4' })).rejects.toThrow('quota exceeded');
      await load.abort();
      await gpu.done();
      // Only the device's shared NF4 tables (16 codes + 256 nested-map values) stay, for later weights.
      expect(gpu.pool.stats().live).toEqual({ ...live, weights: live.weights + (16 + 256) * 4 });
      cache.close();
    } finally {
      gpu.destroy();
    }
  });
});
