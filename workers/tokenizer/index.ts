/**
 * The tokenizer as the data pipeline and the model see it: plain ids in, text out, the EOS and
 * pad ids, and the chat template. Backed by @huggingface/transformers, so any Hugging Face
 * tokenizer.json (byte-level BPE, SentencePiece, ...) behaves as it does in Python.
 */
import * as Transformers from '@huggingface/transformers';
import { AutoTokenizer, PreTrainedTokenizer, env } from '@huggingface/transformers';
import { ownEntry } from '../util/own';
import { BoundedTemplate } from './chat-template';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface TextTokenizer {
  /** Token ids of `text`, without special tokens added around it. */
  encode(text: string): number[];
  /** Text of `ids`, special tokens included. */
  decode(ids: ArrayLike<number>): string;
  readonly eosTokenId: number;
  /** The tokenizer's pad id, or EOS where it has none (phi, falcon). */
  readonly padTokenId: number;
  readonly eosToken: string;
  /** Size of the vocabulary, added tokens included. */
  readonly vocabSize: number;
  /** Whether the tokenizer brings a chat template (otherwise a plain default is used). */
  readonly hasChatTemplate: boolean;
  /** Texts of the special tokens (`<|im_end|>`, `<|eot_id|>`, ...): each encodes as one id. */
  readonly specialTokens: readonly string[];
  /** `messages` rendered as text with the chat template (bounded in time and size: ChatTemplateError past the limits). */
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
}

/**
 * Used for a `messages` column when the tokenizer has no chat template of its own: each turn
 * under a `### role:` heading.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '### ' + message['role'] + ':\\n' + message['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '### assistant:\\n' }}{% endif %}";

/** The special tokens transformers passes to a chat template. */
const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

class TransformersTokenizer implements TextTokenizer {
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly eosToken: string;
  readonly vocabSize: number;
  readonly hasChatTemplate: boolean;
  readonly specialTokens: readonly string[];
  /** Compiled on first use. */
  private template: BoundedTemplate | undefined;

  constructor(private readonly inner: PreTrainedTokenizer) {
    const eos = inner.eos_token_id;
    if (typeof eos !== 'number') throw new Error('the tokenizer defines no EOS token (eos_token in tokenizer_config.json)');
    this.eosTokenId = eos;
    this.eosToken = inner.eos_token;
    this.padTokenId = typeof inner.pad_token_id === 'number' ? inner.pad_token_id : eos;
    this.vocabSize = inner.get_vocab().size;
    this.hasChatTemplate = typeof inner.chat_template === 'string' || (inner.chat_template !== null && typeof inner.chat_template === 'object');
    this.specialTokens = [...inner.all_special_tokens];
  }

  encode(text: string): number[] {
    return this.inner.encode(text, { add_special_tokens: false });
  }

  decode(ids: ArrayLike<number>): string {
    return this.inner.decode(Array.from(ids), { skip_special_tokens: false });
  }

  /**
   * Rendered like transformers' apply_chat_template (the same template choice and variables),
   * but through BoundedTemplate, so a template from a hostile repository fails within about a
   * second naming itself instead of blocking the worker.
   */
  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    this.template ??= this.hasChatTemplate
      ? new BoundedTemplate(this.inner.get_chat_template({}), 'tokenizer_config.json: "chat_template"')
      : new BoundedTemplate(DEFAULT_CHAT_TEMPLATE, 'the default chat template');
    return this.template.render({
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
      tools: null,
      documents: null,
      ...this.specialTokenTexts(),
    });
  }

  /** bos_token, eos_token, … as tokenizer_config.json names them (strings or added-token objects). */
  private specialTokenTexts(): Record<string, string> {
    const config = (this.inner.config ?? {}) as Record<string, unknown>;
    const out: Record<string, string> = {};
    for (const key of SPECIAL_TOKEN_KEYS) {
      if (!Object.prototype.hasOwnProperty.call(config, key)) continue;
      const item = config[key];
      const text = typeof item === 'string' ? item : item && typeof item === 'object' ? (item as { content?: unknown }).content : undefined;
      if (typeof text === 'string' && text) out[key] = text;
    }
    return out;
  }
}

/** A tokenizer from the parsed contents of tokenizer.json and tokenizer_config.json. */
export function tokenizerFromJson(tokenizerJson: unknown, tokenizerConfig: unknown): TextTokenizer {
  return new TransformersTokenizer(new PreTrainedTokenizer(tokenizerJson, tokenizerConfig ?? {}));
}

/** A tokenizer from the bytes/text of its two files (as read from a folder, a drop or a URL). */
export function tokenizerFromFiles(tokenizerJsonText: string, tokenizerConfigText: string | null): TextTokenizer {
  return tokenizerFromJson(JSON.parse(tokenizerJsonText), tokenizerConfigText ? JSON.parse(tokenizerConfigText) : {});
}

/**
 * A hub repo's tokenizer from its two files already read (by a hub client that carries the
 * access token): the class `tokenizer_class` names (without "Fast"), as AutoTokenizer picks it,
 * or the base class for a name transformers.js does not know.
 */
export function tokenizerFromHubFiles(tokenizerJsonText: string, tokenizerConfigText: string | null): TextTokenizer {
  const json: unknown = JSON.parse(tokenizerJsonText);
  const config = (tokenizerConfigText ? JSON.parse(tokenizerConfigText) : {}) as { tokenizer_class?: unknown };
  const name = typeof config.tokenizer_class === 'string' ? config.tokenizer_class.replace(/Fast$/, '') : '';
  const named = ownEntry(Transformers as unknown as Record<string, unknown>, name);
  const cls = typeof named === 'function' && (named === PreTrainedTokenizer || named.prototype instanceof PreTrainedTokenizer) ? (named as typeof PreTrainedTokenizer) : PreTrainedTokenizer;
  return new TransformersTokenizer(new cls(json, config));
}

/** A tokenizer served over HTTP from a folder URL (e.g. the studio's `/demo/tokenizer/`). */
export async function tokenizerFromUrl(folderUrl: string, fetchFn: typeof fetch = fetch): Promise<TextTokenizer> {
  const base = folderUrl.endsWith('/') ? folderUrl : `${folderUrl}/`;
  const get = async (name: string, required: boolean) => {
    const res = await fetchFn(base + name);
    if (!res.ok) {
      if (required) throw new Error(`cannot load ${base}${name}: HTTP ${res.status}`);
      return null;
    }
    return res.text();
  };
  return tokenizerFromFiles((await get('tokenizer.json', true))!, await get('tokenizer_config.json', false));
}

/**
 * A tokenizer from the Hugging Face hub by model id (`microsoft/phi-1_5`), through
 * transformers' AutoTokenizer so the model's own tokenizer class and settings apply.
 */
export async function tokenizerFromHub(modelId: string, options: { revision?: string } = {}): Promise<TextTokenizer> {
  const saved = { remote: env.allowRemoteModels };
  env.allowRemoteModels = true;
  try {
    return new TransformersTokenizer(await AutoTokenizer.from_pretrained(modelId, { revision: options.revision }));
  } finally {
    env.allowRemoteModels = saved.remote;
  }
}

/**
 * A tokenizer from a folder under `localModelPath` through AutoTokenizer with remote loading
 * off (in Node a file-system path; in a page or worker a URL path).
 */
export async function tokenizerFromLocalModels(name: string, localModelPath: string): Promise<TextTokenizer> {
  const saved = { remote: env.allowRemoteModels, local: env.allowLocalModels, path: env.localModelPath };
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = localModelPath;
  try {
    return new TransformersTokenizer(await AutoTokenizer.from_pretrained(name));
  } finally {
    env.allowRemoteModels = saved.remote;
    env.allowLocalModels = saved.local;
    env.localModelPath = saved.path;
  }
}
