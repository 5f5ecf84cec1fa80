/** Every command the runner knows. Each lives in its own module under ./commands. */
import type { CliCommand } from './io';
import { bench } from './commands/bench';
import { gpuInfo } from './commands/gpu-info';
import { safetensorsInfo } from './commands/safetensors-info';

export const COMMANDS: Record<string, CliCommand> = {
  bench,
  'gpu-info': gpuInfo,
  'safetensors-info': safetensorsInfo,
};
