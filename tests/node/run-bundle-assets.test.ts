/**
 * The run bundle's text files (workers/export/run-bundle/assets.ts): continue.py and the accelerate
 * configurations arrive as the sources next to the module (?raw), the recipes and README are
 * written from run.json, and a run.json of another format is refused. The recipes' keys against
 * the tools' own configurations, and continue.py's numbers, are checked in tests/interop.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { bundleAssets } from '../../workers/export/run-bundle/assets';
import { toYaml } from '../../workers/export/run-bundle/recipes';
import type { RunJson } from '../../workers/export/run-bundle/run-json';
import { runSettings } from '../../workers/run/settings';

function run(over: Partial<RunJson> = {}): RunJson {
  return {
    format: 'qlora-studio-run',
    version: 1,
    studio_version: '0.1.0',
    exported_at: '2026-01-01T00:00:00.000Z',
    base: { id: 'microsoft/phi-1_5', revision: 'main', commit: null, config: { model_type: 'phi' } },
    quantization: { type: 'nf4', blocksize: 64, double_quant: true, nested_blocksize: 256, compute_dtype: 'float32' },
    settings: runSettings({ targetModules: ['q_proj', 'v_proj'] }),
    lora: { r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: ['q_proj', 'v_proj'] },
    optimizer: { name: 'adamw_torch', beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0, max_grad_norm: 1, step: 30 },
    schedule: { name: 'cosine', learning_rate: 2e-4, warmup_steps: 3, total_steps: 100, position: 30 },
    accumulation: 'token-weighted',
    step: 30,
    epoch: 0.3,
    seed: 42,
    intervals: { eval_every: 10, checkpoint_every: 10, sample_every: 20 },
    data: { template: 'ds1000', template_sha256: null, tokenizer_sha256: null, pad_token_id: 0, train_examples: 400, validation_examples: 40, seq_length: 512, dataset_sha256: null },
    log: { train: [], eval: [] },
    ...over,
  };
}

describe('run bundle assets', () => {
  it('every file, continue.py and the accelerate files as their sources', () => {
    const assets = bundleAssets(run());
    expect(assets.map((a) => a.path)).toEqual([
      'README.md', 'continue.py', 'accelerate/ddp.yaml', 'accelerate/fsdp.yaml',
      'recipes/trl-sft.yaml', 'recipes/llamafactory.yaml', 'recipes/dataset_info.json', 'recipes/axolotl.yaml',
    ]);
    const text = (p: string) => assets.find((a) => a.path === p)!.text;
    expect(text('continue.py')).toBe(readFileSync('workers/export/run-bundle/continue.py', 'utf8'));
    expect(text('accelerate/fsdp.yaml')).toBe(readFileSync('workers/export/run-bundle/accelerate/fsdp.yaml', 'utf8'));
    expect(text('accelerate/ddp.yaml')).toBe(readFileSync('workers/export/run-bundle/accelerate/ddp.yaml', 'utf8'));
    for (const a of assets) expect(a.text.endsWith('\n'), a.path).toBe(true);
  });

  it('the recipes carry the run: base, LoRA, schedule, seed, adapter warm start', () => {
    const assets = bundleAssets(run());
    const text = (p: string) => assets.find((a) => a.path === p)!.text;
    expect(text('recipes/llamafactory.yaml')).toContain('\nadapter_name_or_path: "adapter"\n');
    expect(text('recipes/llamafactory.yaml')).toContain('\nlora_target: "q_proj,v_proj"\n');
    expect(text('recipes/llamafactory.yaml')).toContain('\ntemplate: "empty"\n');
    expect(text('recipes/axolotl.yaml')).toContain('\nlora_model_dir: "adapter"\n');
    expect(text('recipes/axolotl.yaml')).toContain('\nadapter: "qlora"\n');
    expect(text('recipes/trl-sft.yaml')).toContain('\nlora_target_modules:\n  - "q_proj"\n  - "v_proj"\n');
    for (const p of ['recipes/trl-sft.yaml', 'recipes/llamafactory.yaml']) {
      expect(text(p)).toContain('\nmax_steps: 100\n');
      expect(text(p)).toContain('\nwarmup_steps: 3\n');
      expect(text(p)).toContain('\nseed: 42\n');
      expect(text(p)).toContain('\nlr_scheduler_type: "cosine"\n');
    }
    expect(JSON.parse(text('recipes/dataset_info.json'))).toEqual({
      studio_train: { file_name: '../data/train.jsonl', formatting: 'alpaca', columns: { prompt: 'prompt', response: 'completion' } },
      studio_validation: { file_name: '../data/validation.jsonl', formatting: 'alpaca', columns: { prompt: 'prompt', response: 'completion' } },
    });
    const plain = bundleAssets(run({ quantization: { type: 'none' } }));
    expect(plain.find((a) => a.path === 'recipes/axolotl.yaml')!.text).toContain('\nadapter: "lora"\n');
    expect(plain.find((a) => a.path === 'recipes/trl-sft.yaml')!.text).not.toContain('load_in_4bit');
  });

  it('README: the position, the commands, the versions', () => {
    const readme = bundleAssets(run())[0].text;
    expect(readme).toContain('at step 30 of 100');
    expect(readme).toContain('accelerate launch --config_file accelerate/fsdp.yaml');
    expect(readme).toContain('torch 1.13.1, transformers 4.40.2 and 4.44.0, PEFT 0.11.1, accelerate 0.30.1');
    expect(readme).toContain('70 steps left');
  });

  it('refuses a run.json of another format or version', () => {
    expect(() => bundleAssets(run({ version: 2 as 1 }))).toThrow(/version 2.*qlora-studio-run version 1/);
    expect(() => bundleAssets(run({ format: 'other' as 'qlora-studio-run' }))).toThrow(/format "other"/);
  });

  it('YAML of plain data: nested maps and lists, strings quoted, no non-finite numbers', () => {
    expect(toYaml({ a: 1, b: 'x: y', c: [1, { d: true, e: [] }], f: {}, g: null })).toBe('\na: 1\nb: "x: y"\nc:\n  - 1\n  - d: true\n    e: []\nf: {}\ng: null');
    expect(() => toYaml({ a: Infinity })).toThrow(/no YAML form/);
  });
});
