import { Gpu } from '../../gpu/runtime';
import { runBench } from '../../../bench/run';
import type { CliCommand } from '../io';

/** `bench <suite> [--size smoke|cpu|full] [--results DIR]`: one suite in this browser. */
export const bench: CliCommand = async (args, io) => {
  const gpu = await Gpu.create();
  try {
    const dir = typeof args.flags.results === 'string' ? args.flags.results : 'bench/results';
    return await runBench(gpu, io, args.positional[0], args.flags, 'browser', dir);
  } finally {
    gpu.destroy();
  }
};
