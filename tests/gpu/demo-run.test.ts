/**
 * The demo preset does what it is shipped for: its pretrained model, fine-tuned with the preset's
 * own settings on the DS-1000 demo set, learns the answer's shape. The validation loss falls by a
 * quarter or more, and greedy generations from the validation prompts close the code block
 * (a line of code, then `</code>`) at the end where the base model does not. The run is the CLI's and the page's:
 * the same loader, data preparation and trainer (workers/session), every validation prompt sampled.
 */
import { describe, expect, it } from 'vitest';
import { Gpu } from '../../workers/gpu/runtime';
import { HubClient } from '../../workers/load/hub';
import { urlFileSet } from '../../workers/load/sources';
import { getPreset } from '../../workers/load/presets';
import { readRows } from '../../workers/data';
import { tokenizerFromUrl } from '../../workers/tokenizer';
import { chatStopTokenIds } from '../../workers/tokenizer/chat-turns';
import { prepareForRun } from '../../workers/session/datasets';
import { loadRunModel, quantizerFor } from '../../workers/session/models';
import { assembleRun, runExamples, samplePrompts } from '../../workers/session/runs';
import type { TrainEvent } from '../../workers/train/trainer';

const DATA = 'ds1000-demo.jsonl';
/** The answer's shape: a line of code, then the closing tag on a line of its own (an empty answer does not count). */
const ANSWER = /\S[^\n]*\n<\/code>/;

describe('the demo preset', () => {
  it('fine-tuned with its own settings, learns the DS-1000 answer shape', async () => {
    const t0 = performance.now();
    const preset = getPreset('demo');
    const settings = { ...preset.settings, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0 };
    const tokenizer = await tokenizerFromUrl('/demo/tokenizer/');
    const res = await fetch(`/demo/data/${DATA}`);
    expect(res.ok).toBe(true);
    const data = await prepareForRun(readRows(await res.blob(), DATA), { template: preset.template, mapping: null }, tokenizer, settings, DATA);
    const examples = runExamples(data, DATA, settings.seqLength);
    // Every example keeps its whole answer, closing tag included, at the preset's sequence length.
    expect(examples.dropped).toBe(0);
    expect(data.stats.warnings.filter((w) => /truncated/.test(w))).toEqual([]);
    // The studio samples two validation prompts; this samples them all, cut the same way.
    const all = await samplePrompts(examples.validation, 96, examples.validation.count);
    expect(all.length).toBeGreaterThanOrEqual(8);

    const gpu = await Gpu.create();
    const files = urlFileSet(new HubClient({ retryDelayMs: 1 }), new URL('/demo/model/', location.origin).href);
    const loaded = await loadRunModel(gpu, { files, quant: preset.quant, settings, quantizer: quantizerFor(gpu), baseModel: 'demo' });
    const steps: number[] = [];
    const samples = new Map<number, string>();
    const trainer = assembleRun({
      gpu,
      model: loaded.model,
      tokenizer,
      stopTokenIds: chatStopTokenIds(tokenizer, loaded.endTokenSources),
      settings,
      train: examples.train,
      validation: examples.validation,
      samplePrompts: all,
      onEvent: (e: TrainEvent) => {
        if (e.type === 'step') {
          steps.push(e.loss);
          console.info(`demo run: step ${e.step + 1}/${e.totalSteps} loss ${e.loss.toFixed(3)} at ${((performance.now() - t0) / 1000).toFixed(0)} s`);
        }
        else if (e.type === 'sample') samples.set(e.index, e.text ?? '');
      },
    });
    try {
      const generations = async () => {
        samples.clear();
        await trainer.sample();
        return all.map((_, i) => samples.get(i) ?? '');
      };
      const before = await generations();
      const start = (await trainer.evaluate())!.loss;
      console.info(`demo run: loaded, sampled and evaluated at ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      const tLoaded = performance.now();
      const result = await trainer.run();
      const tTrained = performance.now();
      expect(result.status).toBe('done');
      const end = (await trainer.evaluate())!.loss;
      const after = await generations();
      const closed = (texts: string[]) => texts.filter((t) => ANSWER.test(t)).length;
      console.info(
        `demo run: ${steps.length} steps in ${((tTrained - tLoaded) / 1000).toFixed(1)} s (${((tLoaded - t0) / 1000).toFixed(1)} s to load and sample); ` +
          `validation loss ${start.toFixed(3)} → ${end.toFixed(3)} (${(100 * (1 - end / start)).toFixed(1)}% lower); ` +
          `generations with a line of code and </code>: ${closed(before)}/${before.length} before, ${closed(after)}/${after.length} after`,
      );
      console.info(`before: ${JSON.stringify(before)}\nafter: ${JSON.stringify(after)}`);
      expect(steps.length).toBe(trainer.totalSteps);
      expect(end).toBeLessThanOrEqual(0.75 * start);
      expect(closed(before)).toBeLessThanOrEqual(Math.floor(before.length / 4));
      expect(closed(after)).toBeGreaterThanOrEqual(Math.ceil(after.length / 2));
    } finally {
      trainer.dispose();
      loaded.model.dispose();
      gpu.destroy();
    }
  }, 1_800_000);
});
