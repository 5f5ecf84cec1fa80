/**
 * The chat templates Qwen2.5, Llama 3.2, Phi-3 and SmolLM2 ship, rendered and masked as
 * training data: the text equals what transformers renders (tests/fixtures/chat-templates/
 * expected.json, made by scripts/make-chat-template-expectations.py with transformers 4.44.0),
 * the loss covers exactly each assistant reply and the end-of-turn token after it, and that
 * token is one id that generation stops on.
 *
 * Token ids come from a small byte-level BPE tokenizer (tests/fixtures/tokenizer-bpe-1024) with
 * each family's special tokens added: the models' own tokenizers are not available offline, so ids
 * are checked for what does not depend on the vocabulary (special tokens as single ids, one
 * BOS, labels on exactly the reply and its end-of-turn id). Where the reply starts still depends
 * on the merges a little: a vocabulary that joins the "\n\n" ending Llama 3's header into one
 * token, unlike the same characters before the reply's first word, starts the labels at those
 * newlines. The fixture stays put so that such a change is a decision, not a side effect.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import { tokenizerFromJson, type TextTokenizer } from '../../workers/tokenizer';
import { chatPromptIds, chatStopTokenIds, endOfTurnToken, renderConversation } from '../../workers/tokenizer/chat-turns';
import { chatSegments, IGNORE_INDEX, prepareDataset, tokenizeChat } from '../../workers/data';
import { DatasetError } from '../../workers/data/errors';
import { parseMapping } from '../../workers/cli/commands/data-check';

const FIXTURES = 'tests/fixtures/chat-templates';
const DEMO = 'tests/fixtures/tokenizer-bpe-1024';

interface Expected {
  transformers: string;
  conversation: { role: string; content: string }[];
  templates: Record<string, { specialTokens: Record<string, string>; full: string; prefixes: { messages: number; text: string; withGenerationPrompt: string }[] }>;
}
const expected = JSON.parse(readFileSync(`${FIXTURES}/expected.json`, 'utf8')) as Expected;
const demoJson = JSON.parse(readFileSync(`${DEMO}/tokenizer.json`, 'utf8')) as { added_tokens: { id: number; content: string }[]; model: { vocab: Record<string, number> } };
const demoConfig = JSON.parse(readFileSync(`${DEMO}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;

interface Family {
  /** Fixture name (tests/fixtures/chat-templates/<name>.jinja). */
  name: string;
  /** The special tokens the model's tokenizer.json adds (beside the demo's <|endoftext|>). */
  added: string[];
  endOfTurn: string;
  /** The BOS the template writes itself (encoding adds none: it must appear exactly once). */
  bos: string | null;
  /** A BOS token the template does not write: encoding must not add it either (as transformers' apply_chat_template). */
  unwrittenBos?: string;
  /** What the model's generation_config.json lists as eos_token_id, by token text. */
  generationEos: string[];
}

const FAMILIES: Family[] = [
  { name: 'qwen2.5', added: ['<|im_start|>', '<|im_end|>'], endOfTurn: '<|im_end|>', bos: null, generationEos: ['<|im_end|>', '<|endoftext|>'] },
  {
    name: 'llama3',
    added: ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eom_id|>', '<|eot_id|>'],
    endOfTurn: '<|eot_id|>',
    bos: '<|begin_of_text|>',
    generationEos: ['<|end_of_text|>', '<|eom_id|>', '<|eot_id|>'],
  },
  // Phi-3's generation_config.json lists <|endoftext|>, <|assistant|> and <|end|>; here only the EOS, to show the template's token is added.
  { name: 'phi3', added: ['<s>', '<unk>', '<|system|>', '<|user|>', '<|assistant|>', '<|end|>'], endOfTurn: '<|end|>', bos: null, unwrittenBos: '<s>', generationEos: ['<|endoftext|>'] },
  { name: 'smollm2', added: ['<|im_start|>', '<|im_end|>'], endOfTurn: '<|im_end|>', bos: null, generationEos: ['<|im_end|>'] },
];

/** The demo tokenizer with a family's special tokens, special-token settings and chat template. */
function familyTokenizer(f: Family, template = readFileSync(`${FIXTURES}/${f.name}.jinja`, 'utf8')): TextTokenizer {
  const json = structuredClone(demoJson);
  let next = Math.max(...json.added_tokens.map((t) => t.id), ...Object.values(json.model.vocab)) + 1;
  for (const content of f.added) json.added_tokens.push({ id: next++, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true } as never);
  const config: Record<string, unknown> = { ...demoConfig, chat_template: template };
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) delete config[key];
  Object.assign(config, expected.templates[f.name].specialTokens);
  return tokenizerFromJson(json, config);
}

/** The runs of learned tokens of an example, decoded. */
function learnedRuns(tok: TextTokenizer, labels: Int32Array): string[] {
  const runs: number[][] = [];
  let open = false;
  for (const l of labels) {
    if (l === IGNORE_INDEX) open = false;
    else {
      if (!open) runs.push([]);
      runs[runs.length - 1].push(l);
      open = true;
    }
  }
  return runs.map((r) => tok.decode(r));
}

const CONVERSATION = expected.conversation;
const REPLIES = CONVERSATION.filter((m) => m.role === 'assistant').map((m) => m.content);

// transformers 4.44 defines no strftime_now, so Llama 3.2's template writes its fallback date
// "26 Jul 2024"; on that day our strftime_now (as current transformers') writes the same.
beforeAll(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(new Date(2024, 6, 26, 12, 0, 0));
});
afterAll(() => {
  vi.useRealTimers();
});

describe('chat templates of the Llama, Qwen2 and Phi-3 families', () => {
  it('the expectations come from transformers 4.44.0', () => {
    expect(expected.transformers).toBe('4.44.0');
    expect(Object.keys(expected.templates).sort()).toEqual(FAMILIES.map((f) => f.name).sort());
  });

  describe.each(FAMILIES)('$name', (f) => {
    const tok = familyTokenizer(f);
    const want = expected.templates[f.name];
    const idOf = (text: string) => {
      const ids = tok.encode(text);
      expect(ids, `${text} is one token`).toHaveLength(1);
      return ids[0];
    };

    it('renders every prefix of the conversation as transformers does, with and without the generation prompt', () => {
      expect(tok.applyChatTemplate(CONVERSATION)).toBe(want.full);
      for (const p of want.prefixes) {
        expect(tok.applyChatTemplate(CONVERSATION.slice(0, p.messages))).toBe(p.text);
        expect(tok.applyChatTemplate(CONVERSATION.slice(0, p.messages), { addGenerationPrompt: true })).toBe(p.withGenerationPrompt);
      }
    });

    it('learns exactly each reply and its end-of-turn token, and masks the rest', () => {
      const segments = chatSegments(CONVERSATION, tok);
      expect(segments.map((s) => s.text).join('')).toBe(want.full);
      expect(segments.filter((s) => s.learn).map((s) => s.text)).toEqual(REPLIES.map((r) => r + f.endOfTurn));
      // Independently: the transformers text with each `reply + end-of-turn` cut out leaves the masked parts.
      let rest = want.full;
      const masked: string[] = [];
      for (const r of REPLIES) {
        const at = rest.indexOf(r + f.endOfTurn);
        expect(at).toBeGreaterThan(0);
        masked.push(rest.slice(0, at));
        rest = rest.slice(at + r.length + f.endOfTurn.length);
      }
      if (rest) masked.push(rest);
      expect(segments.filter((s) => !s.learn).map((s) => s.text)).toEqual(masked);
      expect(endOfTurnToken(tok)).toBe(f.endOfTurn);
    });

    it('tokenizes the rendered text with special tokens as single ids, one BOS at most, labels on the replies', async () => {
      const { train, stats } = await prepareDataset([{ messages: CONVERSATION }], { mapping: { kind: 'messages', messages: 'messages' }, tokenizer: tok, maxLength: 512, validationFraction: 0 });
      const e = train[0];
      expect(tok.decode(e.inputIds)).toBe(want.full);
      for (const s of f.added.filter((t) => want.full.includes(t))) {
        const count = want.full.split(s).length - 1;
        expect([...e.inputIds].filter((id) => id === idOf(s)), s).toHaveLength(count);
      }
      if (f.bos) {
        expect(e.inputIds[0]).toBe(idOf(f.bos));
        expect([...e.inputIds].filter((id) => id === idOf(f.bos!))).toHaveLength(1);
      }
      if (f.unwrittenBos) expect([...e.inputIds]).not.toContain(idOf(f.unwrittenBos));
      expect(learnedRuns(tok, e.labels)).toEqual(REPLIES.map((r) => r + f.endOfTurn));
      // Every learned run ends on the end-of-turn id, and nothing is appended after the template's text.
      const eot = idOf(f.endOfTurn);
      e.labels.forEach((l, i) => {
        if (l !== IGNORE_INDEX && (i + 1 === e.labels.length || e.labels[i + 1] === IGNORE_INDEX)) expect(l).toBe(eot);
      });
      expect(stats.tokens.labelTokens).toBe(REPLIES.reduce((n, r) => n + tok.encode(r).length + 1, 0));
      expect(stats.preview?.marked).toBe(masked(want.full, REPLIES.map((r) => r + f.endOfTurn)));
      expect(stats.preview?.parts.map((p) => p.text).join('')).toBe(want.full);
    });

    it('a prompt/response row becomes a system, user and assistant turn', async () => {
      const mapping = { kind: 'prompt-response' as const, prompt: 'q', response: 'a', system: 's' };
      const { train } = await prepareDataset([{ s: CONVERSATION[0].content, q: CONVERSATION[1].content, a: CONVERSATION[2].content }], { mapping, tokenizer: tok, maxLength: 512, validationFraction: 0 });
      expect(tok.decode(train[0].inputIds)).toBe(want.prefixes[2].text);
      expect(learnedRuns(tok, train[0].labels)).toEqual([REPLIES[0] + f.endOfTurn]);
    });

    it('generation stops on the end-of-turn token and on what generation_config.json lists', () => {
      const listed = f.generationEos.map(idOf);
      const stops = chatStopTokenIds(tok, { generationConfig: { eos_token_id: listed } });
      expect(stops).toContain(idOf(f.endOfTurn));
      for (const id of listed) expect(stops).toContain(id);
      expect(stops).toContain(tok.eosTokenId);
      expect(new Set(stops).size).toBe(stops.length);
      expect(tok.decode(chatPromptIds(tok, CONVERSATION[1].content, CONVERSATION[0].content))).toBe(want.prefixes[1].withGenerationPrompt);
    });
  });
});

/** `text` with everything but the learned parts (in order) wrapped in ⟦⟧. */
function masked(text: string, learned: string[]): string {
  let out = '';
  let rest = text;
  for (const l of learned) {
    const at = rest.indexOf(l);
    if (at > 0) out += `⟦${rest.slice(0, at)}⟧`;
    out += l;
    rest = rest.slice(at + l.length);
  }
  return rest ? `${out}⟦${rest}⟧` : out;
}

describe('templates whose turns cannot be located', () => {
  const base = FAMILIES[0];
  const withTemplate = (template: string) => familyTokenizer(base, template);

  it('a template that rewrites earlier turns (not prefix-stable) is refused naming the file and row', async () => {
    // Numbers the turns from the end: adding a turn changes every earlier one.
    const tok = withTemplate("{% for m in messages %}<|im_start|>{{ messages|length - loop.index0 }} {{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
    const rows = [{ messages: CONVERSATION.slice(1, 3) }, { messages: CONVERSATION }];
    await expect(prepareDataset(rows, { mapping: { kind: 'messages', messages: 'messages' }, tokenizer: tok, maxLength: 512, file: 'chats.jsonl' })).rejects.toThrow(DatasetError);
    await expect(prepareDataset(rows, { mapping: { kind: 'messages', messages: 'messages' }, tokenizer: tok, maxLength: 512, file: 'chats.jsonl' })).rejects.toThrow(
      /^chats\.jsonl: row 1: the chat template is not prefix-stable: messages 1-1 rendered with the generation prompt are not the start of the whole conversation, so assistant message 2 cannot be located/,
    );
  });

  it('a conversation that opens with the assistant is refused', () => {
    expect(() => renderConversation([{ role: 'assistant', content: 'hi' }], familyTokenizer(base))).toThrow('message 1 is an assistant turn');
  });
});

describe('chat rows are tokenized as one text', () => {
  it('a token that straddles a segment boundary goes to the later segment, and ids equal those of the whole text', () => {
    const tok = familyTokenizer(FAMILIES[0]);
    const text = 'hello wonderful world again';
    const whole = tok.encode(text);
    // Cut the text inside the first token longer than two characters.
    const pieces = whole.map((id) => tok.decode([id]));
    const k = pieces.findIndex((p) => p.length > 2);
    expect(k).toBeGreaterThan(0);
    const cut = pieces.slice(0, k).join('').length + 1;
    const { ids, labels } = tokenizeChat({ segments: [{ text: text.slice(0, cut), learn: false }, { text: text.slice(cut), learn: true }], chat: true, closed: true }, tok);
    expect(ids).toEqual(whole);
    expect(labels.findIndex((l) => l !== IGNORE_INDEX)).toBe(k);
    expect(labels.slice(k)).toEqual(whole.slice(k));
  });
});

describe('the CLI mapping', () => {
  it('--map takes an optional system column beside prompt and response', () => {
    expect(parseMapping('prompt=q,response=a,system=s', 'x.jsonl')).toEqual({ kind: 'prompt-response', prompt: 'q', response: 'a', system: 's' });
    expect(parseMapping('prompt=q,response=a', 'x.jsonl')).toEqual({ kind: 'prompt-response', prompt: 'q', response: 'a' });
    expect(() => parseMapping('prompt=q,system=s', 'x.jsonl')).toThrow('--map takes prompt=COL,response=COL[,system=COL]');
  });
});
