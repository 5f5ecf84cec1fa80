/**
 * Streamed preparation into the example store gives the same examples, split, statistics and
 * preview as the in-memory `prepareDataset`; stored examples read back by index through the
 * chunk LRU; a run's batches come out identical whichever way the examples are held; a write
 * the browser refuses for room is a storage-full error, and a failed preparation leaves nothing.
 */
import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { makeBatch, prepareDataset, readRows, type Example, type Row } from '../../workers/data';
import { CHUNK_EXAMPLES, ExampleStore, datasetKey } from '../../workers/data/example-store';
import { prepareToStore } from '../../workers/data/prepare-stream';
import { ArrayExamples } from '../../workers/data/example-list';
import { runExamples, storedRunExamples, storedSplit } from '../../workers/session/runs';
import { storedSummary, datasetSummary } from '../../workers/session/datasets';
import { ShuffledExampleSource, ShuffledExamples } from '../../workers/train/batches';
import { tokenizerFromFiles, type TextTokenizer } from '../../workers/tokenizer';
import { EngineError } from '../../workers/errors';

const DIR = 'public/demo/tokenizer';
const tok: TextTokenizer = tokenizerFromFiles(readFileSync(`${DIR}/tokenizer.json`, 'utf8'), readFileSync(`${DIR}/tokenizer_config.json`, 'utf8'));
const DS = 'public/demo/data/ds1000-demo.jsonl';

/** The DS-1000 demo rows repeated to `n` rows (several chunks), as JSONL bytes. */
function bigJsonl(n: number): Uint8Array {
  const lines = readFileSync(DS, 'utf8').split('\n').filter(Boolean);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const row = JSON.parse(lines[i % lines.length]) as Row;
    out.push(JSON.stringify({ ...row, prompt: `${i}: ${row.prompt as string}` }));
  }
  return new TextEncoder().encode(out.join('\n'));
}

const same = (a: Example[], b: Example[]) => {
  expect(a.length).toBe(b.length);
  a.forEach((e, i) => {
    expect([...e.inputIds]).toEqual([...b[i].inputIds]);
    expect([...e.labels]).toEqual([...b[i].labels]);
  });
};

let dbCount = 0;
const freshStore = () => ExampleStore.open(`datasets-test-${++dbCount}`);

describe('the example store', () => {
  it('streams rows into chunks and reads back what prepareDataset makes, split and statistics included', async () => {
    const bytes = bigJsonl(CHUNK_EXAMPLES * 2 + 37);
    const file = 'big.jsonl';
    const settings = { seqLength: 176, validationFraction: 0.1, seed: 3 };
    const memory = await prepareDataset(readRows(new Blob([bytes as BlobPart]), file), { preset: 'ds1000', tokenizer: tok, maxLength: settings.seqLength, validationFraction: 0.1, seed: 3, file });
    const store = await freshStore();
    const key = datasetKey({ content: 'test', format: { template: 'ds1000' }, maxLength: settings.seqLength, tokenizer: 'demo' });
    const stored = await prepareToStore(readRows(new Blob([bytes as BlobPart]), file), { preset: 'ds1000', tokenizer: tok, maxLength: settings.seqLength, file, key }, await store.writer(file));
    expect(stored.rows).toBe(CHUNK_EXAMPLES * 2 + 37);
    expect(stored.chunkStarts.length).toBeGreaterThanOrEqual(3);
    expect(stored.tokens).toEqual(memory.stats.tokens);
    expect(stored.warnings).toEqual(memory.stats.warnings);
    expect(await store.find(key)).toBeDefined();

    // The summary the page gets is the same either way.
    const format = { template: 'ds1000' as const, mapping: null };
    expect(storedSummary(file, format, stored, storedSplit(stored, settings))).toEqual(datasetSummary(file, memory.stats.columns, format, memory));

    // The run's examples: same order, same content.
    const fromMemory = runExamples(memory, file, settings.seqLength);
    const fromStore = storedRunExamples(store, stored, settings);
    expect(fromStore.train.count).toBe(fromMemory.train.count);
    expect(fromStore.dropped).toBe(fromMemory.dropped);
    same(await fromStore.train.slice(0), await fromMemory.train.slice(0));
    same(await fromStore.validation.slice(0), await fromMemory.validation.slice(0));
    const iterated: Example[] = [];
    for await (const e of fromStore.validation) iterated.push(e);
    same(iterated, await fromMemory.validation.slice(0));
    same([await fromStore.train.get(100)], [memory.train.filter((e) => e.labels.some((l, i) => i > 0 && l !== -100))[100]]);

    // Shuffled micro-batches through the store equal those from memory, bit for bit.
    const collate = (ex: Example[]) => makeBatch(ex, tok.padTokenId);
    const order = { microBatchSize: 3, seed: 11, shuffle: true, collate };
    const a = new ShuffledExamples({ examples: await fromMemory.train.slice(0), ...order });
    const b = new ShuffledExampleSource({ examples: fromStore.train, ...order });
    expect(b.microBatchesPerEpoch).toBe(a.microBatchesPerEpoch);
    for (const [epoch, index] of [[0, 0], [0, 5], [1, 7], [2, a.microBatchesPerEpoch - 1]]) expect(await b.microBatch(epoch, index)).toEqual(a.microBatch(epoch, index));
  });

  it('reads scattered indices through a bounded LRU of chunks', async () => {
    const store = await freshStore();
    const bytes = bigJsonl(CHUNK_EXAMPLES * 4);
    const stored = await prepareToStore(readRows(new Blob([bytes as BlobPart]), 'x.jsonl'), { preset: 'ds1000', tokenizer: tok, maxLength: 64, file: 'x.jsonl', key: 'k' }, await store.writer('x.jsonl'));
    const list = store.examples(stored, 2);
    const all = await new ArrayExamples(await list.slice(0)).slice(0);
    const reads = list.chunkReads;
    const picks = [5, CHUNK_EXAMPLES * 3 + 1, 7, CHUNK_EXAMPLES + 2, 6];
    same(await list.getMany(picks), picks.map((i) => all[i]));
    expect(list.chunkReads - reads).toBeLessThanOrEqual(4);
    await expect(list.get(stored.rows)).rejects.toThrow(/outside/);
  });

  it('names the rows missing a mapped column as prepareDataset does, and keeps nothing of the failed write', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => (i % 50 === 7 ? { prompt: `p${i}` } : { prompt: `p${i}`, response: `r${i}` }));
    const mapping = { kind: 'prompt-response' as const, prompt: 'prompt', response: 'response' };
    const memoryError = await prepareDataset(rows, { mapping, tokenizer: tok, maxLength: 32, file: 'm.jsonl' }).catch((e: Error) => e.message);
    const store = await freshStore();
    async function* stream() {
      yield* rows;
    }
    await expect(prepareToStore(stream(), { mapping, tokenizer: tok, maxLength: 32, file: 'm.jsonl', key: 'm' }, await store.writer('m.jsonl'))).rejects.toThrow(memoryError as string);
    expect(await store.find('m')).toBeUndefined();
    expect(await store.list()).toEqual([]);
  });

  it('a write refused for lack of room is a storage-full EngineError naming the file', async () => {
    const store = await freshStore();
    const writer = await store.writer('full.jsonl');
    store.putChunk = async () => {
      throw new DOMException('quota', 'QuotaExceededError');
    };
    const err = await prepareToStore(readRows(new Blob([bigJsonl(CHUNK_EXAMPLES + 1) as BlobPart]), 'full.jsonl'), { preset: 'ds1000', tokenizer: tok, maxLength: 32, file: 'full.jsonl', key: 'f' }, writer).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).info).toMatchObject({ code: 'storage-full', section: 'data', file: 'full.jsonl' });
  });

  it('prunes the oldest datasets but keeps those a run still reads', async () => {
    const store = await freshStore();
    const keys: string[] = [];
    for (let i = 0; i < 6; i++) {
      const key = `k${i}`;
      keys.push(key);
      await prepareToStore((async function* () { yield { prompt: 'a', reference_code: 'b', metadata: { library: 'x' } }; })(), { preset: 'ds1000', tokenizer: tok, maxLength: 32, file: `${i}.jsonl`, key }, await store.writer(`${i}.jsonl`));
      await new Promise((r) => setTimeout(r, 2));
    }
    await store.prune(new Set(['k0']), 2);
    expect((await store.list()).map((d) => d.key).sort()).toEqual(['k0', 'k4', 'k5']);
  });
});
