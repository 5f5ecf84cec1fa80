/**
 * Which of a profile's runs an export reads: the one `--run` names, else the run whose newest
 * checkpoint is the most recent (said when the profile holds more than one).
 */
import type { CheckpointStore } from '../train/checkpoint-store';
import { CliInputError, type CliIo } from './io';

export async function chooseRun(store: CheckpointStore, wanted: string | undefined, profile: string, io: CliIo): Promise<string> {
  const runs = await store.runs();
  if (!runs.length) throw new CliInputError(`the profile ${profile} holds no training run with a checkpoint (run \`train --profile ${profile} …\` first)`);
  if (wanted) {
    if (!runs.includes(wanted)) throw new CliInputError(`--run ${wanted}: no such run in the profile; it has ${runs.join(', ')}`);
    return wanted;
  }
  let newest = -1;
  let runId = runs[0];
  for (const id of runs) {
    const at = (await store.list(id))[0]?.createdAt ?? -1;
    if (at > newest) [newest, runId] = [at, id];
  }
  if (runs.length > 1) io.log(`the profile holds ${runs.length} runs; exporting the newest, ${runId} (choose with --run)`);
  return runId;
}
