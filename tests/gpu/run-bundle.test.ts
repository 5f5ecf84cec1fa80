/**
 * A run leaves and comes back: `cli train` N steps with checkpoints, `cli export-run` writes the
 * bundle, every file is checked (keys, shapes, values against the CLI's own adapter, run.json's
 * position and log, the order), `cli train --from-run` continues it M steps, and the continued
 * steps and final adapter equal those of an uninterrupted N+M-step run, bit for bit; the
 * session (the page's engine) imports the same bundle as a zip and resumes it to the same steps.
 */
import { describe, expect, it } from 'vitest';
import { train as cliTrain } from '../../workers/cli/commands/train';
import { exportRun } from '../../workers/cli/commands/export-run';
import type { CliIo } from '../../workers/cli/io';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { remainingOrder } from '../../workers/export/run-bundle/order';
import type { RunJson } from '../../workers/export/run-bundle/run-json';
import { bundleAssets } from '../../workers/export/run-bundle/assets';
import { zipSync } from 'fflate';
import { Session } from '../../workers/session/session';
import type { EngineEvent } from '../../workers/protocol';

const DATA = 'public/demo/data/ds1000-demo.jsonl';
const N = 2;
const M = 2;
const FLAGS = { model: 'demo', data: DATA, steps: String(N + M), seed: '5', batch: '2', accum: '2', validation: '0.1', 'checkpoint-every': '1' };

/** Files in memory, as the CLI's runner would keep them on disk. */
function memoryIo(files: Map<string, Uint8Array>, lines: Record<string, unknown>[]): CliIo {
  const enc = new TextEncoder();
  return {
    log: () => {},
    line: (v) => lines.push(v as Record<string, unknown>),
    readFile: async (path) => {
      if (path === DATA) return new Uint8Array(await (await fetch(`/${DATA.replace(/^public\//, '')}`)).arrayBuffer());
      const f = files.get(path);
      if (!f) throw new Error(`cannot read ${path}`);
      return f;
    },
    readText: async (path) => new TextDecoder().decode(files.get(path)),
    listDir: async (path) => {
      const names = [...files.keys()].filter((k) => k.startsWith(`${path}/`)).map((k) => k.slice(path.length + 1).split('/')[0]);
      return names.length ? [...new Set(names)].map((name) => ({ name, isDirectory: false })) : null;
    },
    exists: async (path) => files.has(path),
    writeFile: async (path, data) => void files.set(path, typeof data === 'string' ? enc.encode(data) : data.slice()),
    appendFile: async (path, data) => {
      const old = files.get(path) ?? new Uint8Array(0);
      const next = new Uint8Array(old.byteLength + data.byteLength);
      next.set(old);
      next.set(data, old.byteLength);
      files.set(path, next);
    },
  };
}

const steps = (lines: Record<string, unknown>[]) => lines.filter((l) => typeof l.loss === 'number').map((l) => ({ step: l.step, loss: l.loss, lr: l.lr, grad_norm: l.grad_norm }));

describe('run bundle: export, check, continue', () => {
  it('N steps + export-run + train --from-run M steps == N + M steps uninterrupted', async () => {
    const files = new Map<string, Uint8Array>();
    const fullLines: Record<string, unknown>[] = [];
    const full = await cliTrain({ positional: [], flags: { ...FLAGS, out: 'full' } }, memoryIo(files, fullLines));
    expect(full.exitCode, JSON.stringify(full.result)).toBe(0);

    const firstLines: Record<string, unknown>[] = [];
    const first = await cliTrain({ positional: [], flags: { ...FLAGS, 'stop-after': String(N), out: 'first' } }, memoryIo(files, firstLines));
    expect(first.result).toMatchObject({ ok: true, status: 'stopped', steps: N });
    expect(steps(firstLines)).toEqual(steps(fullLines).slice(0, N));

    // export-run refuses a folder that is not empty and flags it does not know.
    files.set('busy/x', new Uint8Array(1));
    await expect(exportRun({ positional: [], flags: { profile: 'p', out: 'busy' } }, memoryIo(files, []))).rejects.toThrow(/--out busy is not empty/);
    await expect(exportRun({ positional: [], flags: { profile: 'p', out: 'b', steps: '3' } }, memoryIo(files, []))).rejects.toThrow(/unknown flag --steps/);
    const exported = await exportRun({ positional: [], flags: { profile: 'p', out: 'bundle' } }, memoryIo(files, []));
    expect(exported.exitCode).toBe(0);
    // run.json: the position reached and the log of the steps done.
    const run = JSON.parse(new TextDecoder().decode(files.get('bundle/run.json'))) as RunJson;
    const names = [...files.keys()].filter((k) => k.startsWith('bundle/')).sort();
    const own = ['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'data/order.safetensors', 'data/train.jsonl', 'data/train.safetensors', 'data/validation.jsonl', 'data/validation.safetensors', 'optimizer/optimizer.safetensors', 'run.json'];
    expect(names).toEqual([...own, ...bundleAssets(run).map((a) => a.path)].map((n) => `bundle/${n}`).sort());
    expect(run).toMatchObject({ format: 'qlora-studio-run', version: 1, step: N, schedule: { total_steps: N + M, position: N, name: 'cosine' }, optimizer: { step: N, name: 'adamw_torch' }, seed: 5, base: { id: 'demo' }, quantization: { type: 'nf4' } });
    expect(run.log.train).toEqual(steps(firstLines).map((s) => ({ step: s.step, loss: s.loss, lr: s.lr, grad_norm: s.grad_norm })));
    // The adapter equals what the CLI wrote from the GPU at the same step; the moments have the same keys and shapes.
    const adapter = new SafetensorsFile(files.get('bundle/adapter/adapter_model.safetensors')!);
    const cliAdapter = new SafetensorsFile(files.get('first/adapter_model.safetensors')!);
    expect(adapter.names.sort()).toEqual(cliAdapter.names.sort());
    for (const k of adapter.names) expect(adapter.f32(k), k).toEqual(cliAdapter.f32(k));
    const optimizer = new SafetensorsFile(files.get('bundle/optimizer/optimizer.safetensors')!);
    expect(optimizer.header.metadata).toEqual({ format: 'qlora-studio-optimizer', step: String(N) });
    expect(optimizer.names.sort()).toEqual(adapter.names.flatMap((k) => [`${k}.exp_avg`, `${k}.exp_avg_sq`]).sort());
    for (const k of adapter.names) {
      expect(optimizer.info(`${k}.exp_avg`).shape).toEqual(adapter.info(k).shape);
      expect(optimizer.f32(`${k}.exp_avg_sq`).every((x) => x >= 0 && Number.isFinite(x))).toBe(true);
    }
    // The examples as trained and their text; the order of the remaining steps.
    const train = new SafetensorsFile(files.get('bundle/data/train.safetensors')!);
    const offsets = train.ints('offsets');
    expect(offsets.length).toBe(run.data.train_examples + 1);
    expect(offsets[offsets.length - 1]).toBe(train.info('input_ids').shape[0]);
    const jsonl = new TextDecoder().decode(files.get('bundle/data/train.jsonl')).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(jsonl.length).toBe(run.data.train_examples);
    expect(Object.keys(jsonl[0]).sort()).toEqual(['completion', 'prompt']);
    const order = new SafetensorsFile(files.get('bundle/data/order.safetensors')!);
    expect(order.header.metadata).toEqual({ first_step: String(N), grad_accum: '2', batch_size: '2' });
    expect(Array.from(order.ints('micro_batches'))).toEqual(Array.from(remainingOrder({ examples: run.data.train_examples, settings: run.settings, fromStep: N, totalSteps: N + M }).microBatches));

    // Continued from the bundle alone: the same steps, the same adapter bytes.
    const contLines: Record<string, unknown>[] = [];
    const cont = await cliTrain({ positional: [], flags: { 'from-run': 'bundle', out: 'cont' } }, memoryIo(files, contLines));
    expect(cont.exitCode, JSON.stringify(cont.result)).toBe(0);
    expect(contLines[0]).toEqual({ resumed_from_step: N, from_run: 'bundle' });
    expect(steps(contLines)).toEqual(steps(fullLines).slice(N));
    expect(Array.from(files.get('cont/adapter_model.safetensors')!)).toEqual(Array.from(files.get('full/adapter_model.safetensors')!));
    const evals = (lines: Record<string, unknown>[]) => lines.filter((l) => typeof l.eval_loss === 'number');
    expect(evals(contLines)).toEqual(evals(fullLines).slice(-1));

    // The page's way in: the bundle as a zip, imported as this browser's interrupted run and resumed.
    const stamp = Date.now();
    const session = new Session({ origin: location.origin, runsDb: `bundle-runs-${stamp}`, checkpointsDb: `bundle-checkpoints-${stamp}`, bundlesDb: `bundle-bundles-${stamp}` });
    const events: EngineEvent[] = [];
    expect((await session.init((e) => events.push(e))).status).toBe('ready');
    const zip = zipSync(Object.fromEntries([...files].filter(([k]) => k.startsWith('bundle/')).map(([k, v]) => [`run/${k.slice('bundle/'.length)}`, v])));
    const imported = await session.importRun([new File([zip as BlobPart], 'run.zip')]);
    expect(imported.run).toMatchObject({ step: N, totalSteps: N + M, model: 'demo', quantization: 'nf4' });
    expect(imported.adapter.tensors).toBe(adapter.names.length);
    expect(await session.resumable()).toMatchObject({ runId: imported.run.runId, step: N });
    await session.resumeRun(imported.run.runId);
    await session.finished();
    const pageSteps = events.flatMap((e) => (e.type === 'metrics' && e.values.loss !== undefined && e.step > N ? [{ step: e.step, loss: e.values.loss, lr: e.values.lr, grad_norm: e.values.grad_norm }] : []));
    expect(pageSteps).toEqual(steps(fullLines).slice(N));
    // A damaged bundle is refused naming the file and the field.
    const bad = zipSync({ 'run/run.json': new TextEncoder().encode(JSON.stringify({ ...run, version: 9 })) });
    await expect(session.importRun([new File([bad as BlobPart], 'bad.zip')])).rejects.toThrow(/bad\.zip\/run\.json \(version\)/);
  }, 1_500_000);
});
