import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { tokenizerFromFiles } from '../../workers/tokenizer';
import { TextStream } from '../../workers/tokenizer/text-stream';

const DIR = 'public/demo/tokenizer';
const demo = () => tokenizerFromFiles(readFileSync(`${DIR}/tokenizer.json`, 'utf8'), readFileSync(`${DIR}/tokenizer_config.json`, 'utf8'));

describe('TextStream', () => {
  it('streams characters split over several byte tokens without ever showing a broken one', () => {
    const tok = demo();
    const text = 'I’m “fine” — naïve café 😀 中文 <|endoftext|>';
    const ids = tok.encode(text);
    // The demo tokenizer spells these characters out byte by byte: the test needs that.
    expect(ids.length).toBeGreaterThan(text.length / 2);
    const stream = new TextStream(tok);
    let last = '';
    for (const id of ids) {
      const reply = stream.push(id);
      expect(reply).not.toContain('\uFFFD');
      expect(reply.startsWith(last) || last.startsWith(reply)).toBe(true);
      expect(text.startsWith(reply)).toBe(true);
      last = reply;
    }
    expect(stream.finish()).toBe(text);
    expect(last).toBe(text);
  });

  it('shows a dangling partial character at the end, as the decoder does', () => {
    const tok = demo();
    const ids = tok.encode('ok 😀');
    const stream = new TextStream(tok);
    for (const id of ids.slice(0, -1)) stream.push(id);
    expect(stream.finish()).toBe(tok.decode(ids.slice(0, -1)));
    expect(stream.finish()).toContain('\uFFFD');
  });
});
