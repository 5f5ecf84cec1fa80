import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { IGNORE_INDEX, makeBatch, prepareDataset, prepareDatasetResult, readRows, splitIndices, type Row } from '../../workers/data';
import { tokenizerFromFiles, type TextTokenizer } from '../../workers/tokenizer';

const DIR = 'public/demo/tokenizer';
const tok: TextTokenizer = tokenizerFromFiles(readFileSync(`${DIR}/tokenizer.json`, 'utf8'), readFileSync(`${DIR}/tokenizer_config.json`, 'utf8'));
const DS = 'public/demo/data/ds1000-demo.jsonl';
const COUNSEL = 'public/demo/data/counseling-demo.csv';
const demoRows = (path: string) => readRows(new Blob([readFileSync(path)]), path.split('/').pop()!);

/** The learned part of an example, as text. */
const learnedText = (labels: Int32Array) => tok.decode([...labels].filter((l) => l !== IGNORE_INDEX));

describe('prepareDataset', () => {
  it('DS-1000 preset: prompt masked, code answer and EOS learned', async () => {
    const { train, validation, stats } = await prepareDataset(demoRows(DS), { preset: 'ds1000', tokenizer: tok, maxLength: 512, seed: 1, file: 'ds1000-demo.jsonl' });
    expect(stats.rows).toBe(84);
    expect(train.length + validation.length).toBe(84);
    expect(validation.length).toBe(8);
    expect(stats.columns).toEqual(['prompt', 'reference_code', 'metadata.problem_id', 'metadata.library', 'metadata.perturbation_type', 'metadata.library_problem_id']);
    const rows: Row[] = readFileSync(DS, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const { train: trainIdx } = splitIndices(84, 0.1, 1);
    train.forEach((e, k) => {
      const row = rows[trainIdx[k]] as { prompt: string; reference_code: string; metadata: { library: string } };
      expect(e.inputIds.length).toBe(e.labels.length);
      expect(learnedText(e.labels)).toBe(`${row.reference_code}\n</code><|endoftext|>`);
      const firstLearned = e.labels.findIndex((l) => l !== IGNORE_INDEX);
      expect(tok.decode(e.inputIds.subarray(0, firstLearned))).toBe(`### Library: ${row.metadata.library}\n${row.prompt}`);
      expect(e.inputIds[e.inputIds.length - 1]).toBe(tok.eosTokenId);
      // Learned labels equal the input ids (the model shifts them).
      e.labels.forEach((l, i) => l !== IGNORE_INDEX && expect(l).toBe(e.inputIds[i]));
    });
    expect(stats.tokens.truncated).toBe(0);
    expect(stats.preview?.marked.startsWith('⟦### Library: ')).toBe(true);
    expect(stats.preview?.marked.endsWith('</code><|endoftext|>')).toBe(true);
  });

  it('counseling preset on the CSV demo, statistics match an independent count', async () => {
    const { stats } = await prepareDataset(demoRows(COUNSEL), { preset: 'counseling', tokenizer: tok, maxLength: 64, seed: 0 });
    const rows = [];
    for await (const r of demoRows(COUNSEL)) rows.push(r as { Context: string; Response: string });
    expect(stats.rows).toBe(80);
    const lengths = rows.map((r) => tok.encode(`### Context:\n${r.Context.trim()}\n### Response:\n`).length + tok.encode(r.Response.trim()).length + 1);
    const sorted = [...lengths].sort((a, b) => a - b);
    expect(stats.tokens.max).toBe(sorted[79]);
    expect(stats.tokens.min).toBe(sorted[0]);
    expect(stats.tokens.p95).toBe(sorted[Math.ceil(0.95 * 80) - 1]);
    expect(stats.tokens.mean).toBeCloseTo(lengths.reduce((a, b) => a + b) / 80, 10);
    expect(stats.tokens.truncated).toBe(lengths.filter((n) => n > 64).length);
    expect(stats.tokens.truncated).toBeGreaterThan(0);
    expect(stats.warnings[0]).toMatch(new RegExp(`^${stats.tokens.truncated} of 80 examples are longer than 64 tokens`));
    expect(stats.tokens.histogram.counts.reduce((a, b) => a + b)).toBe(80);
    const h = stats.tokens.histogram;
    lengths.forEach((n) => expect(h.edges[0] <= n && n < h.edges[h.edges.length - 1]).toBe(true));
  });

  it('truncates over-long rows to maxLength and counts those left with nothing to learn', async () => {
    const rows = [{ p: 'word '.repeat(200), r: 'ok' }, { p: 'short', r: 'fine' }];
    const { train, validation, stats } = await prepareDataset(rows, { mapping: { kind: 'prompt-response', prompt: 'p', response: 'r' }, tokenizer: tok, maxLength: 32, validationFraction: 0 });
    expect(validation).toHaveLength(0);
    expect(train[0].inputIds).toHaveLength(32);
    expect(stats.tokens.truncated).toBe(1);
    expect(stats.tokens.emptyAfterTruncation).toBe(1);
    expect(stats.warnings).toHaveLength(2);
    // The demo tokenizer has a chat template: the reply is its assistant turn, newline included.
    expect(learnedText(train[1].labels)).toBe('fine\n<|endoftext|>');
  });

  it('text mapping learns everything; messages mapping learns only assistant turns', async () => {
    const text = await prepareDataset([{ t: 'hello world' }], { mapping: { kind: 'text', text: 't' }, tokenizer: tok, maxLength: 64 });
    expect([...text.train[0].labels]).toEqual([...text.train[0].inputIds]);
    const conv = [{ role: 'system', content: 'be kind' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }, { role: 'user', content: 'bye' }, { role: 'assistant', content: 'see you' }];
    const chat = await prepareDataset([{ messages: conv }], { mapping: { kind: 'messages', messages: 'messages' }, tokenizer: tok, maxLength: 128 });
    const e = chat.train[0];
    expect(tok.decode(e.inputIds)).toBe('<|system|>\nbe kind\n<|user|>\nhi\n<|assistant|>\nhello\n<|user|>\nbye\n<|assistant|>\nsee you\n<|endoftext|>');
    expect(learnedText(e.labels)).toBe('hello\nsee you\n<|endoftext|>');
    expect(chat.stats.preview?.marked).toBe('⟦<|system|>\nbe kind\n<|user|>\nhi\n<|assistant|>\n⟧hello\n⟦<|user|>\nbye\n<|assistant|>\n⟧see you\n<|endoftext|>');
  });

  it('split is seeded: same seed same split, another seed another', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => ({ t: `row ${i}` }));
    const run = (seed: number) => prepareDataset(rows, { mapping: { kind: 'text', text: 't' }, tokenizer: tok, maxLength: 32, seed, validationFraction: 0.2 });
    const ids = (x: Awaited<ReturnType<typeof run>>) => x.validation.map((e) => tok.decode(e.inputIds)).join('|');
    const [a, b, c] = await Promise.all([run(7), run(7), run(8)]);
    expect(a.validation).toHaveLength(10);
    expect(a.train).toHaveLength(40);
    expect(ids(a)).toBe(ids(b));
    expect(ids(a)).not.toBe(ids(c));
    expect(splitIndices(1, 0.5, 0)).toEqual({ train: [0], validation: [] });
  });

  it('packing fills sequences up to maxLength and keeps every token and label', async () => {
    const rows = Array.from({ length: 30 }, (_, i) => ({ p: `question ${i}`, r: `answer ${i}` }));
    const opts = { mapping: { kind: 'prompt-response' as const, prompt: 'p', response: 'r' }, tokenizer: tok, maxLength: 100, validationFraction: 0 };
    const plain = await prepareDataset(rows, opts);
    const packed = await prepareDataset(rows, { ...opts, packing: true });
    expect(packed.train.length).toBeLessThan(plain.train.length);
    expect(packed.train.every((e) => e.inputIds.length <= 100)).toBe(true);
    // The first packed sequence holds the leading examples that fit together, greedily.
    let fit = 0;
    let fitTokens = 0;
    while (fit < plain.train.length && fitTokens + plain.train[fit].inputIds.length <= 100) fitTokens += plain.train[fit++].inputIds.length;
    expect(fit).toBeGreaterThan(1);
    expect(packed.train[0].inputIds.length).toBe(fitTokens);
    const flat = (xs: typeof plain.train, k: 'inputIds' | 'labels') => xs.flatMap((e) => [...e[k]]);
    expect(flat(packed.train, 'inputIds')).toEqual(flat(plain.train, 'inputIds'));
    expect(flat(packed.train, 'labels')).toEqual(flat(plain.train, 'labels'));
  });

  it('a missing mapped column is an error naming the rows and their lines', async () => {
    const lines = ['{"Context":"a","Response":"b"}', '{"Context":"c"}', '{"Context":"d","Response":"e"}', '{"Context":"f","Response":null}'];
    const r = await prepareDatasetResult(readRows(new TextEncoder().encode(lines.join('\n')), 'c.jsonl'), { preset: 'counseling', tokenizer: tok, maxLength: 64, file: 'c.jsonl' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toMatchObject({ file: 'c.jsonl', line: 2, column: null });
    expect(r.error.message).toBe('c.jsonl: column "Response" is missing or null in 2 row(s): row 2 (line 2), 4 (line 4)');
    const none = await prepareDatasetResult([{ a: 1 }], { mapping: { kind: 'text', text: 'body' }, tokenizer: tok, maxLength: 8, file: 'x.csv' });
    expect(none.ok || none.error.message).toBe('x.csv: no column "body"; the columns are: a');
  });

  it('parse errors come back as values with file, line and column', async () => {
    const r = await prepareDatasetResult(readRows(new TextEncoder().encode('{"t":"a"}\n{"t":}\n'), 'x.jsonl'), { mapping: { kind: 'text', text: 't' }, tokenizer: tok, maxLength: 8, file: 'x.jsonl' });
    expect(r).toEqual({ ok: false, error: { file: 'x.jsonl', line: 2, column: 6, message: expect.stringMatching(/malformed JSON/) } });
  });
});

describe('makeBatch', () => {
  it('pads on the right with attention 0 and label -100', () => {
    const a = { inputIds: Int32Array.from([5, 6, 7]), labels: Int32Array.from([-100, 6, 7]) };
    const b = { inputIds: Int32Array.from([8]), labels: Int32Array.from([8]) };
    const batch = makeBatch([a, b], 1023);
    expect(batch.batch).toBe(2);
    expect(batch.seq).toBe(3);
    expect([...batch.inputIds]).toEqual([5, 6, 7, 8, 1023, 1023]);
    expect([...batch.attentionMask]).toEqual([1, 1, 1, 1, 0, 0]);
    expect([...batch.labels]).toEqual([-100, 6, 7, 8, -100, -100]);
    const fixed = makeBatch([a], 0, 2);
    expect([...fixed.inputIds]).toEqual([5, 6]);
  });
});
