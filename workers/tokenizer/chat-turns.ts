/**
 * Where the assistant turns lie in a conversation rendered by a chat template, and which token
 * ends a turn. Templates carry no markers of their own (transformers' `{% generation %}` is
 * absent from the templates models ship), so each turn is found by rendering prefixes of the
 * conversation: up to the turn with the generation prompt (where the reply starts) and through
 * the turn (where it ends). The learned span runs from the reply's start through the first
 * special token after the reply's text: `<|im_end|>` (ChatML: Qwen2.5, SmolLM2), `<|eot_id|>`
 * (Llama 3), `<|end|>` (Phi-3), `</s>` (Llama 2, Zephyr). What follows it (a newline, the next
 * header) is the template's layout, not the model's answer.
 */
import { ChatTemplateError } from './chat-template';
import { endTokenIds, type EndTokenSources } from '../model/generation-config';
import type { ChatMessage, TextTokenizer } from './index';

export interface AssistantSpan {
  /** Index of the assistant message in the conversation. */
  message: number;
  /** Where the reply starts in the rendered text (after the generation prompt). */
  start: number;
  /** End of the learned part: just past the end-of-turn token, or `turnEnd` when none follows the reply. */
  learnedEnd: number;
  /** Where the turn ends in the rendered text (the next message's text starts here). */
  turnEnd: number;
  /** The end-of-turn token that closes the reply, or null when the template writes none. */
  endOfTurn: string | null;
}

export interface RenderedConversation {
  text: string;
  spans: AssistantSpan[];
}

/** Length of the common start of two sequences (strings or id lists). */
export function commonPrefixLength(a: ArrayLike<unknown>, b: ArrayLike<unknown>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Where the end-of-turn token of one turn's text ends: the first special token after the
 * reply's own text (whitespace between them allowed), or -1 when there is none.
 */
function endOfTurnIn(turn: string, content: string, specials: readonly string[]): { end: number; token: string } | null {
  const byLength = [...specials].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  const body = content.trim();
  const found = body ? turn.indexOf(body) : -1;
  let at: number;
  if (found >= 0) {
    at = found + body.length;
    while (at < turn.length && /\s/.test(turn[at])) at++;
  } else {
    // The template rewrote the reply: the first special token of the turn closes it.
    at = Math.min(...byLength.map((s) => turn.indexOf(s)).filter((i) => i >= 0), turn.length);
  }
  const token = byLength.find((s) => turn.startsWith(s, at));
  return token ? { end: at + token.length, token } : null;
}

/**
 * `messages` rendered with the tokenizer's chat template and the span of every assistant turn.
 * A template whose renderings of a prefix are not the start of the whole text (it rewrites
 * earlier turns when later ones come) is refused: its turns cannot be located.
 */
export function renderConversation(messages: readonly ChatMessage[], tokenizer: TextTokenizer): RenderedConversation {
  const text = tokenizer.applyChatTemplate([...messages]);
  const spans: AssistantSpan[] = [];
  let at = 0;
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    if (i === 0) throw new ChatTemplateError('message 1 is an assistant turn; a conversation starts with a system or user message');
    const before = tokenizer.applyChatTemplate(messages.slice(0, i), { addGenerationPrompt: true });
    if (!text.startsWith(before) || before.length < at) {
      throw new ChatTemplateError(
        `the chat template is not prefix-stable: messages 1-${i} rendered with the generation prompt are not the start of the whole conversation, so assistant message ${i + 1} cannot be located`,
      );
    }
    const through = tokenizer.applyChatTemplate(messages.slice(0, i + 1));
    const turnEnd = Math.min(commonPrefixLength(through, text), through.length);
    if (turnEnd <= before.length) throw new ChatTemplateError(`the chat template renders assistant message ${i + 1} as nothing, or not where the generation prompt ends`);
    const turn = text.slice(before.length, turnEnd);
    const close = endOfTurnIn(turn, messages[i].content, tokenizer.specialTokens);
    spans.push({
      message: i,
      start: before.length,
      learnedEnd: close ? before.length + close.end : turnEnd,
      turnEnd,
      endOfTurn: close?.token ?? null,
    });
    at = turnEnd;
  }
  return { text, spans };
}

/** A conversation every template renders: one user turn and one reply. */
const PROBE: ChatMessage[] = [
  { role: 'user', content: 'Hi.' },
  { role: 'assistant', content: 'Hello.' },
];

/** The token the chat template closes an assistant turn with (`<|im_end|>`, `<|eot_id|>`, `<|end|>`), or null. */
export function endOfTurnToken(tokenizer: TextTokenizer): string | null {
  if (!tokenizer.hasChatTemplate) return null;
  return renderConversation(PROBE, tokenizer).spans[0]?.endOfTurn ?? null;
}

/**
 * Every id that should end a chat model's reply: the chat template's end-of-turn token and the
 * ids generation_config.json (or config.json) lists, with the tokenizer's EOS. A model tuned on
 * chat data ends its turns with the template's token, whatever the configuration lists.
 */
export function chatStopTokenIds(tokenizer: TextTokenizer, sources: Omit<EndTokenSources, 'tokenizerEos'> = {}): number[] {
  const ids = endTokenIds({ ...sources, tokenizerEos: tokenizer.eosTokenId });
  const token = endOfTurnToken(tokenizer);
  if (token !== null) {
    const encoded = tokenizer.encode(token);
    if (encoded.length !== 1) throw new ChatTemplateError(`the end-of-turn token ${token} is not one token of the vocabulary (${encoded.length} ids)`);
    ids.push(encoded[0]);
  }
  return [...new Set(ids)];
}

/**
 * The ids to generate from for one user message: the chat template's rendering with the
 * generation prompt (a model tuned on chat data answers in that format), or the text as it is
 * for a tokenizer without a template of its own.
 */
export function chatPromptIds(tokenizer: TextTokenizer, prompt: string, system?: string): number[] {
  if (!tokenizer.hasChatTemplate) return tokenizer.encode(prompt);
  const messages: ChatMessage[] = [...(system ? [{ role: 'system', content: system }] : []), { role: 'user', content: prompt }];
  return tokenizer.encode(tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true }));
}
