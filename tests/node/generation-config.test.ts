import { describe, expect, it } from 'vitest';
import { endTokenIds } from '../../workers/model/generation-config';
import llama32 from '../../workers/load/configs/Llama-3.2-1B-Instruct.json';

describe('end tokens', () => {
  it("Llama 3.2 Instruct stops on every id of generation_config.json's list", () => {
    // generation_config.json of meta-llama/Llama-3.2-1B-Instruct.
    const generationConfig = { bos_token_id: 128000, do_sample: true, eos_token_id: [128001, 128008, 128009], temperature: 0.6, top_p: 0.9 };
    expect(endTokenIds({ generationConfig, config: llama32, tokenizerEos: 128009 })).toEqual([128001, 128008, 128009]);
  });

  it("Qwen2.5 Instruct: generation_config's <|im_end|> and <|endoftext|>, and the tokenizer's", () => {
    const generationConfig = { bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643 };
    expect(endTokenIds({ generationConfig, config: { eos_token_id: 151645 }, tokenizerEos: 151645 })).toEqual([151645, 151643]);
  });

  it('without generation_config.json: config.json, then the tokenizer', () => {
    expect(endTokenIds({ config: { eos_token_id: 2 }, tokenizerEos: 32000 })).toEqual([2, 32000]);
    expect(endTokenIds({ tokenizerEos: 50256 })).toEqual([50256]);
    // Values that are no ids are not ids.
    expect(endTokenIds({ generationConfig: { eos_token_id: ['x', -1, 1.5, null] }, config: { eos_token_id: 7 }, tokenizerEos: null })).toEqual([7]);
  });
});
