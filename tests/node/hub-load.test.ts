import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient } from '../../workers/load/hub';
import { hubFileSet, localFileSet, openModel } from '../../workers/load/sources';
import { cpuTarget, quantizeOnLoad, chunkToF32, type LoadedTensor } from '../../workers/load/quantize-on-load';
import { DEFAULT_QUANT } from '../../workers/load/presets';
import { ProgressTracker, type LoadProgress } from '../../workers/load/progress';
import { quantizeNF4 } from '../../workers/nf4/reference';
import { readLinear4bit } from '../../workers/nf4/state-dict';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../workers/formats/safetensors';

const REPO = 'test-org/tiny-phi';
const hub = new MockHub();
const config = tinyPhiConfig();
const tensors = tinyModelTensors(config, 'F16');
const sharded = tinyModelFiles(config, tensors, 2);

beforeAll(async () => {
  await hub.start();
  for (const [path, data] of sharded) hub.addFile(REPO, path, data);
});
afterAll(() => hub.stop());
beforeEach(() => hub.clearLog());

function client(extra: ConstructorParameters<typeof HubClient>[0] = {}) {
  return new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1, ...extra });
}

async function loadAll(files: ReturnType<typeof hubFileSet>, chunkBytes = 1000) {
  const { arch, weights } = await openModel(files);
  const out = new Map<string, LoadedTensor>();
  const stats = await quantizeOnLoad(weights, { arch, quant: DEFAULT_QUANT, target: cpuTarget, chunkBytes, onTensor: (name, t) => void out.set(name, t) });
  return { out, stats, weights };
}

function expectMatchesSource(out: Map<string, LoadedTensor>, source: TensorToWrite[]) {
  expect(out.size).toBe(source.length);
  for (const t of source) {
    const got = out.get(t.name)!;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (got.kind === 'dense') {
      expect(got.dtype).toBe(t.dtype);
      expect(Buffer.compare(got.data, bytes)).toBe(0);
    } else {
      // Chunked quantization must equal the whole-tensor reference bit for bit.
      const ref = quantizeNF4(chunkToF32(bytes, t.dtype, 'src', t.name), t.shape, { doubleQuant: true });
      expect(got.quant.shape).toEqual(t.shape);
      expect(Buffer.compare(got.quant.packed, ref.packed)).toBe(0);
      expect(Buffer.compare(got.quant.nested!.qabsmax, ref.nested!.qabsmax)).toBe(0);
      expect([...got.quant.nested!.nestedAbsmax]).toEqual([...ref.nested!.nestedAbsmax]);
      expect(got.quant.nested!.offset).toBe(ref.nested!.offset);
    }
  }
}

describe('hub client against the mock hub', () => {
  it('builds resolve URLs', () => {
    const c = new HubClient();
    expect(c.resolveUrl('microsoft/phi-1_5', 'main', 'model.safetensors')).toBe('https://huggingface.co/microsoft/phi-1_5/resolve/main/model.safetensors');
    expect(c.resolveUrl('tiiuae/falcon-7b', 'refs/pr/1', 'a b.json')).toBe('https://huggingface.co/tiiuae/falcon-7b/resolve/refs%2Fpr%2F1/a%20b.json');
    expect(() => c.resolveUrl('../etc', 'main', 'x')).toThrow(/not a hub repo id/);
  });

  it('loads a sharded model through redirects and Range requests, quantizing linear weights to NF4', async () => {
    const { out, stats } = await loadAll(hubFileSet(client(), REPO));
    expectMatchesSource(out, tensors);
    expect(stats.quantized).toBe(2 * 6);
    expect(stats.dense).toBe(tensors.length - 12);
    expect(out.get('model.layers.0.mlp.fc1.weight')!.kind).toBe('nf4');
    expect(out.get('model.embed_tokens.weight')!.kind).toBe('dense');
    expect(out.get('lm_head.weight')!.kind).toBe('dense');
    // Every shard byte was fetched by a redirected, ranged request.
    const resolves = hub.requests.filter((r) => r.path.includes('/resolve/'));
    expect(resolves.every((r) => r.status === 302 || r.status === 404)).toBe(true);
    const cdn = hub.requests.filter((r) => r.path.startsWith('/cdn/') && r.path.endsWith('.safetensors'));
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.every((r) => r.status === 206 && r.range !== null)).toBe(true);
  });

  it('holds at most one chunk of source data at a time', async () => {
    const chunk = 2048;
    const { stats, weights } = await loadAll(hubFileSet(client(), REPO), chunk);
    expect(stats.sourceBytes).toBe(weights.dataBytes);
    // One F16 chunk (the CPU quantizer adds its f32 widening, 2× more); far below the model.
    expect(stats.peakHeldBytes).toBeLessThanOrEqual(chunk);
    expect(stats.peakHeldBytes).toBeLessThan(weights.dataBytes / 50);
  });

  it('resumes a tensor after the connection is cut mid-file, byte-identical', async () => {
    const shard = 'model-00001-of-00002.safetensors';
    const cutAt = Math.floor((sharded.get(shard) as Uint8Array).byteLength * 0.6);
    hub.cutOnce({ file: shard, atByte: cutAt });
    const retries: string[] = [];
    const { out } = await loadAll(hubFileSet(client({ onRetry: (_f, _a, why) => retries.push(why) }), REPO), 1 << 20);
    expectMatchesSource(out, tensors);
    expect(retries.some((r) => r.includes('resuming'))).toBe(true);
    // The resumed request starts exactly where the cut response stopped.
    const resumed = hub.requests.filter((r) => r.path.endsWith(shard) && r.range?.startsWith(`bytes=${cutAt}-`));
    expect(resumed.length).toBeGreaterThan(0);
  });

  it('refuses to stitch a file that changed on the hub between the cut and the resume', async () => {
    const repo = 'test-org/changing';
    const shard = 'model.safetensors';
    const original = writeSafetensors(tensors, { format: 'pt' });
    hub.addFile(repo, 'config.json', JSON.stringify(config));
    hub.addFile(repo, shard, original);
    hub.cutOnce({ file: shard, atByte: Math.floor(original.byteLength * 0.7) });
    const changed = original.slice();
    changed[changed.length - 1] ^= 0xff;
    // The new upload lands while the client waits to resume.
    const c = client({ onRetry: () => hub.addFile(repo, shard, changed) });
    await expect(loadAll(hubFileSet(c, repo), 1 << 20)).rejects.toThrow(/model.safetensors: the file changed on the hub during the download/);
  });

  it('retries 503s with backoff and reports progress per file and overall', async () => {
    hub.failNext('config.json', 503, 2);
    const events: LoadProgress[] = [];
    const tracker = new ProgressTracker((p) => events.push(p));
    const c = client({ onBytes: (file, n) => tracker.add(file, n) });
    const { weights } = await loadAll(hubFileSet(c, REPO));
    const last = events.at(-1)!;
    const totalFiles = [...sharded.values()].reduce((n, d) => n + (typeof d === 'string' ? d.length : 0), 0);
    expect(last.done).toBeGreaterThanOrEqual(weights.dataBytes + totalFiles);
    expect(last.files.map((f) => f.file)).toEqual(expect.arrayContaining(['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']));
    for (let i = 1; i < events.length; i++) expect(events[i].done).toBeGreaterThan(events[i - 1].done);
    expect(hub.requests.filter((r) => r.path.endsWith('config.json') && r.status === 503).length).toBe(2);
  });

  it('gated repos need the token; the error says so', async () => {
    hub.addFile('test-org/gated', 'config.json', JSON.stringify(config));
    hub.addFile('test-org/gated', 'model.safetensors', sharded.get('model-00001-of-00002.safetensors') as Uint8Array);
    hub.gate('test-org/gated', 'hf_secret');
    await expect(openModel(hubFileSet(client(), 'test-org/gated'))).rejects.toThrow(/config.json: HTTP 401: the repo is gated or private/);
    const { arch } = await openModel(hubFileSet(client({ token: 'hf_secret' }), 'test-org/gated'));
    expect(arch.hidden).toBe(64);
  });
});

describe('bad model files', () => {
  it('a shard listed in the index but absent names the shard and a tensor', async () => {
    const repo = 'test-org/missing-shard';
    for (const [path, data] of sharded) if (!path.startsWith('model-00002')) hub.addFile(repo, path, data);
    await expect(openModel(hubFileSet(client(), repo))).rejects.toThrow(/model-00002-of-00002\.safetensors \(tensor "[^"]+"\): shard listed in model.safetensors.index.json is missing/);
  });

  it('a truncated file names the file and the tensor past its end', async () => {
    const repo = 'test-org/truncated';
    const whole = writeSafetensors(tensors, { format: 'pt' });
    hub.addFile(repo, 'config.json', JSON.stringify(config));
    hub.addFile(repo, 'model.safetensors', whole.subarray(0, whole.byteLength - 100));
    await expect(openModel(hubFileSet(client(), repo))).rejects.toThrow(/model.safetensors \(tensor "[^"]+"\): data ends at byte \d+, beyond the end of the file/);
  });

  it('an unsupported dtype and bad config keys are named', async () => {
    const repo = 'test-org/bad-dtype';
    const bad = tensors.map((t) => (t.name === 'model.layers.0.mlp.fc1.weight' ? { ...t, dtype: 'I16' as const } : t));
    hub.addFile(repo, 'config.json', JSON.stringify(config));
    hub.addFile(repo, 'model.safetensors', writeSafetensors(bad));
    await expect(loadAll(hubFileSet(client(), repo))).rejects.toThrow(/model.safetensors \(tensor "model.layers.0.mlp.fc1.weight"\): dtype I16 is not supported/);
    const noHidden = { ...config };
    delete noHidden.hidden_size;
    hub.addFile('test-org/bad-config', 'config.json', JSON.stringify(noHidden));
    await expect(openModel(hubFileSet(client(), 'test-org/bad-config'))).rejects.toThrow('config.json: "hidden_size" is missing');
    hub.addFile('test-org/gpt2', 'config.json', JSON.stringify({ model_type: 'gpt2' }));
    await expect(openModel(hubFileSet(client(), 'test-org/gpt2'))).rejects.toThrow(/config.json: "model_type" = "gpt2" is not supported \(supported: "phi", "falcon", /);
  });
});

describe('local files', () => {
  it('a dropped folder loads through the same pipeline with the same result', async () => {
    const files = [...sharded].map(([name, data]) => new File([data as BlobPart], name));
    files.push(new File(['{}'], 'tokenizer.json'));
    const { out } = await loadAll(localFileSet(files));
    expectMatchesSource(out, tensors);
  });

  it('a pre-quantized bitsandbytes Linear4bit layer loads as it is', async () => {
    const bytes = new Uint8Array(readFileSync('tests/fixtures/bnb-nf4/linear4bit_f32_state_dict.safetensors'));
    const falcon = { model_type: 'falcon', hidden_size: 80, num_attention_heads: 5, num_hidden_layers: 1, vocab_size: 32, ffn_hidden_size: 320, multi_query: true, bias: false, parallel_attn: true };
    const files = [new File([JSON.stringify(falcon)], 'config.json'), new File([bytes], 'model.safetensors')];
    const { out, stats } = await loadAll(localFileSet(files));
    expect(stats.prequantized).toBe(1);
    const prefix = 'transformer.h.0.mlp.dense_h_to_4h.';
    const expected = readLinear4bit(new SafetensorsFile(bytes), prefix);
    const got = out.get(`${prefix}weight`)!;
    expect(got.kind).toBe('nf4');
    if (got.kind !== 'nf4') return;
    expect(Buffer.compare(got.quant.packed, expected.quant.packed)).toBe(0);
    expect(got.quant.nested!.offset).toBe(expected.quant.nested!.offset);
    expect([...got.quant.nested!.nestedAbsmax]).toEqual([...expected.quant.nested!.nestedAbsmax]);
  });
});
