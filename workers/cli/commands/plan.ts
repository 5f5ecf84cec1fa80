import { Gpu } from '../../gpu/runtime';
import { MEMORY_CATEGORIES } from '../../util/memory-categories';
import { getPreset, NO_QUANT, PRESET_NAMES, type HfConfig } from '../../load/presets';
import { fmt, GIB, planMemory, type PlanRequest } from '../../load/planner';
import { CliInputError, type CliArgs, type CliCommand } from '../io';
import { checkArgs, type ArgSpec } from '../flags';

const USAGE =
  `usage: plan (--preset <name> | <name>) [--seq N] [--batch N] [--rank N] [--targets a,b] [--config config.json] ` +
  `[--checkpointing | --no-checkpointing] [--no-quantize] [--gpu-memory GiB] [--adapter-limits]; presets: ${PRESET_NAMES.join(', ')}`;
const ARGS: ArgSpec = {
  usage: USAGE,
  values: ['preset', 'seq', 'batch', 'rank', 'targets', 'config', 'gpu-memory'],
  switches: ['checkpointing', 'no-checkpointing', 'no-quantize', 'adapter-limits'],
  positional: 1,
};

function intFlag(args: CliArgs, key: string, fallback: number): number {
  const v = args.flags[key];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n <= 0) throw new CliInputError(`--${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * `plan --preset <name> [--seq N] [--batch N] [--rank N] [--targets a,b] [--config config.json]
 * [--checkpointing | --no-checkpointing] [--no-quantize] [--gpu-memory GiB] [--adapter-limits]`:
 * predicted peak GPU memory of a training step by category, the largest buffer, storage bytes and
 * whether it fits; `--no-quantize` plans plain LoRA on the unquantized (f32) base. Without either
 * checkpointing flag the planner decides, as it does for a run.
 */
export const plan: CliCommand = async (args, io) => {
  checkArgs(args, ARGS);
  if (typeof args.flags.preset === 'string' && args.positional.length) throw new CliInputError(`give the preset once: --preset ${args.flags.preset} or "${args.positional[0]}"\n${USAGE}`);
  const presetName = typeof args.flags.preset === 'string' ? args.flags.preset : args.positional[0];
  if (!presetName) throw new CliInputError(USAGE);
  let preset;
  try {
    preset = getPreset(presetName);
  } catch (err) {
    throw new CliInputError((err as Error).message);
  }
  let config: HfConfig = preset.config;
  if (typeof args.flags.config === 'string') {
    try {
      config = JSON.parse(await io.readText(args.flags.config)) as HfConfig;
    } catch (err) {
      throw new CliInputError(`${args.flags.config}: ${(err as Error).message}`);
    }
  }
  const gpuMemory = args.flags['gpu-memory'];
  const request: PlanRequest = {
    config,
    seq: intFlag(args, 'seq', preset.settings.seqLength),
    batch: intFlag(args, 'batch', preset.settings.batchSize),
    rank: intFlag(args, 'rank', preset.settings.rank),
    targets: typeof args.flags.targets === 'string' ? args.flags.targets.split(',').filter(Boolean) : preset.settings.targetModules,
    ...(args.flags.checkpointing || args.flags['no-checkpointing'] ? { checkpointing: !args.flags['no-checkpointing'] } : {}),
    quant: args.flags['no-quantize'] ? NO_QUANT : preset.quant,
    dropout: preset.settings.dropout > 0,
  };
  if (gpuMemory !== undefined) {
    const gib = Number(gpuMemory);
    if (!(gib > 0)) throw new CliInputError(`--gpu-memory must be a positive number of GiB, got ${JSON.stringify(gpuMemory)}`);
    request.gpuMemoryBytes = gib * GIB;
  }
  if (args.flags['adapter-limits']) {
    const gpu = await Gpu.create();
    request.limits = { maxBufferSize: gpu.limits.maxBufferSize, maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize };
    gpu.destroy();
  }
  if (args.flags.checkpointing && args.flags['no-checkpointing']) throw new CliInputError('--checkpointing and --no-checkpointing contradict each other');
  let result;
  try {
    result = await planMemory(request);
  } catch (err) {
    if (err instanceof RangeError || (err as Error).name === 'ConfigError') throw new CliInputError((err as Error).message);
    throw err;
  }
  io.log(`${preset.name}: seq ${request.seq}, batch ${request.batch}, LoRA r ${request.rank} on ${request.targets.join(', ')}, checkpointing ${result.checkpointing ? 'on' : 'off'}${request.checkpointing === undefined ? ' (the planner\'s choice)' : ''}, ${request.quant?.type === 'none' ? 'unquantized f32 base' : 'NF4 base'}`);
  io.log(`parameters ${(result.parameters / 1e9).toFixed(3)} B, trainable ${(result.trainableParameters / 1e6).toFixed(2)} M`);
  io.log('peak GPU memory by category (at the peak):');
  for (const c of MEMORY_CATEGORIES) io.log(`  ${c.padEnd(12)} ${fmt(result.byCategory[c]).padStart(12)}`);
  io.log(`  ${'total'.padEnd(12)} ${fmt(result.peakBytes).padStart(12)}`);
  io.log(`largest buffer: ${result.largestBuffer.label} ${fmt(result.largestBuffer.bytes)} (limit ${fmt(result.limits.maxBufferSize)})`);
  io.log(`storage (IndexedDB cache): ${fmt(result.storageBytes)}; download ${fmt(result.downloadBytes)}`);
  io.log(`verdict: ${result.verdict}: ${result.reason}`);
  return {
    exitCode: 0,
    result: {
      ok: true,
      preset: preset.name,
      seq: request.seq,
      batch: request.batch,
      rank: request.rank,
      quantization: request.quant?.type ?? 'nf4',
      checkpointing: result.checkpointing,
      peak_gpu_bytes: result.peakBytes,
      by_category: result.byCategory,
      largest_buffer: result.largestBuffer,
      storage_bytes: result.storageBytes,
      download_bytes: result.downloadBytes,
      verdict: result.verdict,
      reason: result.reason,
    },
  };
};
