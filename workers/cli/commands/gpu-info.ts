import { Gpu } from '../../gpu/runtime';
import type { CliCommand } from '../io';

/** `gpu-info`: the adapter the engine gets, with its limits and features. */
export const gpuInfo: CliCommand = async (_args, io) => {
  const gpu = await Gpu.create();
  const a = gpu.adapter;
  io.log(`adapter: ${a.vendor} ${a.architecture} ${a.description}${a.isFallbackAdapter ? ' (software fallback)' : ''}`);
  gpu.destroy();
  return { exitCode: 0, result: { ok: true, adapter: a } };
};
