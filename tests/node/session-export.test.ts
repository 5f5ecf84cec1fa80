/**
 * The session's export paths without a GPU: the base each source names, the PEFT config written
 * from one place whoever writes it (the GPU read-back, a checkpoint), the commit carried, sizes
 * announced before writing equal to the bytes the chunks give (PEFT, GGUF, merged into the demo's
 * own weights), llama.cpp's refusals surfaced before anything is written, and the commit a CLI
 * model folder records.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { adapterGgufRefusals, adapterInput, baseWeightsOf, cachedBaseWeights, cardFacts, exportBase, ggufExport, mergedExport, peftExport, promptOf, type ExportFile } from '../../workers/session/export';
import { peftAdapterConfig, peftAdapterModel, type LoraTensorData } from '../../workers/export/peft';
import { exportPeftAdapter, type LoraModule } from '../../workers/model/lora-adapter';
import { localFileSet } from '../../workers/load/sources';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { runSettings } from '../../workers/run/settings';
import { folderCommit } from '../../workers/cli/model-files';
import type { Gpu } from '../../workers/gpu/runtime';
import type { CliIo } from '../../workers/cli/io';
import type { TextTokenizer } from '../../workers/tokenizer';
import type { CacheManifest, ModelCache } from '../../workers/load/cache';
import type { LoadedTensor } from '../../workers/load/quantize-on-load';
import { dequantizeNF4, quantizeNF4 } from '../../workers/nf4/reference';
import { f16ArrayToF32, f32ArrayToF16 } from '../../workers/formats/float16';

const DEMO = 'public/demo/model';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const config = JSON.parse(readFileSync(`${DEMO}/config.json`, 'utf8')) as Record<string, unknown>;

async function collect(f: ExportFile): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of f.chunks()) parts.push(c);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

const text = async (f: ExportFile) => new TextDecoder().decode(await collect(f));

/** A LoRA adapter on the demo's q_proj and up_proj (r 2), with values that are not all zero. */
function demoAdapter(): LoraTensorData[] {
  const h = config.hidden_size as number;
  const inter = config.intermediate_size as number;
  const out: LoraTensorData[] = [];
  let seed = 1;
  const fill = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.02);
  for (let layer = 0; layer < (config.num_hidden_layers as number); layer++) {
    for (const [path, inF, outF] of [['self_attn.q_proj', h, h], ['mlp.up_proj', h, inter]] as const) {
      const key = `base_model.model.model.layers.${layer}.${path}`;
      out.push({ key: `${key}.lora_A.weight`, shape: [2, inF], data: fill(2 * inF) });
      out.push({ key: `${key}.lora_B.weight`, shape: [outF, 2], data: fill(2 * outF) });
    }
  }
  return out;
}

const SETTINGS = { ...runSettings({ targetModules: ['q_proj', 'up_proj'] }), rank: 2, alpha: 4, dropout: 0 };
const LORA = { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'up_proj'] };
const FACTS = { finalTrainLoss: 1.25, finalValidationLoss: 1.5, steps: 7, dataset: 'ds1000-demo.jsonl' };

function input(base = exportBase({ kind: 'preset', name: 'demo' }, null, 'public/demo/model'), revision: string | null = null) {
  const tensors = demoAdapter();
  const peft = { adapterModel: peftAdapterModel(tensors), adapterConfig: peftAdapterConfig(LORA, LORA.targetModules, base.name, revision) };
  return adapterInput(peft, config, base, revision, cardFacts(SETTINGS, FACTS, { fingerprint: 'crc32:0badf00d', template: 'ds1000', train: 40, validation: 4 }));
}

describe('the base an exported adapter names', () => {
  it('follows the base-name rule for every model source', () => {
    expect(exportBase({ kind: 'preset', name: 'demo' }, null, 'public/demo/model')).toEqual({ name: 'demo', hubId: null, local: true });
    expect(exportBase({ kind: 'preset', name: 'phi-1_5' }, null, 'microsoft/phi-1_5')).toEqual({ name: 'microsoft/phi-1_5', hubId: 'microsoft/phi-1_5', local: false });
    expect(exportBase({ kind: 'hub', id: 'Qwen/Qwen2.5-0.5B' }, null, 'Qwen/Qwen2.5-0.5B').name).toBe('Qwen/Qwen2.5-0.5B');
    const files: File[] = [];
    expect(exportBase({ kind: 'local', files }, { _name_or_path: 'microsoft/phi-1_5' }, 'phi-copy')).toEqual({ name: 'microsoft/phi-1_5', hubId: 'microsoft/phi-1_5', local: true });
    expect(exportBase({ kind: 'local', files }, { _name_or_path: '/home/me/models/phi' }, 'phi-copy')).toEqual({ name: 'phi-copy', hubId: null, local: true });
  });
});

describe('the PEFT config comes from one place', () => {
  it('the GPU read-back writes exactly peftAdapterConfig, with the revision', async () => {
    const tensors = demoAdapter();
    const gpu = { readF32: async (buf: { data: Float32Array }) => buf.data } as unknown as Gpu;
    const modules = [0, 1].map((i) => {
      const a = tensors[2 * i];
      const b = tensors[2 * i + 1];
      const name = a.key.includes('q_proj') ? 'q_proj' : 'up_proj';
      return { spec: { name }, index: i, a: { key: a.key, shape: a.shape, weight: { data: a.data } }, b: { key: b.key, shape: b.shape, weight: { data: b.data } } } as unknown as LoraModule;
    });
    const settings = { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'up_proj'], targetRegex: false, useRslora: false };
    const exported = await exportPeftAdapter(gpu, modules, settings, 'microsoft/phi-1_5', COMMIT);
    expect(exported.adapterConfig).toBe(peftAdapterConfig(settings, ['q_proj', 'up_proj'], 'microsoft/phi-1_5', COMMIT));
    expect(JSON.parse(exported.adapterConfig)).toMatchObject({ base_model_name_or_path: 'microsoft/phi-1_5', revision: COMMIT });
  });
});

describe('session export files', () => {
  it('peft: the base by the rule, the commit, the card with front matter, settings, fingerprint and losses; sizes before writing', async () => {
    const base = exportBase({ kind: 'hub', id: 'microsoft/phi-1_5' }, null, 'microsoft/phi-1_5');
    const files = peftExport(input(base, COMMIT));
    expect(files.map((f) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'README.md']);
    for (const f of files) expect((await collect(f)).length).toBe(f.bytes);
    expect(JSON.parse(await text(files[0]))).toMatchObject({ base_model_name_or_path: 'microsoft/phi-1_5', revision: COMMIT, r: 2, lora_alpha: 4 });
    const card = await text(files[2]);
    expect(card).toMatch(/^---\nbase_model: "microsoft\/phi-1_5"\nbase_model_relation: adapter\nlibrary_name: peft\n/);
    expect(card).toContain(`at commit \`${COMMIT}\``);
    expect(card).toContain('fingerprint: `crc32:0badf00d`');
    expect(card).toContain('final training loss: 1.25');
    expect(card).toContain('final validation loss: 1.5');
    expect(card).toContain(`| learning rate | ${Number(SETTINGS.learningRate.toPrecision(4))} |`);
  });

  it('peft on the demo: named by its preset, and the card says the base is local', async () => {
    const files = peftExport(input());
    expect(JSON.parse(await text(files[0]))).toMatchObject({ base_model_name_or_path: 'demo', revision: null });
    expect(await text(files[2])).toContain('The base model is local');
  });

  it('gguf: no refusal for the demo adapter; adapter, Modelfile and card sized before writing', async () => {
    const i = input();
    expect(adapterGgufRefusals(i)).toEqual([]);
    const tokenizer = { eosToken: '<|endoftext|>' } as TextTokenizer;
    const files = ggufExport(i, { prompt: promptOf(tokenizer, { template: 'ds1000', mapping: null }, null) });
    expect(files.map((f) => f.name)).toEqual(['adapter.gguf', 'Modelfile', 'README.md']);
    for (const f of files) expect((await collect(f)).length).toBe(f.bytes);
    expect(await text(files[1])).toContain('PARAMETER stop "<|endoftext|>"');
  });

  it('gguf: what llama.cpp cannot take is listed before anything is written', () => {
    const i = input();
    const rslora = { ...i, adapterConfig: i.adapterConfig.replace('"use_rslora": false', '"use_rslora": true') };
    const refusals = adapterGgufRefusals(rslora);
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals.join('\n')).toMatch(/rslora/i);
  });

  it('the Modelfile prompt: the mapping or template the run used; none known is an error', () => {
    const tok = { eosToken: '</s>' } as TextTokenizer;
    expect(promptOf(tok, { template: null, mapping: { kind: 'prompt-response', prompt: 'q', response: 'a' } }, null).format).toEqual({ kind: 'instruction' });
    expect(promptOf(tok, { template: null, mapping: { kind: 'text', text: 't' } }, null).format).toEqual({ kind: 'text' });
    expect(promptOf(tok, null, 'counseling').format).toEqual({ kind: 'preset', preset: 'counseling' });
    expect(() => promptOf(tok, null, null, 'x.jsonl')).toThrow(/prompt format/);
  });

  it('merged: into the demo\'s own 16-bit weights, streamed; sizes before writing; W + scale·B·A', async () => {
    const files = localFileSet([new File([readFileSync(`${DEMO}/config.json`)], 'config.json'), new File([readFileSync(`${DEMO}/model.safetensors`)], 'model.safetensors')], 'demo');
    const out = await mergedExport({ input: input(), weights: await baseWeightsOf(files), into: 'original', files, tokenizerFile: async (name) => (name === 'tokenizer.json' ? new TextEncoder().encode('{}') : null) });
    expect(out.map((f) => f.name)).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'README.md']);
    const bytes = new Map<string, Uint8Array>();
    for (const f of out) {
      const b = await collect(f);
      expect(b.length, f.name).toBe(f.bytes);
      bytes.set(f.name, b);
    }
    expect(new TextDecoder().decode(bytes.get('README.md'))).toContain('original checkpoint weights');
    // One merged value checked by hand: q_proj of layer 0, row 3, column 5.
    const base = new SafetensorsFile(new Uint8Array(readFileSync(`${DEMO}/model.safetensors`)));
    const merged = new SafetensorsFile(bytes.get('model.safetensors')!);
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const h = config.hidden_size as number;
    const [a, b] = demoAdapter();
    const delta = (b.data[3 * 2] * a.data[5] + b.data[3 * 2 + 1] * a.data[h + 5]) * (4 / 2);
    const want = base.f32(name)[3 * h + 5] + delta;
    expect(Math.abs(merged.f32(name)[3 * h + 5] - want)).toBeLessThan(Math.abs(want) * 2 ** -10 + 1e-7);
    // A tensor without an adapter is copied as it is.
    expect(merged.f32('model.layers.0.self_attn.k_proj.weight')).toEqual(base.f32('model.layers.0.self_attn.k_proj.weight'));
  });
});

describe('merging offline: the cached NF4 base, dequantized', () => {
  it('reads dense tensors as stored and NF4 weights dequantized to their dtype, one tensor held at a time; the card says so', async () => {
    const h = config.hidden_size as number;
    const dense = new Float32Array(h).map((_, i) => 1 + i / h);
    const linear = new Float32Array(h * h).map((_, i) => Math.sin(i) * 0.05);
    const q = quantizeNF4(linear, [h, h], { doubleQuant: true });
    const tensors: LoadedTensor[] = [
      { kind: 'dense', name: 'model.final_layernorm.weight', dtype: 'F16', shape: [h], data: new Uint8Array(f32ArrayToF16(dense).buffer) },
      { kind: 'nf4', name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'float16', quant: q },
    ];
    const manifest = {
      repo: 'microsoft/phi-1_5', revision: 'main', commit: COMMIT,
      tensors: tensors.map((t) => (t.kind === 'dense' ? { name: t.name, kind: 'dense', dtype: t.dtype, shape: t.shape, arrays: [] } : { name: t.name, kind: 'nf4', dtype: t.dtype, shape: [h, h], arrays: [] })),
    } as unknown as CacheManifest;
    let reads = 0;
    const cache = { readTensor: async (_m: CacheManifest, i: number) => (reads++, tensors[i]) } as unknown as ModelCache;
    const weights = cachedBaseWeights(cache, manifest);
    expect(weights.tensors).toEqual([{ name: 'model.final_layernorm.weight', dtype: 'F16', shape: [h] }, { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F16', shape: [h, h] }]);
    const rows = await weights.read('model.layers.0.self_attn.q_proj.weight', 2 * h, 4 * h);
    const more = await weights.read('model.layers.0.self_attn.q_proj.weight', 4 * h, 5 * h);
    expect(reads).toBe(1);
    const want = f16ArrayToF32(f32ArrayToF16(dequantizeNF4(q)));
    expect(f16ArrayToF32(new Uint16Array(rows.slice().buffer))).toEqual(want.slice(2 * h, 4 * h));
    expect(f16ArrayToF32(new Uint16Array(more.slice().buffer))).toEqual(want.slice(4 * h, 5 * h));

    const i = input(exportBase({ kind: 'hub', id: 'microsoft/phi-1_5' }, null, 'microsoft/phi-1_5'), COMMIT);
    const layer0 = { ...i, tensors: new SafetensorsFile(peftAdapterModel(demoAdapter().slice(0, 2))) };
    const out = await mergedExport({ input: layer0, weights, into: 'dequantized-nf4', files: null, tokenizerFile: null });
    expect(out.map((f) => f.name)).toEqual(['config.json', 'model.safetensors', 'README.md']);
    for (const f of out) expect((await collect(f)).length).toBe(f.bytes);
    expect(await text(out[2])).toContain('the delta was added to the NF4 base dequantized');
  });
});

describe('the commit a CLI model folder records', () => {
  const io = (files: Record<string, string>): CliIo => ({
    log: () => {},
    line: () => {},
    readFile: async () => new Uint8Array(),
    readText: async (p) => files[p],
    listDir: async () => null,
    exists: async (p) => p in files,
    writeFile: async () => {},
  });

  it('a hub cache snapshot path, or a --local-dir download\'s metadata; else none', async () => {
    expect(await folderCommit(io({}), `/home/me/.cache/huggingface/hub/models--microsoft--phi-1_5/snapshots/${COMMIT}/`)).toBe(COMMIT);
    expect(await folderCommit(io({ 'phi/.cache/huggingface/download/config.json.metadata': `${COMMIT}\n"etag"\n1733000000.0\n` }), 'phi')).toBe(COMMIT);
    expect(await folderCommit(io({ 'phi/.cache/huggingface/download/config.json.metadata': 'main\n' }), 'phi')).toBeNull();
    expect(await folderCommit(io({}), 'phi')).toBeNull();
  });
});
