/**
 * Two tabs and one run: two engine sessions on the same storage, as two tabs of one browser
 * have. While one has a run open (paused here), the other is told the run is open in another
 * tab — by `resumable()`, by a refused resume and a refused discard — hears of it on the
 * BroadcastChannel, and starting a run of its own does not mark the first one finished. Once
 * the first tab stops, the second may resume it.
 */
import { describe, expect, it } from 'vitest';
import { Session } from '../../workers/session/session';
import { RunStore } from '../../workers/session/run-store';
import type { EngineEvent, RunSettings } from '../../workers/protocol';

const until = async (check: () => boolean, what: string, ms = 300_000) => {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('two tabs, one run', () => {
  it('the second tab sees the run open elsewhere, cannot take or discard it, and does not finish it', async () => {
    const stamp = Date.now();
    const dbs = { runsDb: `tabs-runs-${stamp}`, checkpointsDb: `tabs-checkpoints-${stamp}`, datasetsDb: `tabs-datasets-${stamp}` };
    const aEvents: EngineEvent[] = [];
    const bEvents: EngineEvent[] = [];
    const a = new Session({ origin: location.origin, ...dbs });
    const b = new Session({ origin: location.origin, ...dbs });
    let paused = false;
    await a.init((e) => {
      aEvents.push(e);
      if (e.type === 'train-state' && e.state === 'running' && e.step >= 1 && !paused) {
        paused = true;
        void a.pause();
      }
    });
    await b.init((e) => bEvents.push(e));
    const demo = (await a.presets()).find((p) => p.name === 'demo')!;
    const model = { kind: 'preset', name: 'demo' } as const;
    const settings: RunSettings = { ...demo.defaults, maxSteps: 20, seed: 4, validationFraction: 0.05, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0 };
    const request = { template: demo.template, mapping: null, seqLength: settings.seqLength, validationFraction: settings.validationFraction, seed: settings.seed, model };
    const file = new File([await (await fetch('/demo/data/ds1000-demo.jsonl')).blob()], 'ds1000-demo.jsonl');

    expect((await a.loadDataset({ source: { kind: 'file', file }, ...request })).ok).toBe(true);
    await a.train(model, settings);
    await until(() => aEvents.some((e) => e.type === 'train-state' && e.state === 'paused'), 'the first tab to pause');
    expect(bEvents.some((e) => e.type === 'runs-changed')).toBe(true);

    const seen = await b.resumable();
    expect(seen).toMatchObject({ step: 1, dataset: 'ds1000-demo.jsonl', openElsewhere: true });
    const runId = seen!.runId;
    await expect(b.resumeRun(runId)).rejects.toThrow(/open in another tab/);
    await expect(b.discardRun(runId)).rejects.toThrow(/open in another tab/);

    // A run of the second tab's own leaves the first tab's run as it is.
    expect((await b.loadDataset({ source: { kind: 'file', file }, ...request })).ok).toBe(true);
    await b.train(model, { ...settings, maxSteps: 1 });
    await b.finished();
    expect(bEvents.filter((e) => e.type === 'train-state').at(-1)).toMatchObject({ state: 'done' });
    expect((await new RunStore(dbs.runsDb).get(runId))?.state).toBe('active');

    // The first tab stops: the run is the second tab's to resume.
    const heard = bEvents.filter((e) => e.type === 'runs-changed').length;
    await a.stop();
    await until(() => bEvents.filter((e) => e.type === 'runs-changed').length > heard, 'the close to be announced', 10_000);
    expect(await b.resumable()).toMatchObject({ runId, openElsewhere: false });
  }, 900_000);
});
