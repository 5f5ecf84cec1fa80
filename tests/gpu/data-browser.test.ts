import { describe, expect, it } from 'vitest';
import { collectRows, makeBatch, prepareDataset, readRows } from '../../workers/data';
import { tokenizerFromUrl } from '../../workers/tokenizer';

// The data pipeline uses only web APIs: the same code runs in Chromium on a fetch stream.
describe('data pipeline in the browser', () => {
  it('streams the demo CSV from fetch, tokenizes with the demo tokenizer and batches', async () => {
    const tok = await tokenizerFromUrl('/public/demo/tokenizer/');
    expect(tok.vocabSize).toBe(2048);
    const res = await fetch('/public/demo/data/counseling-demo.csv');
    const { train, validation, stats } = await prepareDataset(readRows(res.body!, 'counseling-demo.csv'), { preset: 'counseling', tokenizer: tok, maxLength: 256, seed: 0 });
    expect(stats.rows).toBe(80);
    expect([train.length, validation.length]).toEqual([72, 8]);
    const batch = makeBatch(train.slice(0, 3), tok.padTokenId);
    expect(batch.inputIds.length).toBe(3 * batch.seq);
  });

  it('reads the nested Parquet fixture from a Blob and reports a broken JSONL line', async () => {
    const blob = await (await fetch('/tests/fixtures/data/nested.parquet')).blob();
    const rows = await collectRows(readRows(blob, 'nested.parquet'));
    expect(rows[0]).toMatchObject({ metadata: { library: 'Pandas' } });
    const text = Array.from({ length: 8 }, (_, i) => (i === 6 ? '{"a": }' : `{"a": ${i}}`)).join('\n');
    const err = await collectRows(readRows(new Blob([text]), 'b.jsonl')).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'DatasetError', file: 'b.jsonl', line: 7, column: 7 });
  });
});
