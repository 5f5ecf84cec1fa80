#!/usr/bin/env node
// Generates the built-in `demo` model: a tiny phi-architecture causal LM with seeded random
// weights, in Hugging Face's on-disk layout (config.json + model.safetensors, float16), so the
// studio can load and fine-tune something with no network. Deterministic: the same seed gives
// the same bytes on every machine (integer RNG, exact float16 rounding).
//
//   node scripts/make-demo-model.mjs [--out public/demo/model] [--seed 20261128]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CONFIG_SOURCE = resolve(root, 'workers/load/configs/demo.json');

function parseArgs(argv) {
  const flags = { out: resolve(root, 'public/demo/model'), seed: 20261128 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') flags.out = resolve(argv[++i]);
    else if (argv[i] === '--seed') flags.seed = Number(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!Number.isInteger(flags.seed)) throw new Error('--seed must be an integer');
  return flags;
}

/** mulberry32: a small seeded 32-bit generator; identical output in every JS engine. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(next, n, std) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(next(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next()) * std;
  }
  return out;
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** float32 → IEEE half bits, round to nearest even (values here are small and normal or zero). */
function f16Bits(value) {
  scratch[0] = value;
  const x = scratchBits[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  let e = exp - 127 + 15;
  if (exp === 0xff || e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

function toF16(values) {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16Bits(values[i]);
  return out;
}

/** The tensors HF's PhiForCausalLM.save_pretrained writes, in named_modules() order. */
function phiTensors(config, next) {
  const h = config.hidden_size;
  const ff = config.intermediate_size;
  const v = config.vocab_size;
  const std = config.initializer_range;
  const tensors = [];
  const add = (name, shape, values) => tensors.push({ name, shape, values });
  const linear = (prefix, out, inp) => {
    add(`${prefix}.weight`, [out, inp], normal(next, out * inp, std));
    // Small non-zero biases so every bias path of the engine is exercised by the demo.
    add(`${prefix}.bias`, [out], normal(next, out, std / 2));
  };
  const layerNorm = (prefix) => {
    add(`${prefix}.weight`, [h], Float32Array.from(normal(next, h, std), (x) => 1 + x));
    add(`${prefix}.bias`, [h], normal(next, h, std / 2));
  };
  add('model.embed_tokens.weight', [v, h], normal(next, v * h, std));
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'dense']) linear(`${p}.self_attn.${proj}`, h, h);
    linear(`${p}.mlp.fc1`, ff, h);
    linear(`${p}.mlp.fc2`, h, ff);
    layerNorm(`${p}.input_layernorm`);
  }
  layerNorm('model.final_layernorm');
  linear('lm_head', v, h);
  return tensors;
}

/** safetensors with F16 data, tensors sorted by name, header space-padded to 8 bytes. */
function writeSafetensors(tensors) {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  const blobs = [];
  for (const t of sorted) {
    const data = toF16(t.values);
    header[t.name] = { dtype: 'F16', shape: t.shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
    blobs.push(data);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setUint32(0, headerBytes.byteLength, true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.byteLength;
  for (const b of blobs) {
    out.set(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), pos);
    pos += b.byteLength;
  }
  return out;
}

function main() {
  const { out, seed } = parseArgs(process.argv.slice(2));
  const configText = readFileSync(CONFIG_SOURCE, 'utf8');
  const config = JSON.parse(configText);
  const tensors = phiTensors(config, rng(seed));
  const bytes = writeSafetensors(tensors);
  mkdirSync(out, { recursive: true });
  writeFileSync(resolve(out, 'config.json'), configText);
  writeFileSync(resolve(out, 'model.safetensors'), bytes);
  const params = tensors.reduce((n, t) => n + t.values.length, 0);
  process.stderr.write(`demo model: ${tensors.length} tensors, ${params} parameters, ${bytes.byteLength} bytes -> ${out}\n`);
}

main();
