import { describe, expect, it } from 'vitest';
import { readFileSync, mkdtempSync } from 'node:fs';
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

  it('the demo model on disk matches its preset config and stays small', () => {
    const onDisk = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
    expect(onDisk).toEqual(PRESETS.demo.config);
    expect(onDisk.vocab_size).toBe(1024);
    const bytes = readFileSync(join(DEMO_DIR, 'model.safetensors'));
    expect(bytes.byteLength).toBeLessThan(2 * 1024 * 1024);
    const file = new SafetensorsFile(new Uint8Array(bytes), 'model.safetensors');
    const h = onDisk.hidden_size;
    const ff = onDisk.intermediate_size;
    expect(file.info('model.embed_tokens.weight').shape).toEqual([1024, h]);
    expect(file.info('lm_head.weight').shape).toEqual([1024, h]);
    expect(file.info('model.layers.1.mlp.fc1.weight').shape).toEqual([ff, h]);
    expect(file.info('model.layers.1.mlp.fc2.weight').shape).toEqual([h, ff]);
    expect(file.names.length).toBe(4 + onDisk.num_hidden_layers * 14 + 1);
    for (const name of file.names) {
      expect(file.info(name).dtype).toBe('F16');
      const values = file.f32(name);
      expect(values.every(Number.isFinite)).toBe(true);
    }
  });

  it('the generator reproduces the shipped files byte for byte', () => {
    const out = mkdtempSync(join(tmpdir(), 'demo-model-'));
    execFileSync(process.execPath, ['scripts/make-demo-model.mjs', '--out', out], { stdio: 'pipe' });
    expect(Buffer.compare(readFileSync(join(out, 'model.safetensors')), readFileSync(join(DEMO_DIR, 'model.safetensors')))).toBe(0);
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toBe(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
  });
});
