/**
 * One run, two front doors: the session API as the page's worker calls it (load a dataset
 * file, train with the preset's settings, export the zip) and `cli train` with the same
 * settings, data and seed give byte-identical adapters (the built-in demo model, a few steps);
 * the session's PEFT, GGUF and merged exports stream exactly the files and sizes their plans announced.
 */
import { describe, expect, it } from 'vitest';
import { unzipSync } from 'fflate';
import { Session } from '../../workers/session/session';
import { train as cliTrain } from '../../workers/cli/commands/train';
import type { CliIo } from '../../workers/cli/io';
import type { EngineEvent, RunSettings } from '../../workers/protocol';

const DATA = 'public/demo/data/ds1000-demo.jsonl';
const STEPS = 2;
const SEED = 5;

async function dataBytes(): Promise<Uint8Array> {
  const res = await fetch(`/${DATA.replace(/^public\//, '')}`);
  expect(res.ok).toBe(true);
  return new Uint8Array(await res.arrayBuffer());
}

describe('a page run and a CLI run of the same settings', () => {
  it('give identical adapter bytes', async () => {
    const stamp = Date.now();
    const session = new Session({ origin: location.origin, runsDb: `parity-runs-${stamp}`, checkpointsDb: `parity-checkpoints-${stamp}` });
    const events: EngineEvent[] = [];
    expect((await session.init((e) => events.push(e))).status).toBe('ready');
    const demo = (await session.presets()).find((p) => p.name === 'demo')!;
    // Few steps and a small validation split keep it short on an emulated GPU.
    const settings: RunSettings = { ...demo.defaults, maxSteps: STEPS, seed: SEED, validationFraction: 0.05, evalEvery: 0 };
    const file = new File([(await dataBytes()) as BlobPart], 'ds1000-demo.jsonl');
    const model = { kind: 'preset', name: 'demo' } as const;
    const dataset = await session.loadDataset({ source: { kind: 'file', file }, template: demo.template, mapping: null, seqLength: settings.seqLength, validationFraction: settings.validationFraction, seed: settings.seed, model });
    expect(dataset.ok).toBe(true);
    await session.train(model, settings);
    await session.finished();
    const states = events.flatMap((e) => (e.type === 'train-state' ? [e.state] : []));
    expect(states[states.length - 1], JSON.stringify(events.filter((e) => e.type === 'error'))).toBe('done');
    const facts = { finalTrainLoss: null, finalValidationLoss: null, steps: STEPS, dataset: file.name };
    const page = unzipSync(await session.exportAdapter(facts));

    // The page's other exports: sizes before writing equal the bytes streamed, for every format.
    for (const format of ['peft', 'gguf', 'merged'] as const) {
      const plan = await session.exportPlan(format, facts);
      expect(plan).toMatchObject({ format, refusals: [], baseModel: 'demo', revision: null });
      if (format === 'merged') expect(plan.mergedInto).toBe('original');
      const got: { name: string; bytes: number }[] = [];
      await session.exportWrite(format, facts, async (c) => {
        if (c.type === 'file') got.push({ name: c.name, bytes: 0 });
        else got[got.length - 1].bytes += c.data.length;
      });
      expect(got, format).toEqual(plan.files);
    }

    const written = new Map<string, Uint8Array | string>();
    const lines: Record<string, unknown>[] = [];
    const io: CliIo = {
      log: () => {},
      line: (v) => lines.push(v as Record<string, unknown>),
      readFile: async (path) => {
        expect(path).toBe(DATA);
        return dataBytes();
      },
      readText: async () => {
        throw new Error('not read');
      },
      listDir: async () => null,
      exists: async () => false,
      writeFile: async (path, data) => void written.set(path, data),
    };
    const cli = await cliTrain({ positional: [], flags: { model: 'demo', data: DATA, steps: String(STEPS), seed: String(SEED), validation: '0.05', out: 'out' } }, io);
    expect(cli.exitCode, JSON.stringify(cli.result)).toBe(0);
    expect(cli.result).toMatchObject({ ok: true, status: 'done', steps: STEPS });

    // The losses are the same step by step, and so are the bytes.
    const pageLosses = events.flatMap((e) => (e.type === 'metrics' && e.values.loss !== undefined ? [e.values.loss] : []));
    expect(lines.filter((l) => typeof l.loss === 'number').map((l) => l.loss)).toEqual(pageLosses);
    const cliAdapter = written.get('out/adapter_model.safetensors') as Uint8Array;
    expect(cliAdapter.byteLength).toBeGreaterThan(1000);
    expect(Array.from(cliAdapter)).toEqual(Array.from(page['adapter_model.safetensors']));
    expect(written.get('out/adapter_config.json')).toBe(new TextDecoder().decode(page['adapter_config.json']));
  }, 600_000);
});
