/**
 * The text of a token stream as it grows, for streaming chat. Byte-level tokenizers split one
 * character into several tokens (’ is three bytes, an emoji four): a prefix that ends inside a
 * character decodes to U+FFFD, which the next token turns into the character. The reply shown
 * while streaming holds such a tail back, and is always the decoding of the tokens so far, so
 * what the user sees at the end is exactly the decoded whole.
 */
import type { TextTokenizer } from './index';

const REPLACEMENT = '\uFFFD';
/** A UTF-8 character has at most 4 bytes: at most 3 of them can be waiting for the rest. */
const MAX_PENDING = 3;

export class TextStream {
  private readonly ids: number[] = [];

  constructor(private readonly tokenizer: Pick<TextTokenizer, 'decode'>) {}

  /** Adds a token; returns the reply so far, without a character still being spelled out. */
  push(token: number): string {
    this.ids.push(token);
    const text = this.tokenizer.decode(this.ids);
    let end = text.length;
    while (end > 0 && text[end - 1] === REPLACEMENT && text.length - end < MAX_PENDING) end--;
    return text.slice(0, end);
  }

  /** The whole reply at the end of the stream (a dangling partial character shows as U+FFFD). */
  finish(): string {
    return this.tokenizer.decode(this.ids);
  }
}
