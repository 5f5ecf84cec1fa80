/** The adapter's model card (the hub's YAML front matter) and the rule that names the base model. */
import { describe, expect, it } from 'vitest';
import { baseModelName, isHubId, modelCard, type ModelCardInput } from '../../workers/export/model-card';

/** The front matter as key → value or list (the writer emits JSON-quoted scalars and `- ` lists). */
function frontMatter(card: string): Record<string, string | string[]> {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(card);
  if (!m) throw new Error('no front matter');
  const out: Record<string, string | string[]> = {};
  let list: string[] | null = null;
  for (const line of m[1].split('\n')) {
    const item = /^- (.*)$/.exec(line);
    if (item && list) {
      list.push(JSON.parse(item[1]) as string);
      continue;
    }
    const kv = /^([a-z_]+):(?: (.*))?$/.exec(line);
    if (!kv) throw new Error(`unexpected front matter line: ${line}`);
    if (kv[2] === undefined) out[kv[1]] = list = [];
    else {
      list = null;
      out[kv[1]] = kv[2].startsWith('"') ? (JSON.parse(kv[2]) as string) : kv[2];
    }
  }
  return out;
}

describe('base_model_name_or_path', () => {
  it('recognises hub ids', () => {
    for (const id of ['microsoft/phi-1_5', 'tiiuae/falcon-7b', 'Qwen/Qwen2.5-0.5B', 'a/b']) expect(isHubId(id), id).toBe(true);
    for (const id of ['/home/me/models/phi', './phi', 'phi-1_5', 'C:\\models\\phi', 'a//b', 'a/b/c', 'a--b/c', 'a/b..c', 'a/b.git', '', 'a/-b', 'a/b-']) expect(isHubId(id), id).toBe(false);
  });

  it('is the hub id, the config _name_or_path of a dropped folder when that is a hub id, otherwise the folder name', () => {
    expect(baseModelName({ kind: 'hub', id: 'microsoft/phi-1_5' })).toEqual({ name: 'microsoft/phi-1_5', hubId: 'microsoft/phi-1_5', local: false });
    expect(baseModelName({ kind: 'folder', folderName: 'phi-copy', config: { _name_or_path: 'microsoft/phi-1_5' } })).toEqual({ name: 'microsoft/phi-1_5', hubId: 'microsoft/phi-1_5', local: true });
    expect(baseModelName({ kind: 'folder', folderName: '/data/models/my-phi/', config: { _name_or_path: '/data/models/my-phi' } })).toEqual({ name: 'my-phi', hubId: null, local: true });
    expect(baseModelName({ kind: 'folder', folderName: 'C:\\models\\my-phi', config: {} })).toEqual({ name: 'my-phi', hubId: null, local: true });
    expect(baseModelName({ kind: 'folder', folderName: 'tiny', config: null })).toEqual({ name: 'tiny', hubId: null, local: true });
    expect(baseModelName({ kind: 'bundled', name: 'demo' })).toEqual({ name: 'demo', hubId: null, local: true });
    expect(() => baseModelName({ kind: 'hub', id: '/abs/path' })).toThrow(/not a hub repo id/);
  });
});

const INPUT: ModelCardInput = {
  base: { name: 'microsoft/phi-1_5', hubId: 'microsoft/phi-1_5', local: false },
  revision: '675aa382d814580b22651a30acb1a585d7c25963',
  architecture: 'PhiForCausalLM',
  lora: { r: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'] },
  training: { learningRate: 2e-4, schedule: 'cosine', warmupRatio: 0.03, epochs: 1, steps: 40, microBatch: 1, gradAccumulation: 4, maxLength: 512, seed: 42, weightDecay: 0, maxGradNorm: 1 },
  data: { name: 'ds1000-demo.jsonl', fingerprint: 'crc32:9f3a01bc', template: 'ds1000', trainExamples: 76, validationExamples: 8, hubDataset: 'xlangai/DS-1000' },
  results: { finalTrainLoss: 6.3912, finalEvalLoss: 6.3804, steps: 40 },
  extraFiles: ['adapter.gguf', 'Modelfile'],
};

describe('model card', () => {
  it('has the front matter the hub reads', () => {
    const fm = frontMatter(modelCard(INPUT));
    expect(fm.base_model).toBe('microsoft/phi-1_5');
    expect(fm.base_model_relation).toBe('adapter');
    expect(fm.library_name).toBe('peft');
    expect(fm.pipeline_tag).toBe('text-generation');
    expect(fm.tags).toEqual(expect.arrayContaining(['base_model:adapter:microsoft/phi-1_5', 'peft', 'lora', 'qlora']));
    expect(fm.datasets).toEqual(['xlangai/DS-1000']);
  });

  it('has the commit, the training settings, the data fingerprint and the final losses', () => {
    const card = modelCard(INPUT);
    expect(card).toContain('at commit `675aa382d814580b22651a30acb1a585d7c25963`');
    expect(card).toContain('| LoRA rank r / alpha / dropout | 16 / 32 / 0.05 |');
    expect(card).toContain('| scale | alpha / r = 2 |');
    expect(card).toContain('| learning rate | 0.0002 |');
    expect(card).toContain('| micro-batch × accumulation | 1 × 4 |');
    expect(card).toContain('fingerprint: `crc32:9f3a01bc`');
    expect(card).toContain('final training loss: 6.391');
    expect(card).toContain('final validation loss: 6.38');
    expect(card).toContain('from_pretrained("microsoft/phi-1_5", revision="675aa382d814580b22651a30acb1a585d7c25963")');
  });

  it('says the base is local, and names no hub base_model when there is none', () => {
    const card = modelCard({ ...INPUT, base: { name: 'my-phi', hubId: null, local: true }, revision: null, data: undefined, results: undefined, training: undefined });
    const fm = frontMatter(card);
    expect(fm.base_model).toBeUndefined();
    expect(fm.library_name).toBe('peft');
    expect(card).toContain('The base model is local: the folder `my-phi`');
    expect(card).toContain('final training loss: not recorded');
    const named = modelCard({ ...INPUT, base: { name: 'microsoft/phi-1_5', hubId: 'microsoft/phi-1_5', local: true } });
    expect(frontMatter(named).base_model).toBe('microsoft/phi-1_5');
    expect(named).toContain('local folder whose config names `microsoft/phi-1_5`');
  });

  it('describes a merged model and which weights the delta went into', () => {
    const card = modelCard({ ...INPUT, merged: { into: 'dequantized-nf4', dtype: 'bfloat16' } });
    const fm = frontMatter(card);
    expect(fm.base_model_relation).toBe('merge');
    expect(fm.library_name).toBe('transformers');
    expect(fm.tags).toContain('base_model:merge:microsoft/phi-1_5');
    expect(card).toContain('NF4 base dequantized');
    expect(card).toContain('stored in bfloat16');
    expect(modelCard({ ...INPUT, merged: { into: 'original', dtype: 'float16' } })).toContain('original checkpoint weights');
  });

  it('quotes what YAML would misread', () => {
    const fm = frontMatter(modelCard({ ...INPUT, data: { ...INPUT.data!, hubDataset: 'org/data: "x"' } }));
    expect(fm.datasets).toEqual(['org/data: "x"']);
  });
});
