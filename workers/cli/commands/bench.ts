import { Gpu } from '../../gpu/runtime';
import { BENCH_ARGS, runBench } from '../../../bench/run';
import type { CliCommand } from '../io';
import { checkArgs } from '../flags';

/** `bench <suite> [--size smoke|cpu|full] [--results DIR] …` (bench/run.ts lists the flags): one suite in this browser. */
export const bench: CliCommand = async (args, io) => {
  checkArgs(args, BENCH_ARGS);
  const gpu = await Gpu.create();
  try {
    const dir = typeof args.flags.results === 'string' ? args.flags.results : 'bench/results';
    return await runBench(gpu, io, args.positional[0], args.flags, 'browser', dir);
  } finally {
    gpu.destroy();
  }
};
