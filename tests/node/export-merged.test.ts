/**
 * The merged 16-bit model: every tensor equals W + (alpha/r)·B·A (computed here in f64) within
 * one unit in the last place of the stored dtype, unadapted tensors are the base's rounded once,
 * the shards and index follow the hub's layout, and a falcon-7b-shaped merge holds about one
 * block of rows (far less than one tensor) at a time.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { SafetensorsFile, type DType } from '../../workers/formats/safetensors';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../workers/formats/float16';
import { mergedFiles, MergeError, type BaseWeights } from '../../workers/export/merged';
import type { ExportFile } from '../../workers/export/bundle';
import { tensorsInMemory } from '../../workers/export/peft';

async function collect(f: ExportFile): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of f.chunks()) parts.push(c);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/** A safetensors file as BaseWeights, read a range of elements at a time. */
function weightsOf(file: SafetensorsFile): BaseWeights {
  return {
    tensors: file.names.map((n) => ({ name: n, dtype: file.info(n).dtype, shape: file.info(n).shape })),
    read: async (name, start, end) => {
      const t = file.info(name);
      const size = t.dtype === 'F32' ? 4 : 2;
      return file.bytes.slice(t.begin + start * size, t.begin + end * size);
    },
  };
}

/** Distance in units of the last place of a 16-bit value (same sign assumed near the value). */
function ulps(a: number, b: number, dtype: 'F16' | 'BF16'): number {
  const bits = (x: number) => (dtype === 'F16' ? f32ToF16Bits(x) : f32ToBf16Bits(x));
  const ord = (h: number) => (h & 0x8000 ? -(h & 0x7fff) : h);
  return Math.abs(ord(bits(a)) - ord(bits(b)));
}

describe('merged model', () => {
  for (const [folder, dtype] of [
    ['tiny-phi', 'F16'],
    ['tiny-falcon', 'BF16'],
  ] as const) {
    it(`${folder} → ${dtype}: every tensor within 1 ulp of W + scale·B·A, unadapted ones rounded once`, async () => {
      const dir = `tests/fixtures/hf-golden/${folder}`;
      const base = new SafetensorsFile(new Uint8Array(readFileSync(`${dir}/model.safetensors`)));
      const adapter = new SafetensorsFile(new Uint8Array(readFileSync(`${dir}/adapter_model.safetensors`)));
      const cfg = JSON.parse(readFileSync(`${dir}/adapter_config.json`, 'utf8')) as { lora_alpha: number; r: number };
      const baseConfig = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')) as Record<string, unknown>;
      const gen = new Uint8Array(readFileSync(`${dir}/generation_config.json`));
      const { files, stats } = mergedFiles(weightsOf(base), adapter, baseConfig, { alpha: cfg.lora_alpha, r: cfg.r, dtype, blockElements: 1000 }, [{ name: 'generation_config.json', data: gen }]);
      expect(files.map((f) => f.name)).toEqual(['config.json', 'model.safetensors', 'generation_config.json']);
      const bytes = await Promise.all(files.map(collect));
      files.forEach((f, i) => expect(bytes[i].length, f.name).toBe(f.bytes));
      expect(JSON.parse(new TextDecoder().decode(bytes[0])).torch_dtype).toBe(dtype === 'F16' ? 'float16' : 'bfloat16');
      const merged = new SafetensorsFile(bytes[1]);
      expect(merged.names.sort()).toEqual(base.names.sort());
      const scale = cfg.lora_alpha / cfg.r;
      let adapted = 0;
      let worst = 0;
      for (const name of base.names) {
        expect(merged.info(name).dtype).toBe(dtype);
        expect(merged.info(name).shape).toEqual(base.info(name).shape);
        const w = base.f32(name);
        const got = merged.f32(name);
        const module = name.replace(/\.weight$/, '');
        const aKey = `base_model.model.${module}.lora_A.weight`;
        if (adapter.has(aKey)) {
          adapted++;
          const a = adapter.f32(aKey);
          const b = adapter.f32(`base_model.model.${module}.lora_B.weight`);
          const [rows, cols] = base.info(name).shape;
          for (let i = 0; i < rows; i++) {
            for (let j = 0; j < cols; j++) {
              let d = 0;
              for (let k = 0; k < cfg.r; k++) d += b[i * cfg.r + k] * a[k * cols + j];
              const want = w[i * cols + j] + scale * d;
              const u = ulps(got[i * cols + j], want, dtype);
              worst = Math.max(worst, u);
            }
          }
        } else {
          const round = dtype === 'F16' ? (x: number) => f16BitsToF32(f32ToF16Bits(x)) : (x: number) => bf16BitsToF32(f32ToBf16Bits(x));
          expect(Array.from(got)).toEqual(Array.from(w, round));
        }
      }
      expect(adapted).toBe(adapter.names.length / 2);
      expect(worst).toBeLessThanOrEqual(1);
      expect(stats.mergedTensors).toBe(adapted);
      expect(stats.copiedTensors).toBe(base.names.length - adapted);
    });
  }

  it('shards in the hub layout with an index that names every tensor', async () => {
    const dir = 'tests/fixtures/hf-golden/tiny-phi';
    const base = new SafetensorsFile(new Uint8Array(readFileSync(`${dir}/model.safetensors`)));
    const adapter = new SafetensorsFile(new Uint8Array(readFileSync(`${dir}/adapter_model.safetensors`)));
    const { files, plan } = mergedFiles(weightsOf(base), adapter, {}, { alpha: 8, r: 4, dtype: 'BF16', maxShardBytes: 100_000 });
    const n = plan.shards.length;
    expect(n).toBeGreaterThan(2);
    expect(files.map((f) => f.name)).toEqual(['config.json', ...Array.from({ length: n }, (_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`), 'model.safetensors.index.json']);
    const index = JSON.parse(new TextDecoder().decode(await collect(files[files.length - 1]))) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    expect(Object.keys(index.weight_map).sort()).toEqual(base.names.sort());
    let total = 0;
    for (const f of files.slice(1, -1)) {
      const shard = new SafetensorsFile(await collect(f));
      for (const name of shard.names) {
        expect(index.weight_map[name]).toBe(f.name);
        total += shard.info(name).end - shard.info(name).begin;
      }
      expect(shard.header.metadata).toEqual({ format: 'pt' });
    }
    expect(index.metadata.total_size).toBe(total);
  });

  it('refuses an adapter that does not fit the base', () => {
    const dir = 'tests/fixtures/hf-golden/tiny-phi';
    const base = new SafetensorsFile(new Uint8Array(readFileSync(`${dir}/model.safetensors`)));
    const stray = tensorsInMemory([
      { key: 'base_model.model.lm_head_tied.lora_A.weight', shape: [2, 64], data: new Float32Array(128) },
      { key: 'base_model.model.lm_head_tied.lora_B.weight', shape: [512, 2], data: new Float32Array(1024) },
    ]);
    expect(() => mergedFiles(weightsOf(base), stray, {}, { alpha: 1, r: 2, dtype: 'F16' })).toThrow(MergeError);
    const wrong = tensorsInMemory([
      { key: 'base_model.model.model.layers.0.mlp.fc1.lora_A.weight', shape: [2, 64], data: new Float32Array(128) },
      { key: 'base_model.model.model.layers.0.mlp.fc1.lora_B.weight', shape: [64, 2], data: new Float32Array(128) },
    ]);
    expect(() => mergedFiles(weightsOf(base), wrong, {}, { alpha: 1, r: 2, dtype: 'F16' })).toThrow(/does not match/);
  });

  it('falcon-7b widths: holds about one block of rows at a time, never a whole tensor', async () => {
    // falcon-7b's real widths (hidden 4544, 71 heads + 1 K/V head, ffn 18176, vocab 65024), one layer, bf16.
    const H = 4544;
    const F = 18176;
    const V = 65024;
    const QKV = (71 + 2) * 64;
    const tensors: { name: string; dtype: DType; shape: number[] }[] = [
      { name: 'transformer.word_embeddings.weight', dtype: 'BF16', shape: [V, H] },
      { name: 'transformer.h.0.input_layernorm.weight', dtype: 'BF16', shape: [H] },
      { name: 'transformer.h.0.input_layernorm.bias', dtype: 'BF16', shape: [H] },
      { name: 'transformer.h.0.self_attention.query_key_value.weight', dtype: 'BF16', shape: [QKV, H] },
      { name: 'transformer.h.0.self_attention.dense.weight', dtype: 'BF16', shape: [H, H] },
      { name: 'transformer.h.0.mlp.dense_h_to_4h.weight', dtype: 'BF16', shape: [F, H] },
      { name: 'transformer.h.0.mlp.dense_4h_to_h.weight', dtype: 'BF16', shape: [H, F] },
      { name: 'transformer.ln_f.weight', dtype: 'BF16', shape: [H] },
      { name: 'transformer.ln_f.bias', dtype: 'BF16', shape: [H] },
    ];
    // Weights are a repeated 1 MiB pattern of small bf16 values, made on request.
    const pattern = new Uint16Array(1 << 19).map((_, i) => f32ToBf16Bits(Math.sin(i) * 0.02));
    const patternBytes = new Uint8Array(pattern.buffer);
    const base: BaseWeights = {
      tensors,
      read: async (_, start, end) => {
        const out = new Uint8Array((end - start) * 2);
        for (let at = 0; at < out.length; at += patternBytes.length) out.set(patternBytes.subarray(0, Math.min(patternBytes.length, out.length - at)), at);
        return out;
      },
    };
    const r = 16;
    const lora = [
      ['self_attention.query_key_value', QKV, H],
      ['self_attention.dense', H, H],
      ['mlp.dense_h_to_4h', F, H],
      ['mlp.dense_4h_to_h', H, F],
    ].flatMap(([m, out, inp]) => [
      { key: `base_model.model.transformer.h.0.${m}.lora_A.weight`, shape: [r, inp as number] as [number, number], data: new Float32Array(r * (inp as number)).fill(0.01) },
      { key: `base_model.model.transformer.h.0.${m}.lora_B.weight`, shape: [out as number, r] as [number, number], data: new Float32Array((out as number) * r).fill(0.001) },
    ]);
    const { files, plan, stats } = mergedFiles(base, tensorsInMemory(lora), { model_type: 'falcon' }, { alpha: 32, r, dtype: 'BF16' });
    let written = 0;
    for (const f of files) for await (const c of f.chunks()) written += c.length;
    expect(written).toBe(files.reduce((a, f) => a + f.bytes, 0));
    expect(plan.shards.length).toBe(1);
    expect(stats.mergedTensors).toBe(4);
    // The largest tensor (the embedding) is 591 MB in bf16; the merge holds a block of rows, A and B.
    expect(stats.largestTensorBytes).toBe(V * H * 2);
    expect(stats.peakHeldBytes).toBeLessThan(64 * 2 ** 20);
    console.log(`falcon-7b-shaped merge: ${(written / 2 ** 20).toFixed(1)} MiB written, peak held ${(stats.peakHeldBytes / 2 ** 20).toFixed(2)} MiB (largest tensor ${(stats.largestTensorBytes / 2 ** 20).toFixed(1)} MiB)`);
  }, 600_000);
});
