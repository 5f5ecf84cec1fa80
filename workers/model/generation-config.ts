/**
 * Which token ids end generation. Chat models stop on more than one: Llama 3 on <|eot_id|> and
 * <|eom_id|> as well as <|end_of_text|>, Qwen2.5 on <|im_end|> and <|endoftext|>. transformers
 * takes them from generation_config.json's `eos_token_id` (one id or a list); a model without
 * that file falls back to config.json's, and the tokenizer's own end token always counts.
 */

/** The ids of an `eos_token_id` value (a number or a list of numbers); anything else is none. */
function idsOf(value: unknown): number[] {
  const list = Array.isArray(value) ? value : [value];
  return list.filter((v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0);
}

function field(json: unknown, key: string): unknown {
  return json && typeof json === 'object' && !Array.isArray(json) && Object.hasOwn(json, key) ? (json as Record<string, unknown>)[key] : undefined;
}

export interface EndTokenSources {
  /** generation_config.json as parsed, when the model has one. */
  generationConfig?: unknown;
  /** config.json as parsed. */
  config?: unknown;
  /** The tokenizer's end-of-sequence id. */
  tokenizerEos?: number | null;
}

/** Every id that ends generation, in order of first mention, without repeats. */
export function endTokenIds(s: EndTokenSources): number[] {
  const fromGeneration = idsOf(field(s.generationConfig, 'eos_token_id'));
  const declared = fromGeneration.length ? fromGeneration : idsOf(field(s.config, 'eos_token_id'));
  const ids = [...declared, ...(typeof s.tokenizerEos === 'number' ? [s.tokenizerEos] : [])];
  return [...new Set(ids)];
}
