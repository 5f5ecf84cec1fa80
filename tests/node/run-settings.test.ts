import { describe, expect, it } from 'vitest';
import { ADAMW_BETAS, RUN_DEFAULTS, checkRunSettings, loraView, runSettings, trainerView, validateRunSettings } from '../../workers/run/settings';
import { EngineError, errorInfo } from '../../workers/errors';
import { PRESETS } from '../../workers/load/presets';
import { DEFAULT_TRAIN_SETTINGS } from '../../workers/train/trainer';
import { validateSettings } from '../../src/settings';
import { explain } from '../../src/explain';

const valid = () => runSettings({ targetModules: ['q_proj', 'fc1'] });

describe('run settings', () => {
  it('every preset starts from valid settings, and the defaults are written once', () => {
    for (const p of Object.values(PRESETS)) expect(validateRunSettings(p.settings), p.name).toEqual([]);
    expect(RUN_DEFAULTS).toMatchObject({ learningRate: 2e-4, seed: 42 });
    expect(DEFAULT_TRAIN_SETTINGS).toMatchObject({ lr: RUN_DEFAULTS.learningRate, seed: RUN_DEFAULTS.seed, ...ADAMW_BETAS });
    expect(PRESETS.demo.settings).toMatchObject({ rank: 16, alpha: 32, learningRate: 3e-3, seqLength: 256, gradAccum: 1, maxSteps: 28, seed: 42 });
  });

  it('names the field and the limit', () => {
    const problems = validateRunSettings({ ...valid(), rank: 2048, learningRate: 0.5, seqLength: 4 });
    expect(problems.map((p) => [p.setting, p.limit])).toEqual([
      ['rank', 'a whole number from 1 to 1024'],
      ['learningRate', '> 0 and ≤ 0.1'],
      ['seqLength', 'a whole number from 8 to 32768'],
    ]);
    expect(problems[0].message).toBe('Rank must be at most 1024.');
    expect(validateRunSettings({ ...valid(), rank: 0 })[0].message).toBe('Rank must be a whole number of at least 1.');
  });

  it('refuses what it does not understand: unknown, missing and mistyped fields, unknown modules', () => {
    const { rank: _rank, ...noRank } = valid();
    expect(validateRunSettings(noRank).map((p) => p.setting)).toEqual(['rank']);
    expect(validateRunSettings({ ...valid(), r: 8 }).map((p) => p.setting)).toEqual(['r']);
    expect(validateRunSettings({ ...valid(), seed: '42' }).map((p) => p.setting)).toEqual(['seed']);
    expect(validateRunSettings({ ...valid(), schedule: 'step' }).map((p) => p.setting)).toEqual(['schedule']);
    expect(validateRunSettings(valid(), ['q_proj']).map((p) => [p.setting, p.message])).toEqual([['targetModules', 'This model has no layer named fc1.']]);
    expect(validateRunSettings({ ...valid(), targetModules: [] }).map((p) => p.setting)).toEqual(['targetModules']);
    expect(validateRunSettings(null).length).toBe(1);
  });

  it('the engine gate throws a typed error with the setting and its limit', () => {
    let caught: unknown;
    try {
      checkRunSettings({ ...valid(), batchSize: 1000 });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EngineError);
    const info = errorInfo(caught);
    expect(info).toMatchObject({ code: 'invalid-setting', setting: 'batchSize', limit: 'a whole number from 1 to 256', section: 'settings' });
    expect(info.message).toMatch(/batchSize.*256/);
    expect(explain(caught)).toEqual({ message: info.message, hint: 'Change that value in the Settings section.' });
  });

  it('gives the LoRA modules and the trainer their views', () => {
    const s = { ...valid(), rank: 4, alpha: 8, warmupSteps: 3, maxSteps: 0 };
    expect(loraView(s)).toEqual({ r: 4, alpha: 8, dropout: 0.05, targetModules: ['q_proj', 'fc1'] });
    expect(trainerView(s)).toMatchObject({ lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, schedule: { name: 'cosine', warmupRatio: 0.03, warmupSteps: 3 }, maxSteps: undefined, gradAccum: 4, sampleMaxNewTokens: 32 });
  });

  it('the page shows the same messages, keyed by field', () => {
    expect(validateSettings({ ...valid(), rank: 0, dropout: 1 }, ['q_proj', 'fc1'])).toEqual({
      rank: 'Rank must be a whole number of at least 1.',
      dropout: 'Dropout is a probability: at least 0 and below 1.',
    });
  });

  it('module errors become codes by their class, with the fields that locate them', () => {
    const data = Object.assign(new Error('unterminated string'), { name: 'DatasetError', file: 'a.jsonl', line: 3, column: 7 });
    expect(errorInfo(data)).toMatchObject({ code: 'invalid-data', file: 'a.jsonl', line: 3, column: 7, section: 'data' });
    const gpu = Object.assign(new Error('GPU error: x'), { name: 'GpuError', outOfMemory: true });
    expect(errorInfo(gpu)).toMatchObject({ code: 'out-of-memory' });
    expect(explain(gpu).hint).toMatch(/Settings section/);
    const quota = Object.assign(new Error('needs 1 GB'), { name: 'QuotaError' });
    expect(explain(quota)).toEqual({ message: 'The browser ran out of storage space: needs 1 GB', hint: 'Delete cached models you no longer need (Model section), or free disk space, then try again.' });
    expect(explain(new Error('something else'))).toEqual({ message: 'something else', hint: undefined });
  });
});
