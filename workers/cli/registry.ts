/** Every command the runner knows. Each lives in its own module under ./commands. */
import type { CliCommand } from './io';
import { bench } from './commands/bench';
import { dataCheck } from './commands/data-check';
import { exportCommand } from './commands/export';
import { exportRun } from './commands/export-run';
import { gpuInfo } from './commands/gpu-info';
import { goldenCheck } from './commands/golden-check';
import { nf4Check } from './commands/nf4-check';
import { plan } from './commands/plan';
import { safetensorsInfo } from './commands/safetensors-info';
import { train } from './commands/train';
import { trainCheck } from './commands/train-check';

export const COMMANDS: Record<string, CliCommand> = {
  bench,
  'data-check': dataCheck,
  export: exportCommand,
  'export-run': exportRun,
  'golden-check': goldenCheck,
  'gpu-info': gpuInfo,
  'nf4-check': nf4Check,
  plan,
  'safetensors-info': safetensorsInfo,
  train,
  'train-check': trainCheck,
};
