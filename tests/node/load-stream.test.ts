/**
 * Loading lean: the demo model served by the mock hub is read tensor by tensor in its files'
 * own order (alphabetical: the embedding first), the way CausalLM.load pulls from a streamed source
 * (linear weights as NF4 states, the 16-bit tables chunk by chunk, the rest whole), and the
 * loader's measured CPU holdings stay at about one tensor plus one chunk — for a download and
 * for the cache hit after it — where the old path held the whole quantized model.
 */
import 'fake-indexeddb/auto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { MockHub } from '../mock-hub/server';
import { HubClient } from '../../workers/load/hub';
import { hubFileSet, openModel } from '../../workers/load/sources';
import { openLoad } from '../../workers/load/load-model';
import { ModelCache } from '../../workers/load/cache';
import { DEFAULT_QUANT } from '../../workers/load/presets';
import { isQuantizedLinear, type ArchShape } from '../../workers/load/arch';
import { crc32 } from '../../workers/util/crc32';
import { cpuTarget, quantizeOnLoad, type LoadedTensor } from '../../workers/load/quantize-on-load';
import type { StreamedSource } from '../../workers/load/stream-source';
import type { Nf4Quantized } from '../../workers/nf4/reference';

const REPO = 'studio-test/demo';
const DEMO = 'public/demo/model';
const hub = new MockHub();
const files = () => hubFileSet(new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1 }), REPO);
let dbCount = 0;

beforeAll(async () => {
  await hub.start();
  hub.upload(REPO, ['config.json', 'model.safetensors'].map((f) => [f, new Uint8Array(readFileSync(`${DEMO}/${f}`))] as [string, Uint8Array]));
});
afterAll(() => hub.stop());

const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

/** A checksum of what the engine would upload (the test keeps no tensor, so the loader's count is the whole story). */
function nf4Digest(q: Nf4Quantized): string {
  let c = crc32(q.packed);
  if (q.nested) c = crc32(bytesOf(q.nested.nestedAbsmax), crc32(q.nested.qabsmax, c));
  return `${c}:${q.nested?.offset}`;
}

function referenceDigests(tensors: Map<string, LoadedTensor>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, t] of tensors) out.set(name, t.kind === 'nf4' ? nf4Digest(t.quant) : String(crc32(t.data)));
  return out;
}

/** Reads every tensor as CausalLM.load in QLoRA mode does, in the source's order; returns their digests. */
async function pullLikeCausalLM(weights: StreamedSource, arch: ArchShape): Promise<Map<string, string>> {
  const tables = new Set([arch.embeddingName, arch.lmHeadName]);
  const out = new Map<string, string>();
  for (const name of weights.order()) {
    if (isQuantizedLinear(arch, name)) {
      out.set(name, nf4Digest((await weights.readNf4!(name))!));
    } else if (tables.has(name)) {
      let c = 0;
      for await (const piece of weights.readRawChunks!(name)) c = crc32(piece, c);
      out.set(name, String(c));
    } else {
      out.set(name, String(crc32(await weights.readRaw(name))));
    }
  }
  return out;
}

/** Tensor names in the order their bytes lie in the file. */
function fileOrder(): string[] {
  const bytes = readFileSync(`${DEMO}/model.safetensors`);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  return Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])
    .map(([k]) => k);
}

describe('streamed load of the demo model', () => {
  for (const chunkBytes of [8192, 4 * 1024 * 1024]) {
    it(`download then cache hit, in the files' order, hold about one tensor + one chunk (chunk ${chunkBytes} B)`, async () => {
      const { arch, weights: fileWeights } = await openModel(files());
      const reference = new Map<string, LoadedTensor>();
      await quantizeOnLoad(fileWeights, { arch, quant: DEFAULT_QUANT, target: cpuTarget, onTensor: (n, t) => void reference.set(n, t) });
      const expected = referenceDigests(reference);
      // The largest NF4 state while it is built (packed codes + f32 block absmax) and the largest tensor as cached.
      const largestLinear = Math.max(...[...reference.values()].filter((t) => t.kind === 'nf4').map((t) => (t.kind === 'nf4' ? t.quant.packed.byteLength : 0)));
      const building = largestLinear + (largestLinear * 2 * 4) / 64;
      const largestTensor = Math.max(...[...reference.values()].map((t) => (t.kind === 'dense' ? t.data.byteLength : t.quant.packed.byteLength)));
      const chunk = Math.min(chunkBytes, largestTensor);

      const cache = await ModelCache.open(`stream-test-${++dbCount}`);
      const cacheId = { repo: REPO, revision: 'main' };
      const download = await openLoad({ files: files(), quant: DEFAULT_QUANT, cache, cacheId, chunkBytes });
      expect(download.fromCache).toBe(false);
      expect(download.weights.order()).toEqual(fileOrder());
      expect(download.weights.order()[0]).toBe('model.embed_tokens.weight');
      const got = await pullLikeCausalLM(download.weights, arch);
      const { storedBytes } = await download.finish();
      expect(got).toEqual(expected);
      const downloadPeak = download.held.peak;
      expect(download.held.bytes).toBe(0);

      const hit = await openLoad({ files: files(), quant: DEFAULT_QUANT, cache, cacheId, chunkBytes });
      expect(hit.fromCache).toBe(true);
      expect(hit.weights.order()).toEqual(fileOrder());
      expect(await pullLikeCausalLM(hit.weights, arch)).toEqual(expected);
      await hit.finish();
      const hitPeak = hit.held.peak;
      expect(hit.held.bytes).toBe(0);

      console.info(`demo model, chunk ${chunkBytes} B: CPU held at most ${downloadPeak} B downloading and ${hitPeak} B from the cache; the whole quantized model (what the old path kept) is ${storedBytes} B`);
      // The CPU quantizer holds the state it builds plus one chunk and its f32 widening (3 chunks of 16-bit input).
      expect(downloadPeak).toBeLessThanOrEqual(Math.max(building + 3 * chunk, 2 * chunk));
      expect(downloadPeak).toBeGreaterThanOrEqual(largestLinear);
      // A cache hit holds one NF4 state, or one stored part of a table.
      expect(hitPeak).toBeLessThanOrEqual(Math.max(largestLinear + 4096, chunk));
      if (chunkBytes < largestTensor) {
        expect(downloadPeak).toBeLessThan(storedBytes / 8);
        expect(hitPeak).toBeLessThan(storedBytes / 8);
      }
      cache.close();
    }, 60_000);
  }

  it('tensors the model does not read still go into the cached copy', async () => {
    const cache = await ModelCache.open(`stream-test-${++dbCount}`);
    const cacheId = { repo: REPO, revision: 'main' };
    const download = await openLoad({ files: files(), quant: DEFAULT_QUANT, cache, cacheId });
    const first = download.weights.order()[0];
    await download.weights.readRaw(first);
    expect(download.weights.unread()).toHaveLength(fileOrder().length - 1);
    await download.finish();
    const [listed] = await cache.list();
    expect(listed.tensors).toBe(fileOrder().length);
    cache.close();
  }, 60_000);
});
