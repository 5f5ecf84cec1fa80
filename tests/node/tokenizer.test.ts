import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { tokenizerFromFiles, tokenizerFromLocalModels } from '../../workers/tokenizer';

const DIR = 'public/demo/tokenizer';
const demo = () => tokenizerFromFiles(readFileSync(`${DIR}/tokenizer.json`, 'utf8'), readFileSync(`${DIR}/tokenizer_config.json`, 'utf8'));

describe('demo tokenizer', () => {
  it('has 2048 ids with <|endoftext|> as EOS and pad', () => {
    const tok = demo();
    expect(tok.vocabSize).toBe(2048);
    expect(tok.eosToken).toBe('<|endoftext|>');
    expect(tok.eosTokenId).toBe(2047);
    expect(tok.padTokenId).toBe(2047);
    const json = JSON.parse(readFileSync(`${DIR}/tokenizer.json`, 'utf8'));
    const ids = Object.values(json.model.vocab as Record<string, number>).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 2047 }, (_, i) => i));
  });

  it('encodes as the demo model was pretrained (the ids scripts/make-demo-model.py recorded)', () => {
    const { sample } = JSON.parse(readFileSync('scripts/demo-model-corpus.json', 'utf8')) as { sample: { text: string; ids: number[] } };
    expect(sample.ids.length).toBeGreaterThan(300);
    expect(demo().encode(sample.text)).toEqual(sample.ids);
  });

  it('round-trips the demo data and odd text exactly, and compresses the demo data', () => {
    const tok = demo();
    const texts = [
      ...readFileSync('public/demo/data/ds1000-demo.jsonl', 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).prompt as string),
      readFileSync('public/demo/data/counseling-demo.csv', 'utf8'),
      "  tabs\tand  double  spaces\r\n, ünïcödé, 😀, 中文, <|endoftext|> inside",
    ];
    let chars = 0;
    let tokens = 0;
    for (const text of texts) {
      const ids = tok.encode(text);
      expect(tok.decode(ids)).toBe(text);
      expect(Math.max(...ids)).toBeLessThan(2048);
      chars += text.length;
      tokens += ids.length;
    }
    // 2.37 characters a token: the merges were learned mostly from Python's standard library.
    expect(chars / tokens).toBeGreaterThan(2.2);
    // The special token in text is one id, not its characters.
    expect(tok.encode('a<|endoftext|>')).toContain(2047);
  });

  it('loads through AutoTokenizer from local files with the same ids', async () => {
    const viaAuto = await tokenizerFromLocalModels('tokenizer', resolve('public/demo') + '/');
    const text = 'df.groupby("team")["points"].mean()\n### Response:\nThank you.';
    expect(viaAuto.encode(text)).toEqual(demo().encode(text));
    expect(viaAuto.eosTokenId).toBe(2047);
  });

  it('renders the chat template', () => {
    const text = demo().applyChatTemplate([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }], { addGenerationPrompt: false });
    expect(text).toBe('<|user|>\nhi\n<|assistant|>\nhello\n');
    expect(demo().applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true })).toBe('<|user|>\nhi\n<|assistant|>\n');
  });
});
