/**
 * The GGUF writer and the llama.cpp LoRA adapter, read back with Hugging Face's maintained GGUF
 * reader (@huggingface/gguf): metadata with its types, tensor infos, and every tensor's bytes
 * compared with the PEFT tensors through the documented name map.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf, GGUFValueType, GGMLQuantizationType, type GGUFParseOutput, type GGUFTypedMetadata } from '@huggingface/gguf';
import { SafetensorsFile, writeSafetensors } from '../../workers/formats/safetensors';
import { f16BitsToF32, f32ToF16Bits } from '../../workers/formats/float16';
import { ggufBytes, ggufChunks, ggufLayout, GgufError, type GgufKeyValue, type GgufTensor } from '../../workers/export/gguf';
import { falconHeads, ggufArchitecture, ggufLoraAdapter, ggufRefusals, GgufLoraError, reorderLoraB, type AdapterTensors } from '../../workers/export/gguf-lora';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gguf-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileNo = 0;
async function readBack(bytes: Uint8Array): Promise<{ parsed: GGUFParseOutput<{ strict: false }> & { typedMetadata: GGUFTypedMetadata }; bytes: Uint8Array }> {
  const path = join(dir, `f${fileNo++}.gguf`);
  writeFileSync(path, bytes);
  const parsed = (await gguf(path, { allowLocalFile: true, typedMetadata: true })) as unknown as GGUFParseOutput<{ strict: false }> & { typedMetadata: GGUFTypedMetadata };
  return { parsed, bytes };
}

/** A tensor's stored values, located by the reader's data offset and tensor offset. */
function tensorValues(parsed: GGUFParseOutput<{ strict: false }>, bytes: Uint8Array, name: string): Float32Array {
  const info = parsed.tensorInfos.find((t) => t.name === name);
  if (!info) throw new Error(`no tensor ${name}`);
  const n = info.shape.reduce((a, b) => a * Number(b), 1);
  const start = Number(parsed.tensorDataOffset + info.offset);
  if (info.dtype === GGMLQuantizationType.F32) return new Float32Array(bytes.slice(start, start + 4 * n).buffer);
  if (info.dtype === GGMLQuantizationType.F16) return Float32Array.from(new Uint16Array(bytes.slice(start, start + 2 * n).buffer), f16BitsToF32);
  throw new Error(`unexpected dtype ${info.dtype}`);
}

const tensor = (name: string, shape: number[], fill: (i: number) => number, type: 'F32' | 'F16' = 'F32'): GgufTensor => ({
  name,
  type,
  shape,
  values: () => Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => fill(i)),
});

describe('GGUF writer', () => {
  it('writes every metadata type the reader reads back with the same type and value', async () => {
    const kvs: GgufKeyValue[] = [
      { key: 'general.architecture', value: { type: 'string', value: 'llama' } },
      { key: 't.u32', value: { type: 'u32', value: 4294967295 } },
      { key: 't.i32', value: { type: 'i32', value: -7 } },
      { key: 't.f32', value: { type: 'f32', value: 0.1 } },
      { key: 't.f64', value: { type: 'f64', value: 0.1 } },
      { key: 't.bool', value: { type: 'bool', value: true } },
      { key: 't.u64', value: { type: 'u64', value: 2n ** 40n + 3n } },
      { key: 't.str', value: { type: 'string', value: 'ünï ✓' } },
      { key: 't.strs', value: { type: 'array', itemType: 'string', value: ['a', '', 'ß'] } },
      { key: 't.u32s', value: { type: 'array', itemType: 'u32', value: [1, 2, 3] } },
      { key: 't.f32s', value: { type: 'array', itemType: 'f32', value: [0.5, -1.25] } },
      { key: 't.bools', value: { type: 'array', itemType: 'bool', value: [true, false] } },
      { key: 't.empty', value: { type: 'array', itemType: 'i32', value: [] } },
    ];
    const { parsed } = await readBack(await ggufBytes(kvs, [tensor('x', [3], (i) => i)]));
    const m = parsed.typedMetadata as unknown as Record<string, { value: unknown; type: number; subType?: number }>;
    expect(m.version.value).toBe(3);
    expect(m.kv_count.value).toBe(BigInt(kvs.length));
    expect(m['t.u32']).toMatchObject({ value: 4294967295, type: GGUFValueType.UINT32 });
    expect(m['t.i32']).toMatchObject({ value: -7, type: GGUFValueType.INT32 });
    expect(m['t.f32']).toMatchObject({ value: Math.fround(0.1), type: GGUFValueType.FLOAT32 });
    expect(m['t.f64']).toMatchObject({ value: 0.1, type: GGUFValueType.FLOAT64 });
    expect(m['t.bool']).toMatchObject({ value: true, type: GGUFValueType.BOOL });
    expect(m['t.u64']).toMatchObject({ value: 2n ** 40n + 3n, type: GGUFValueType.UINT64 });
    expect(m['t.str']).toMatchObject({ value: 'ünï ✓', type: GGUFValueType.STRING });
    expect(m['t.strs']).toMatchObject({ value: ['a', '', 'ß'], type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING });
    expect(m['t.u32s']).toMatchObject({ value: [1, 2, 3], subType: GGUFValueType.UINT32 });
    expect(m['t.f32s']).toMatchObject({ value: [0.5, -1.25], subType: GGUFValueType.FLOAT32 });
    expect(m['t.bools']).toMatchObject({ value: [true, false], subType: GGUFValueType.BOOL });
    expect(m['t.empty']).toMatchObject({ value: [], subType: GGUFValueType.INT32 });
  });

  it('aligns every tensor to 32 bytes, stores shapes innermost first, F32 exactly and F16 rounded', async () => {
    const kvs: GgufKeyValue[] = [{ key: 'general.alignment', value: { type: 'u32', value: 32 } }];
    // Awkward sizes: no tensor is a multiple of the alignment.
    const tensors = [tensor('a', [3, 5], (i) => i * 0.37 - 2), tensor('b', [7], (i) => -i / 3, 'F16'), tensor('c', [2, 3, 1, 5], (i) => Math.sin(i) * 1e-3), tensor('d', [1, 1], () => 65504, 'F16')];
    const bytes = await ggufBytes(kvs, tensors);
    expect(bytes.length).toBe(ggufLayout(kvs, tensors).totalBytes);
    const { parsed } = await readBack(bytes);
    expect(Number(parsed.tensorDataOffset) % 32).toBe(0);
    for (const t of tensors) {
      const info = parsed.tensorInfos.find((x) => x.name === t.name)!;
      expect(Number(info.offset) % 32).toBe(0);
      expect(info.shape.map(Number)).toEqual([...t.shape].reverse());
      expect(info.dtype).toBe(t.type === 'F32' ? GGMLQuantizationType.F32 : GGMLQuantizationType.F16);
      const want = t.values() as Float32Array;
      const got = tensorValues(parsed, bytes, t.name);
      expect(Array.from(got)).toEqual(Array.from(want, (v) => (t.type === 'F32' ? v : f16BitsToF32(f32ToF16Bits(v)))));
    }
  });

  it('streams: the header, then one chunk per tensor, each tensor read only when its turn comes', async () => {
    const asked: string[] = [];
    const tensors = ['p', 'q', 'r'].map((n, k) => ({ ...tensor(n, [k + 2, 3], (i) => i), values: () => (asked.push(n), Float32Array.from({ length: (k + 2) * 3 }, (_, i) => i)) }));
    const layout = ggufLayout([], tensors);
    const it = ggufChunks([], tensors);
    const first = await it.next();
    expect(first.value).toEqual(layout.header);
    expect(asked).toEqual([]);
    const sizes: number[] = [];
    for await (const c of it) sizes.push(c.length);
    expect(asked).toEqual(['p', 'q', 'r']);
    expect(sizes).toEqual([32, 64, 64]); // 24, 36, 48 bytes, each padded to a multiple of 32
    expect(layout.header.length + sizes.reduce((a, b) => a + b, 0)).toBe(layout.totalBytes);
  });

  it('refuses what it cannot write', async () => {
    const ok = tensor('x', [2], (i) => i);
    expect(() => ggufLayout([{ key: 'k', value: { type: 'u32', value: 1 } }, { key: 'k', value: { type: 'u32', value: 2 } }], [ok])).toThrow(/appears twice/);
    expect(() => ggufLayout([{ key: 'k', value: { type: 'u32', value: -1 } }], [ok])).toThrow(GgufError);
    expect(() => ggufLayout([{ key: 'k', value: { type: 'i32', value: 1.5 } }], [ok])).toThrow(/not a i32/);
    expect(() => ggufLayout([], [tensor('n'.repeat(64), [2], () => 0)])).toThrow(/1 to 63 bytes/);
    expect(() => ggufLayout([], [tensor('x', [2, 0], () => 0)])).toThrow(/positive dimensions/);
    expect(() => ggufLayout([], [tensor('x', [1, 1, 1, 1, 2], () => 0)])).toThrow(/positive dimensions/);
    expect(() => ggufLayout([], [ok, ok])).toThrow(/appears twice/);
    expect(() => ggufLayout([{ key: 'general.alignment', value: { type: 'u32', value: 64 } }], [ok])).toThrow(/general.alignment/);
    await expect(ggufBytes([], [{ ...ok, values: () => new Float32Array(3) }])).rejects.toThrow(/3 values given/);
  });
});

// --- the LoRA adapter -------------------------------------------------------------------------

const FIX = 'tests/fixtures/hf-golden';
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

/**
 * The converter's lora_b row order, written independently of the module under test: the output
 * rows of the base weight, reordered the way convert_hf_to_gguf.py reorders them, as a list of
 * source rows.
 */
function expectedRowSource(arch: string, module: string, rows: number, cfg: Record<string, unknown>): number[] {
  const ident = Array.from({ length: rows }, (_, i) => i);
  if (arch === 'llama' && /(q_proj|k_proj)$/.test(module)) {
    const heads = (module.endsWith('q_proj') ? cfg.num_attention_heads : (cfg.num_key_value_heads ?? cfg.num_attention_heads)) as number;
    const d = rows / heads;
    // reshape(heads, 2, d/2).swapaxes(1, 2).reshape(rows), applied to the row indices.
    const out: number[] = [];
    for (let h = 0; h < heads; h++) for (let j = 0; j < d / 2; j++) for (let t = 0; t < 2; t++) out.push(h * d + t * (d / 2) + j);
    return out;
  }
  if (arch === 'falcon' && module.endsWith('query_key_value')) {
    const { heads, kvHeads, headDim } = falconHeads(cfg);
    const g = heads / kvHeads + 2;
    const rowsOf = (group: number, slot: number) => Array.from({ length: headDim }, (_, i) => (group * g + slot) * headDim + i);
    const q: number[] = [];
    const k: number[] = [];
    const v: number[] = [];
    for (let grp = 0; grp < kvHeads; grp++) {
      for (let s = 0; s < g - 2; s++) q.push(...rowsOf(grp, s));
      k.push(...rowsOf(grp, g - 2));
      v.push(...rowsOf(grp, g - 1));
    }
    return [...q, ...k, ...v];
  }
  return ident;
}

/** The documented name map, restated: HF module suffix → GGUF tensor, per architecture. */
const NAME_MAP: Record<string, Record<string, string>> = {
  phi2: { 'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.dense': 'attn_output', 'mlp.fc1': 'ffn_up', 'mlp.fc2': 'ffn_down' },
  falcon: { 'self_attention.query_key_value': 'attn_qkv', 'self_attention.dense': 'attn_output', 'mlp.dense_h_to_4h': 'ffn_up', 'mlp.dense_4h_to_h': 'ffn_down' },
  llama: { 'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down' },
  qwen2: { 'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down' },
  phi3: { 'self_attn.qkv_proj': 'attn_qkv', 'self_attn.o_proj': 'attn_output', 'mlp.gate_up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down' },
};

async function checkAdapter(folder: string, arch: string, baseConfig: Record<string, unknown>, adapter: SafetensorsFile, adapterConfig: string, tensorType: 'F32' | 'F16' = 'F32') {
  const exp = ggufLoraAdapter(adapterConfig, adapter, baseConfig, { tensorType });
  expect(exp.architecture).toBe(arch);
  const chunks: Uint8Array[] = [];
  for await (const c of ggufChunks(exp.metadata, exp.tensors)) chunks.push(c);
  const bytes = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  chunks.reduce((at, c) => (bytes.set(c, at), at + c.length), 0);
  expect(bytes.length).toBe(exp.layout.totalBytes);
  const { parsed } = await readBack(bytes);
  const m = parsed.typedMetadata as unknown as Record<string, { value: unknown; type: number }>;
  expect(m['general.architecture']).toMatchObject({ value: arch, type: GGUFValueType.STRING });
  expect(m['general.type']).toMatchObject({ value: 'adapter', type: GGUFValueType.STRING });
  expect(m['adapter.type']).toMatchObject({ value: 'lora', type: GGUFValueType.STRING });
  const alpha = JSON.parse(adapterConfig).lora_alpha as number;
  expect(m['adapter.lora.alpha']).toMatchObject({ value: Math.fround(alpha), type: GGUFValueType.FLOAT32 });
  expect(m['general.alignment']).toMatchObject({ value: 32, type: GGUFValueType.UINT32 });
  expect(m['general.quantization_version']).toMatchObject({ value: 2, type: GGUFValueType.UINT32 });

  // Every PEFT tensor lands in exactly one GGUF tensor, and nothing else is in the file.
  const peftNames = adapter.names.filter((n) => n.includes('.lora_'));
  expect(parsed.tensorInfos.length).toBe(peftNames.length);
  const seen = new Set<string>();
  for (const name of peftNames) {
    const mm = /^base_model\.model\.(?:model\.layers|transformer\.h)\.(\d+)\.(.+)\.lora_([AB])\.weight$/.exec(name)!;
    expect(mm, name).toBeTruthy();
    const [, block, module, ab] = mm;
    const gname = `blk.${block}.${NAME_MAP[arch][module]}.weight.lora_${ab.toLowerCase()}`;
    expect(NAME_MAP[arch][module], `${folder}: ${module}`).toBeDefined();
    seen.add(gname);
    const info = parsed.tensorInfos.find((t) => t.name === gname)!;
    expect(info, gname).toBeDefined();
    const shape = adapter.info(name).shape;
    expect(info.shape.map(Number)).toEqual([...shape].reverse());
    expect(info.dtype).toBe(tensorType === 'F32' ? GGMLQuantizationType.F32 : GGMLQuantizationType.F16);
    const peft = adapter.f32(name);
    const got = tensorValues(parsed, bytes, gname);
    const round = (v: number) => (tensorType === 'F32' ? v : f16BitsToF32(f32ToF16Bits(v)));
    if (ab === 'A') {
      expect(Array.from(got)).toEqual(Array.from(peft, round));
    } else {
      const [rows, r] = shape;
      const src = expectedRowSource(arch, module, rows, baseConfig);
      const want = new Float32Array(rows * r);
      src.forEach((from, to) => want.set(peft.subarray(from * r, from * r + r), to * r));
      expect(Array.from(got)).toEqual(Array.from(want, round));
    }
  }
  expect(seen.size).toBe(parsed.tensorInfos.length);
  return exp;
}

const FAMILIES: [folder: string, arch: string][] = [
  ['tiny-phi', 'phi2'],
  ['tiny-falcon', 'falcon'],
  ['tiny-llama', 'llama'],
  ['tiny-qwen2', 'qwen2'],
  ['tiny-phi3', 'phi3'],
];

describe('GGUF LoRA adapter from a PEFT adapter', () => {
  for (const [folder, arch] of FAMILIES) {
    it(`${folder} → ${arch}: metadata, names, shapes and every tensor (F32 and F16)`, async () => {
      const base = readJson(`${FIX}/${folder}/config.json`);
      const adapter = new SafetensorsFile(new Uint8Array(readFileSync(`${FIX}/${folder}/adapter_model.safetensors`)), `${folder}/adapter_model.safetensors`);
      const config = readFileSync(`${FIX}/${folder}/adapter_config.json`, 'utf8');
      expect(ggufRefusals(config, adapter, base)).toEqual([]);
      const exp = await checkAdapter(folder, arch, base, adapter, config);
      expect(exp.nameMap.length * 2).toBe(adapter.names.length);
      await checkAdapter(folder, arch, base, adapter, config, 'F16');
    });
  }

  it('reads falcon with multi_query and a stale num_kv_heads as one K/V head', () => {
    const base = readJson(`${FIX}/tiny-falcon/config.json`);
    expect(base.num_kv_heads).toBe(4);
    expect(falconHeads(base)).toEqual({ heads: 4, kvHeads: 1, headDim: 16 });
    expect(falconHeads({ ...base, new_decoder_architecture: true, num_kv_heads: 2 })).toEqual({ heads: 4, kvHeads: 2, headDim: 16 });
    expect(falconHeads({ ...base, multi_query: false })).toEqual({ heads: 4, kvHeads: 4, headDim: 16 });
  });

  it('reorders grouped falcon query_key_value rows (several K/V groups) like the converter', async () => {
    // A falcon-40b-style layout: 4 heads in 2 K/V groups, head_dim 3, rank 2.
    const base = { architectures: ['FalconForCausalLM'], num_attention_heads: 4, hidden_size: 12, num_hidden_layers: 1, new_decoder_architecture: true, num_kv_heads: 2 };
    const rows = (4 + 2 * 2) * 3;
    const a = Float32Array.from({ length: 2 * 12 }, (_, i) => i / 7);
    const b = Float32Array.from({ length: rows * 2 }, (_, i) => i);
    const file = new SafetensorsFile(
      writeSafetensors([
        { name: 'base_model.model.transformer.h.0.self_attention.query_key_value.lora_A.weight', dtype: 'F32', shape: [2, 12], data: a },
        { name: 'base_model.model.transformer.h.0.self_attention.query_key_value.lora_B.weight', dtype: 'F32', shape: [rows, 2], data: b },
      ]),
    );
    await checkAdapter('synthetic falcon', 'falcon', base, file, JSON.stringify({ r: 2, lora_alpha: 4 }));
    // Group 0 = heads q0 q1 k0 v0, group 1 = q2 q3 k1 v1 → q0 q1 q2 q3 k0 k1 v0 v1 (row = 3·head slot + i).
    const heads = Array.from(reorderLoraB(b, rows, 2, { kind: 'falcon-qkv', heads: 4, kvHeads: 2, headDim: 3 })).filter((_, i) => i % 6 === 0).map((v) => v / 6);
    expect(heads).toEqual([0, 1, 4, 5, 2, 6, 3, 7]);
  });

  it('permutes llama q/k rows with their own head counts (GQA)', () => {
    // 2 heads of dim 4 → rows 0..7; per head (0,1,2,3) becomes (0,2,1,3).
    const b = Float32Array.from({ length: 8 }, (_, i) => i);
    expect(Array.from(reorderLoraB(b, 8, 1, { kind: 'rope-permute', heads: 2 }))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });

  it('maps architectures as llama.cpp names them', () => {
    expect(ggufArchitecture({ architectures: ['PhiForCausalLM'] })).toBe('phi2');
    expect(ggufArchitecture({ architectures: ['RWForCausalLM'] })).toBe('falcon');
    expect(ggufArchitecture({ model_type: 'RefinedWebModel' })).toBe('falcon');
    expect(ggufArchitecture({ architectures: ['Phi3ForCausalLM'] })).toBe('phi3');
    expect(ggufArchitecture({ architectures: ['GPT2LMHeadModel'] })).toBeNull();
  });
});

describe('ggufRefusals: what llama.cpp cannot take is said before the download', () => {
  const base = readJson(`${FIX}/tiny-llama/config.json`);
  const adapterBytes = new Uint8Array(readFileSync(`${FIX}/tiny-llama/adapter_model.safetensors`));
  const adapter = new SafetensorsFile(adapterBytes);
  const config = readJson(`${FIX}/tiny-llama/adapter_config.json`);
  const A = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
  const withTensors = (extra: { name: string; shape: number[] }[], drop: string[] = []): AdapterTensors => {
    const names = [...adapter.names.filter((n) => !drop.includes(n)), ...extra.map((e) => e.name)];
    return {
      names,
      info: (n) => {
        const e = extra.find((x) => x.name === n);
        return e ? { dtype: 'F32' as const, shape: e.shape } : adapter.info(n);
      },
      f32: (n) => adapter.f32(n),
    };
  };

  it('accepts the plain adapter', () => {
    expect(ggufRefusals(config, adapter, base)).toEqual([]);
  });

  it.each([
    ['rsLoRA', { use_rslora: true }, /use_rslora.*alpha \/ √r/],
    ['per-module rank', { rank_pattern: { q_proj: 8 } }, /rank_pattern.*per-module/],
    ['per-module alpha', { alpha_pattern: { q_proj: 32 } }, /alpha_pattern.*per-module/],
    ['DoRA', { use_dora: true }, /use_dora/],
    ['trained biases', { bias: 'all' }, /"bias" = "all"/],
    ['modules_to_save', { modules_to_save: ['lm_head'] }, /modules_to_save/],
    ['other PEFT types', { peft_type: 'IA3' }, /peft_type/],
  ])('refuses %s', (_, change, message) => {
    const refusals = ggufRefusals({ ...config, ...change }, adapter, base);
    expect(refusals.length).toBe(1);
    expect(refusals[0]).toMatch(message);
    expect(() => ggufLoraAdapter({ ...config, ...change }, adapter, base)).toThrow(GgufLoraError);
  });

  it('refuses LoRA on biases, norms, embeddings and a tied lm_head, and unmapped modules', () => {
    const cases: [{ name: string; shape: number[] }[], RegExp, Record<string, unknown>?][] = [
      [[{ name: 'base_model.model.model.layers.0.self_attn.q_proj.bias', shape: [64] }], /is a bias/],
      [[{ name: 'base_model.model.model.layers.0.input_layernorm.weight', shape: [64] }], /is a norm/],
      [[{ name: 'base_model.model.model.embed_tokens.lora_embedding_A', shape: [4, 512] }], /is an embedding/],
      [
        [
          { name: 'base_model.model.lm_head.lora_A.weight', shape: [4, 64] },
          { name: 'base_model.model.lm_head.lora_B.weight', shape: [512, 4] },
        ],
        /shares the embedding matrix/,
        { ...base, tie_word_embeddings: true },
      ],
      [
        [
          { name: 'base_model.model.model.embed_tokens.lora_A.weight', shape: [4, 512] },
          { name: 'base_model.model.model.embed_tokens.lora_B.weight', shape: [64, 4] },
        ],
        /embedding "model.embed_tokens"/,
      ],
      [
        [
          { name: 'base_model.model.model.layers.0.self_attn.rotary.lora_A.weight', shape: [4, 64] },
          { name: 'base_model.model.model.layers.0.self_attn.rotary.lora_B.weight', shape: [64, 4] },
        ],
        /no llama tensor in llama.cpp's name map/,
      ],
      [
        [
          { name: 'base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight', shape: [4, 64] },
          { name: 'base_model.model.model.layers.5.self_attn.q_proj.lora_B.weight', shape: [64, 4] },
        ],
        /layer 5, but the base model has 2 layers/,
      ],
    ];
    for (const [extra, message, cfg] of cases) {
      const refusals = ggufRefusals(config, withTensors(extra), cfg ?? base);
      expect(refusals.length, String(message)).toBe(1);
      expect(refusals[0]).toMatch(message);
    }
    expect(ggufRefusals(config, withTensors([], [A]), base)[0]).toMatch(/has lora_B but no lora_A/);
  });

  it('maps LoRA on an untied lm_head to llama.cpp\'s output tensor', async () => {
    const extra = [
      { name: 'base_model.model.lm_head.lora_A.weight', shape: [4, 64] },
      { name: 'base_model.model.lm_head.lora_B.weight', shape: [512, 4] },
    ];
    const tensors: AdapterTensors = {
      names: [...adapter.names, ...extra.map((e) => e.name)],
      info: (n) => {
        const e = extra.find((x) => x.name === n);
        return e ? { dtype: 'F32' as const, shape: e.shape } : adapter.info(n);
      },
      f32: (n) => (extra.some((e) => e.name === n) ? Float32Array.from({ length: n.includes('lora_A') ? 256 : 2048 }, (_, i) => i) : adapter.f32(n)),
    };
    expect(ggufRefusals(config, tensors, { ...base, tie_word_embeddings: false })).toEqual([]);
    const exp = ggufLoraAdapter(config, tensors, { ...base, tie_word_embeddings: false });
    const last = exp.tensors.slice(-2);
    expect(last.map((t) => [t.name, t.shape])).toEqual([
      ['output.weight.lora_a', [4, 64]],
      ['output.weight.lora_b', [512, 4]],
    ]);
  });

  it('refuses an architecture llama.cpp has no mapping for here', () => {
    expect(ggufRefusals(config, adapter, { ...base, architectures: ['GPTNeoXForCausalLM'] })[0]).toMatch(/GPTNeoXForCausalLM/);
  });
});
