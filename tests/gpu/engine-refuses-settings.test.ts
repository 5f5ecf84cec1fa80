/**
 * The engine checks what it receives, whoever sends it: settings posted straight to the worker
 * (no page, no form validation) are refused with the setting's name and its limit, as a typed
 * error that crosses the comlink boundary intact.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as Comlink from 'comlink';
import { installErrorTransfer, type ErrorInfo } from '../../workers/errors';
import { ENGINE_READY, type EngineApi, type ModelSource, type RunSettings } from '../../workers/protocol';

installErrorTransfer(Comlink.transferHandlers);

const worker = new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'engine' });
const ready = new Promise<void>((resolve) => worker.addEventListener('message', (e) => e.data === ENGINE_READY && resolve()));
const engine = Comlink.wrap<EngineApi>(worker);
const demo: ModelSource = { kind: 'preset', name: 'demo' };

async function refusal(call: Promise<unknown>): Promise<ErrorInfo> {
  try {
    await call;
  } catch (err) {
    return (err as { info: ErrorInfo }).info;
  }
  throw new Error('the engine accepted it');
}

afterAll(() => worker.terminate());

describe('the engine refuses invalid settings sent straight to it', () => {
  it('names the setting and the limit, for every entry point that takes settings', async () => {
    await ready;
    const defaults = (await engine.presets()).find((p) => p.name === 'demo')!.defaults;
    const tooLarge: RunSettings = { ...defaults, rank: 4096 };
    for (const call of [engine.train(demo, tooLarge), engine.loadModel(demo, tooLarge), engine.plan(demo, tooLarge)]) {
      const info = await refusal(call);
      expect(info).toMatchObject({ code: 'invalid-setting', setting: 'rank', limit: 'a whole number from 1 to 1024', section: 'settings' });
      expect(info.message).toMatch(/"rank".*1024.*got 4096/);
      expect(info.hint).toMatch(/Settings section/);
    }
    // A learning rate only the page checked before; a field the engine does not know; a wrong type.
    expect(await refusal(engine.train(demo, { ...defaults, learningRate: -1 }))).toMatchObject({ setting: 'learningRate', limit: '> 0 and ≤ 0.1' });
    expect(await refusal(engine.train(demo, { ...defaults, lr: 1e-3 } as RunSettings))).toMatchObject({ code: 'invalid-setting', setting: 'lr' });
    expect(await refusal(engine.train(demo, { ...defaults, batchSize: '4' } as unknown as RunSettings))).toMatchObject({ setting: 'batchSize', limit: 'a number' });
    // Nothing started: the engine is idle and has no run to resume.
    expect(await engine.resumable()).toBeNull();
  });
});
