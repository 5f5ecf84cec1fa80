import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ConfigError, parseModelConfig } from '../../workers/model/config';
import { checkConfigBounds, MAX_LAYERS } from '../../workers/model/config-bounds';
import { planMemory } from '../../workers/load/planner';
import { archFromConfig } from '../../workers/load/arch';
import { getPreset, PRESET_NAMES } from '../../workers/load/presets';

const phi = JSON.parse(readFileSync('tests/fixtures/hf-golden/tiny-phi/config.json', 'utf8')) as Record<string, unknown>;
const falcon = JSON.parse(readFileSync('tests/fixtures/hf-golden/tiny-falcon/config.json', 'utf8')) as Record<string, unknown>;

/** parseModelConfig then the bounds, as the loader and the planner run them. */
const check = (cfg: Record<string, unknown>) => checkConfigBounds(parseModelConfig(cfg, 'config.json'), 'config.json');

// Each hostile config and the key its refusal must name. Head counts keep head_dim legal, so
// the size itself is what gets refused.
const HOSTILE: [string, Record<string, unknown>, string][] = [
  ['hidden_size 1e9', { ...phi, hidden_size: 1e9, num_attention_heads: 1e9 / 64 }, 'hidden_size'],
  ['vocab_size 1e12', { ...phi, vocab_size: 1e12 }, 'vocab_size'],
  ['vocab_size 2e9 (an embedding of 2^37 elements)', { ...phi, vocab_size: 2e9 }, 'vocab_size'],
  ['num_hidden_layers 1e6', { ...phi, num_hidden_layers: 1e6 }, 'num_hidden_layers'],
  ['num_hidden_layers 1e12', { ...phi, num_hidden_layers: 1e12 }, 'num_hidden_layers'],
  ['intermediate_size 1e10', { ...phi, intermediate_size: 1e10 }, 'intermediate_size'],
  ['intermediate_size 1e9', { ...phi, intermediate_size: 1e9 }, 'intermediate_size'],
  ['max_position_embeddings 1e9', { ...phi, max_position_embeddings: 1e9 }, 'max_position_embeddings'],
  ['num_attention_heads 2^31', { ...phi, hidden_size: 2 ** 31, num_attention_heads: 2 ** 25 }, 'hidden_size'],
  ['falcon ffn_hidden_size 1e12', { ...falcon, ffn_hidden_size: 1e12 }, 'ffn_hidden_size'],
  ['falcon hidden_size 4e8', { ...falcon, hidden_size: 4e8, num_attention_heads: 4e8 / 64 }, 'hidden_size'],
];

describe('config sizes bounded before anything is allocated', () => {
  it('real configs pass: the fixtures and every preset', () => {
    check(phi);
    check(falcon);
    for (const name of PRESET_NAMES) check(getPreset(name).config as Record<string, unknown>);
    check({ ...phi, num_hidden_layers: MAX_LAYERS });
  });

  it.each(HOSTILE)('%s is refused naming its key', (_, cfg, key) => {
    const start = performance.now();
    let error: unknown;
    try {
      check(cfg);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(new RegExp(`^config\\.json: "${key}" = `));
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it.each(HOSTILE)('the planner refuses %s within a second, naming its key', async (_, cfg, key) => {
    const start = performance.now();
    await expect(planMemory({ config: cfg, seq: 64, batch: 1, rank: 8, targets: ['q_proj', 'v_proj', 'query_key_value'], checkpointing: true })).rejects.toThrow(
      new RegExp(`^config\\.json: "${key}" = `),
    );
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it.each(HOSTILE)('the loader refuses %s before listing the model', (_, cfg, key) => {
    expect(() => archFromConfig(cfg, 'org/repo/config.json')).toThrow(new RegExp(`^org/repo/config\\.json: "${key}" = `));
  });

  it('a size the parser already rejects keeps the parser\'s message', () => {
    // hidden_size 1e9 with the real head count gives a head_dim beyond the attention kernel.
    expect(() => check({ ...phi, hidden_size: 1e9 })).toThrow(/config\.json: "num_attention_heads"/);
  });
});
