import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { PRESETS, getPreset } from '../../workers/load/presets';
import { parseModelConfig } from '../../workers/model/config';
import { allLinearNames } from '../../workers/model/architecture';

const DEMO_DIR = 'public/demo/model';

describe('presets', () => {
  it('phi-1_5 and falcon-7b carry the published architecture and the issue settings', () => {
    const phi = getPreset('phi-1_5');
    expect(phi.model).toEqual({ kind: 'hub', repo: 'microsoft/phi-1_5', revision: 'main' });
    expect(phi.config).toMatchObject({ model_type: 'phi', hidden_size: 2048, num_hidden_layers: 24, num_attention_heads: 32, vocab_size: 51200, intermediate_size: 8192, partial_rotary_factor: 0.5 });
    expect(phi.settings).toMatchObject({ rank: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'] });
    expect(phi.settings).toMatchObject({ learningRate: 2e-4, schedule: 'cosine', warmupRatio: 0.03, seqLength: 512, batchSize: 1, gradAccum: 4, epochs: 1 });
    expect(phi.template).toBe('ds1000');
    const falcon = getPreset('falcon-7b');
    expect(falcon.config).toMatchObject({ model_type: 'falcon', hidden_size: 4544, num_hidden_layers: 32, num_attention_heads: 71, multi_query: true, vocab_size: 65024, parallel_attn: true, bias: false });
    expect(falcon.settings.targetModules).toEqual(['query_key_value', 'dense', 'dense_h_to_4h', 'dense_4h_to_h']);
    expect({ ...falcon.settings, targetModules: [] }).toEqual({ ...phi.settings, targetModules: [] });
    expect(falcon.template).toBe('counseling');
  });

  it('the Llama, Qwen2 and Phi-3 presets: hub ids as published, every linear layer as target', () => {
    const repos: Record<string, [string, string]> = {
      'Qwen2.5-0.5B-Instruct': ['Qwen/Qwen2.5-0.5B-Instruct', 'qwen2'],
      'Qwen2.5-1.5B-Instruct': ['Qwen/Qwen2.5-1.5B-Instruct', 'qwen2'],
      'SmolLM2-360M-Instruct': ['HuggingFaceTB/SmolLM2-360M-Instruct', 'llama'],
      'TinyLlama-1.1B-Chat-v1.0': ['TinyLlama/TinyLlama-1.1B-Chat-v1.0', 'llama'],
      'Llama-3.2-1B-Instruct': ['meta-llama/Llama-3.2-1B-Instruct', 'llama'],
      'Phi-3-mini-4k-instruct': ['microsoft/Phi-3-mini-4k-instruct', 'phi3'],
    };
    for (const [name, [repo, arch]] of Object.entries(repos)) {
      const p = getPreset(name);
      expect(p.model).toEqual({ kind: 'hub', repo, revision: 'main' });
      expect(p.tokenizer).toEqual(p.model);
      const config = parseModelConfig(p.config);
      expect(config.arch).toBe(arch);
      expect(p.settings.targetModules).toEqual(allLinearNames(config));
      expect(p.settings).toMatchObject({ rank: 16, alpha: 32, seqLength: 512, batchSize: 1 });
    }
  });

  it('getPreset returns an editable copy', () => {
    const p = getPreset('phi-1_5');
    p.settings.rank = 4;
    p.config.hidden_size = 1;
    expect(PRESETS['phi-1_5'].settings.rank).toBe(16);
    expect(PRESETS['phi-1_5'].config.hidden_size).toBe(2048);
    expect(() => getPreset('gpt-5')).toThrow(/unknown preset "gpt-5"/);
  });

  it('the demo model on disk matches its preset config, its tokenizer, and stays small', () => {
    const onDisk = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
    expect(onDisk).toEqual(PRESETS.demo.config);
    const config = parseModelConfig(onDisk);
    expect(config).toMatchObject({ arch: 'llama', tiedLmHead: true, vocabSize: 2048 });
    // One id per tokenizer entry, EOS (the last id) the model's end token.
    const tokenizer = JSON.parse(readFileSync('public/demo/tokenizer/tokenizer.json', 'utf8'));
    expect(Object.keys(tokenizer.model.vocab).length + tokenizer.added_tokens.length).toBe(onDisk.vocab_size);
    expect(tokenizer.added_tokens[0]).toMatchObject({ id: onDisk.vocab_size - 1, content: '<|endoftext|>' });
    expect(onDisk.eos_token_id).toBe(onDisk.vocab_size - 1);
    const bytes = readFileSync(join(DEMO_DIR, 'model.safetensors'));
    expect(bytes.byteLength).toBeLessThan(10 * 1024 * 1024);
    const file = new SafetensorsFile(new Uint8Array(bytes), 'model.safetensors');
    const h = onDisk.hidden_size;
    const ff = onDisk.intermediate_size;
    expect(file.info('model.embed_tokens.weight').shape).toEqual([onDisk.vocab_size, h]);
    expect(file.names).not.toContain('lm_head.weight');
    expect(file.info('model.layers.3.mlp.gate_proj.weight').shape).toEqual([ff, h]);
    expect(file.info('model.layers.3.mlp.down_proj.weight').shape).toEqual([h, ff]);
    expect(file.info('model.layers.3.self_attn.o_proj.weight').shape).toEqual([h, h]);
    expect(file.names.length).toBe(2 + onDisk.num_hidden_layers * 9);
    let parameters = 0;
    for (const name of file.names) {
      expect(file.info(name).dtype).toBe('F16');
      const values = file.f32(name);
      expect(values.every(Number.isFinite)).toBe(true);
      parameters += values.length;
    }
    // Pretrained, not initialised: the norms' weights moved away from 1.
    const norm = file.f32('model.norm.weight');
    expect(norm.some((v) => Math.abs(v - 1) > 0.05)).toBe(true);
    const readme = readFileSync(join(DEMO_DIR, 'README.md'), 'utf8');
    expect(readme).toContain(`${parameters.toLocaleString('en-US')} parameters`);
  });

  it('the tokenizer trainer reproduces the shipped demo tokenizer from the listed corpus', (ctx) => {
    const listing = JSON.parse(readFileSync('scripts/demo-model-corpus.json', 'utf8')) as { sources: Record<string, string>; files: [string, string, string, string][] };
    const lines: string[] = [];
    for (const [source, path, split, sha256] of listing.files) {
      if (split !== 'train') continue;
      const full = join(listing.sources[source], path);
      const text = existsSync(full) ? readFileSync(full) : null;
      if (!text || createHash('sha256').update(text).digest('hex') !== sha256) {
        ctx.skip(`${full} is missing or differs from the one the demo was made from (another Python build, or no python3.11-doc): the corpus cannot be rebuilt here`);
        return;
      }
      lines.push(JSON.stringify({ text: text.toString('utf8') }));
    }
    const dir = mkdtempSync(join(tmpdir(), 'demo-tokenizer-'));
    writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
    execFileSync(process.execPath, ['scripts/make-demo-tokenizer.mjs', '--corpus', join(dir, 'train.jsonl'), '--vocab', '2048', '--out', join(dir, 'out')], { stdio: 'pipe' });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
      expect(readFileSync(join(dir, 'out', f), 'utf8'), f).toBe(readFileSync(join('public/demo/tokenizer', f), 'utf8'));
    }
  }, 120_000);
});
