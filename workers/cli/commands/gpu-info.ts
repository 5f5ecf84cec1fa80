import { Gpu } from '../../gpu/runtime';
import type { CliCommand } from '../io';
import { checkArgs } from '../flags';

/** `gpu-info`: the adapter the engine gets, with its limits and features. */
export const gpuInfo: CliCommand = async (args, io) => {
  checkArgs(args, { usage: 'usage: gpu-info' });
  const gpu = await Gpu.create();
  const a = gpu.adapter;
  io.log(`adapter: ${a.vendor} ${a.architecture} ${a.description}${a.isFallbackAdapter ? ' (software fallback)' : ''}`);
  gpu.destroy();
  return { exitCode: 0, result: { ok: true, adapter: a } };
};
