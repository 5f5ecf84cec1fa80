/**
 * `export-run --profile DIR --out DIR [--run ID]`: the run bundle (docs/RUN-BUNDLE.md) of a
 * `train` run kept in the profile, from its newest checkpoint, written into an empty or new
 * folder a file at a time and each file a piece at a time.
 */
import { CheckpointStore } from '../../train/checkpoint-store';
import { HeldBytes } from '../../load/held';
import { RunBundleStore, bundleOfRun } from '../../export/run-bundle/run-record';
import { writeExportFiles } from '../export-files';
import { chooseRun } from '../choose-run';
import { CliInputError, type CliArgs, type CliCommand } from '../io';
import { checkArgs } from '../flags';

const USAGE = 'usage: export-run --profile <train profile dir> --out <empty or new folder> [--run ID]';

function stringFlag(args: CliArgs, name: string): string | undefined {
  const v = args.flags[name];
  if (v === undefined) return undefined;
  if (v === true || v === '') throw new CliInputError(`--${name} needs a value\n${USAGE}`);
  return v;
}

export const exportRun: CliCommand = async (args, io) => {
  checkArgs(args, { usage: USAGE, values: ['profile', 'out', 'run'] });
  const profile = stringFlag(args, 'profile');
  const out = stringFlag(args, 'out');
  if (!profile || !out) throw new CliInputError(USAGE);
  const entries = await io.listDir(out);
  if (entries === null && (await io.exists(out))) throw new CliInputError(`--out ${out} is a file, not a folder`);
  if (entries && entries.length) throw new CliInputError(`--out ${out} is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${entries.slice(0, 3).map((e) => e.name).join(', ')}${entries.length > 3 ? ', …' : ''}); give a new or empty folder`);

  const store = await CheckpointStore.open();
  const bundles = new RunBundleStore();
  try {
    const runId = await chooseRun(store, stringFlag(args, 'run'), profile, io);
    const record = await bundles.get(runId);
    if (!record?.train || !record.validation) throw new CliInputError(`run ${runId} was trained before runs kept their examples for export; train it again with this studio`);
    const checkpoint = await store.openLatest(runId);
    if (!checkpoint) throw new CliInputError(`run ${runId} has no checkpoint`);
    for (const w of checkpoint.warnings) io.log(`warning: ${w}`);
    io.log(`run ${runId}: checkpoint at step ${checkpoint.info.step} of ${checkpoint.meta.totalSteps} (${checkpoint.info.reason})`);
    const held = new HeldBytes();
    const files = await bundleOfRun({ facts: record.facts, train: record.train, validation: record.validation }, checkpoint, held);
    const written = await writeExportFiles(out, files, io);
    const largest = Math.max(...checkpoint.meta.lora.map((l) => l.shape[0] * l.shape[1] * 4));
    io.log(`held at most ${held.peak} bytes of model and optimizer data at once (largest tensor ${largest} bytes)`);
    return {
      exitCode: 0,
      result: { ok: true, out, run: runId, step: checkpoint.meta.step, total_steps: checkpoint.meta.totalSteps, files: written, total_bytes: written.reduce((n, f) => n + f.bytes, 0), peak_held_bytes: held.peak },
    };
  } finally {
    store.close();
    await bundles.close();
  }
};
