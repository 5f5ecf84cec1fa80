/**
 * A large JSONL dataset goes through the studio's real path — hashed, parsed, tokenized and
 * written to the example store a chunk at a time — and trains two steps on the demo model,
 * with the JS heap sampled all along (Chromium's `performance.memory`, precise with
 * `--enable-precise-memory-info`). The file is made as a Blob of 1 MB parts, so the test itself
 * never holds it either. Then a reload (a new session) resumes the run from the stored dataset
 * by its key, and a run whose dataset was deleted says so.
 *
 * Size: 20 MB here; `VITE_STREAM_MB=200 npx vitest run --project browser tests/gpu/dataset-stream.test.ts`
 * for the README's number.
 */
import { describe, expect, it } from 'vitest';
import { Session } from '../../workers/session/session';
import { ExampleStore } from '../../workers/data/example-store';
import type { EngineEvent, RunSettings } from '../../workers/protocol';

const MB = Number(import.meta.env.VITE_STREAM_MB ?? 20);
/** What the engine may add to the heap while streaming any dataset: a few chunks, the per-row lengths, garbage not yet collected. */
const HEAP_GROWTH_LIMIT = 96 * 2 ** 20;

const WORDS = 'import numpy pandas def return array frame column index value sort merge group sum mean shape reshape axis where mask apply lambda list dict string float int'.split(' ');

/** Deterministic DS-1000-shaped rows, about 500 bytes each, as a File of 1 MB Blob parts. */
function bigJsonl(megabytes: number): File {
  let state = 12345;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
  const words = (n: number) => Array.from({ length: n }, () => WORDS[next() % WORDS.length]).join(' ');
  const parts: Blob[] = [];
  let row = 0;
  for (let mb = 0; mb < megabytes; mb++) {
    const lines: string[] = [];
    let bytes = 0;
    while (bytes < 1 << 20) {
      const line = JSON.stringify({ prompt: `Problem ${row++}: ${words(60)}`, reference_code: `result = ${words(12)}`, metadata: { library: WORDS[next() % 4] } }) + '\n';
      lines.push(line);
      bytes += line.length;
    }
    parts.push(new Blob(lines));
  }
  return new File(parts, 'big.jsonl');
}

const heap = () => (performance as unknown as { memory: { usedJSHeapSize: number } }).memory.usedJSHeapSize;

describe('a large JSONL dataset streams through storage', () => {
  it(`${MB} MB: loads and trains with a bounded heap, resumes after a reload from the dataset stored under its key`, async () => {
    const stamp = Date.now();
    const dbs = { runsDb: `stream-runs-${stamp}`, checkpointsDb: `stream-checkpoints-${stamp}`, datasetsDb: `stream-datasets-${stamp}` };
    let peak = 0;
    const sample = () => (peak = Math.max(peak, heap()));
    const events: EngineEvent[] = [];
    let stopped = false;
    const session = new Session({ origin: location.origin, ...dbs });
    const listener = (e: EngineEvent) => {
      events.push(e);
      sample();
      // Stopped after its first step, as a closed tab would leave it: resumable.
      if (e.type === 'train-state' && e.state === 'running' && e.step >= 1 && !stopped) {
        stopped = true;
        void session.stop();
      }
    };
    expect((await session.init(listener)).status).toBe('ready');
    const demo = (await session.presets()).find((p) => p.name === 'demo')!;
    const model = { kind: 'preset', name: 'demo' } as const;
    const settings: RunSettings = { ...demo.defaults, maxSteps: 2, seed: 1, validationFraction: 0.0005, evalEvery: 0, sampleEvery: 0, checkpointEvery: 1 };
    const request = { template: demo.template, mapping: null, seqLength: settings.seqLength, validationFraction: settings.validationFraction, seed: settings.seed, model };
    // The tokenizer and model code loaded, the file made: what is on the heap before the dataset.
    await session.plan(model, settings);
    const file = bigJsonl(MB);
    expect(file.size).toBeGreaterThan(MB * 2 ** 20 - 1);
    const base = heap();
    peak = base;
    const timer = setInterval(sample, 20);
    const started = performance.now();
    const dataset = await session.loadDataset({ source: { kind: 'file', file }, ...request });
    const loadSeconds = (performance.now() - started) / 1000;
    expect(dataset.ok, JSON.stringify(dataset)).toBe(true);
    if (!dataset.ok) return;
    const loadPeak = peak;
    await session.train(model, settings);
    await session.finished();
    clearInterval(timer);
    const states = events.flatMap((e) => (e.type === 'train-state' ? [e.state] : []));
    expect(states[states.length - 1], JSON.stringify(events.filter((e) => e.type === 'error'))).toBe('stopped');
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    console.log(
      `dataset-stream: ${(file.size / 2 ** 20).toFixed(1)} MiB JSONL, ${dataset.summary.rows} rows, ${dataset.summary.tokens?.mean.toFixed(1)} tokens a row, prepared in ${loadSeconds.toFixed(1)} s; ` +
        `heap before ${mib(base)}, peak while loading ${mib(loadPeak)} (+${mib(loadPeak - base)}), peak through a training step ${mib(peak)} (+${mib(peak - base)})`,
    );
    expect(peak - base).toBeLessThan(HEAP_GROWTH_LIMIT);

    // A reload: a new session finds the interrupted run and resumes it from the dataset stored under its key.
    const events2: EngineEvent[] = [];
    const reloaded = new Session({ origin: location.origin, ...dbs });
    await reloaded.init((e) => events2.push(e));
    const run = await reloaded.resumable();
    expect(run).toMatchObject({ step: 1, dataset: 'big.jsonl' });
    await reloaded.resumeRun(run!.runId);
    await reloaded.finished();
    const states2 = events2.flatMap((e) => (e.type === 'train-state' ? [e.state] : []));
    expect(states2[states2.length - 1], JSON.stringify(events2.filter((e) => e.type === 'error'))).toBe('done');

    // The same file chosen again is found under its key: hashed, not tokenized again.
    const againStarted = performance.now();
    const tokenizing = () => events2.filter((e) => e.type === 'progress' && e.task === 'tokenize').length;
    const before = tokenizing();
    const again = await reloaded.loadDataset({ source: { kind: 'file', file }, ...request });
    expect(again.ok && again.summary).toEqual(dataset.summary);
    expect(tokenizing()).toBe(before);
    console.log(`dataset-stream: the same file found again by its key in ${((performance.now() - againStarted) / 1000).toFixed(1)} s`);
  }, Math.max(900, MB * 8) * 1000);

  it('a run whose stored dataset is gone says so; the same file chosen again lets it resume', async () => {
    const stamp = Date.now();
    const dbs = { runsDb: `gone-runs-${stamp}`, checkpointsDb: `gone-checkpoints-${stamp}`, datasetsDb: `gone-datasets-${stamp}` };
    let stopped = false;
    const session = new Session({ origin: location.origin, ...dbs });
    await session.init((e) => {
      if (e.type === 'train-state' && e.state === 'running' && e.step >= 1 && !stopped) {
        stopped = true;
        void session.stop();
      }
    });
    const demo = (await session.presets()).find((p) => p.name === 'demo')!;
    const model = { kind: 'preset', name: 'demo' } as const;
    const settings: RunSettings = { ...demo.defaults, maxSteps: 2, seed: 2, validationFraction: 0.05, evalEvery: 0, sampleEvery: 0, checkpointEvery: 1 };
    const request = { template: demo.template, mapping: null, seqLength: settings.seqLength, validationFraction: settings.validationFraction, seed: settings.seed, model };
    const res = await fetch('/demo/data/ds1000-demo.jsonl');
    const file = new File([await res.blob()], 'ds1000-demo.jsonl');
    expect((await session.loadDataset({ source: { kind: 'file', file }, ...request })).ok).toBe(true);
    await session.train(model, settings);
    await session.finished();

    const events: EngineEvent[] = [];
    const reloaded = new Session({ origin: location.origin, ...dbs });
    await reloaded.init((e) => events.push(e));
    const run = await reloaded.resumable();
    expect(run).toMatchObject({ step: 1, dataset: 'ds1000-demo.jsonl' });
    // The browser cleared the dataset (or it was deleted).
    const store = await ExampleStore.open(dbs.datasetsDb);
    const [stored] = await store.list();
    await store.delete(stored.key);
    await expect(reloaded.resumeRun(run!.runId)).rejects.toThrow(/\(ds1000-demo\.jsonl\) is no longer stored in this browser.*choose ds1000-demo\.jsonl again in the Data section/);
    expect((await reloaded.resumable())?.runId).toBe(run!.runId);

    expect((await reloaded.loadDataset({ source: { kind: 'file', file }, ...request })).ok).toBe(true);
    expect((await store.list())[0].key).toBe(stored.key);
    await reloaded.resumeRun(run!.runId);
    await reloaded.finished();
    const states = events.flatMap((e) => (e.type === 'train-state' ? [e.state] : []));
    expect(states[states.length - 1], JSON.stringify(events.filter((e) => e.type === 'error'))).toBe('done');
  }, 600_000);
});
