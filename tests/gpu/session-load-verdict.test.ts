/**
 * A load follows the memory planner's verdict: a model whose plan for the settings is
 * "does-not-fit" on this GPU is refused before any download, with the planner's numbers in the
 * message; asked to load anyway, it loads. The GPU's memory is a tiny budget here so the demo
 * model does not fit.
 */
import { describe, expect, it } from 'vitest';
import { Session } from '../../workers/session/session';
import type { ErrorInfo } from '../../workers/errors';
import type { EngineEvent, LoadOptions, ModelSource } from '../../workers/protocol';

const demo: ModelSource = { kind: 'preset', name: 'demo' };

describe('loading a model the planner says does not fit', () => {
  it('is refused with does-not-fit and the numbers, and loads when asked to load anyway', async () => {
    const stamp = Date.now();
    const session = new Session({ origin: location.origin, runsDb: `verdict-runs-${stamp}`, checkpointsDb: `verdict-checkpoints-${stamp}`, gpuMemoryBytes: 64 * 1024 });
    const events: EngineEvent[] = [];
    expect((await session.init((e) => events.push(e))).status).toBe('ready');
    const settings = (await session.presets()).find((p) => p.name === 'demo')!.defaults;
    const plan = await session.plan(demo, settings);
    expect(plan).toMatchObject({ verdict: 'does-not-fit', gpuMemoryBytes: 64 * 1024 });

    let info: ErrorInfo | null = null;
    try {
      await session.loadModel(demo, settings);
    } catch (err) {
      info = (err as { info: ErrorInfo }).info;
    }
    expect(info).toMatchObject({ code: 'does-not-fit', section: 'model' });
    expect(info!.message).toContain(`sequence ${settings.seqLength}, batch ${settings.batchSize} and rank ${settings.rank}`);
    expect(info!.message).toContain('64.0 KiB');
    expect(info!.message).toMatch(/even sequence 16, batch 1 needs/);
    expect(info!.hint).toMatch(/Settings section.*smaller preset.*Load anyway/);
    // Refused before anything was downloaded or quantized.
    expect(events.filter((e) => e.type === 'progress')).toEqual([]);
    // Starting a run loads the model too: refused the same way.
    const res = await fetch('/demo/data/ds1000-demo.jsonl');
    const file = new File([new Uint8Array(await res.arrayBuffer()) as BlobPart], 'ds1000-demo.jsonl');
    const preset = (await session.presets()).find((p) => p.name === 'demo')!;
    const dataset = await session.loadDataset({ source: { kind: 'file', file }, template: preset.template, mapping: null, seqLength: settings.seqLength, validationFraction: settings.validationFraction, seed: settings.seed, model: demo });
    expect(dataset.ok).toBe(true);
    await expect(session.train(demo, settings)).rejects.toMatchObject({ info: { code: 'does-not-fit' } });
    // Options the engine does not understand are refused.
    await expect(session.loadModel(demo, settings, { force: true } as unknown as LoadOptions)).rejects.toMatchObject({ info: { code: 'invalid-setting' } });

    const loaded = await session.loadModel(demo, settings, { anyway: true });
    expect(loaded.layers).toBeGreaterThan(0);
  });

  it('turns checkpointing on where the activations do not fit, and loads when the plan fits only at a shorter setting (the page offers that setting)', async () => {
    const stamp = Date.now();
    const roomy = new Session({ origin: location.origin, runsDb: `roomy-runs-${stamp}`, checkpointsDb: `roomy-checkpoints-${stamp}` });
    expect((await roomy.init(() => {})).status).toBe('ready');
    const settings = (await roomy.presets()).find((p) => p.name === 'demo')!.defaults;
    const roomyPlan = await roomy.plan(demo, settings);
    // The demo's activations are small: no checkpointing while they fit.
    expect(roomyPlan.checkpointing).toBe(false);
    // A byte less and they do not: checkpointing makes the run fit.
    const small = new Session({ origin: location.origin, runsDb: `small-runs-${stamp}`, checkpointsDb: `small-checkpoints-${stamp}`, gpuMemoryBytes: roomyPlan.peakBytes - 1 });
    expect((await small.init(() => {})).status).toBe('ready');
    const smallPlan = await small.plan(demo, settings);
    expect(smallPlan).toMatchObject({ verdict: 'fits', checkpointing: true });
    expect(smallPlan.peakBytes).toBeLessThan(roomyPlan.peakBytes);
    // Less than that even with checkpointing: only a shorter setting fits.
    const tight = new Session({ origin: location.origin, runsDb: `tight-runs-${stamp}`, checkpointsDb: `tight-checkpoints-${stamp}`, gpuMemoryBytes: smallPlan.peakBytes - 1 });
    expect((await tight.init(() => {})).status).toBe('ready');
    expect((await tight.plan(demo, settings)).verdict).toBe('fits-shorter');
    expect((await tight.loadModel(demo, settings)).layers).toBeGreaterThan(0);
  });
});
