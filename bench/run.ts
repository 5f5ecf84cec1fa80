/** Runs one suite, checks its numbers, and writes the result JSON under bench/results/. */
import type { Gpu } from '../workers/gpu/runtime';
import type { CliIo, CliResult } from '../workers/cli/io';
import { CliInputError } from '../workers/cli/io';
import type { ArgSpec } from '../workers/cli/flags';
import { SUITES } from './suites';
import { ownEntry } from '../workers/util/own';
import { isEmulated, type BenchReport, type BenchRuntime, type BenchSize } from './suite';

const SIZES: BenchSize[] = ['smoke', 'cpu', 'full'];

const USAGE = `usage: bench <suite> [--size smoke|cpu|full] [--runs N] [--layers N] [--peak-tflops X] [--peak-gbs Y] [--results DIR]; suites: ${Object.keys(SUITES).sort().join(', ') || '(none)'}`;

/** What the bench runner and its suites read: the suite, then --runs and --layers (train-step, decode), the card's peaks and the results folder. */
export const BENCH_ARGS: ArgSpec = { usage: USAGE, values: ['size', 'runs', 'layers', 'peak-tflops', 'peak-gbs', 'results'], positional: 1 };

/** Every number in a report must be finite, and timings and rates positive. */
export function validateReport(report: BenchReport): string[] {
  const problems: string[] = [];
  if (!report.rows.length) problems.push('no rows');
  for (const row of report.rows) {
    const t = row.timing;
    for (const [k, v] of Object.entries({ median: t.median, min: t.min, max: t.max })) {
      if (!Number.isFinite(v) || v <= 0) problems.push(`${row.name}: timing.${k} = ${v}`);
    }
    for (const [k, v] of Object.entries(row.metrics)) if (!Number.isFinite(v) || v < 0) problems.push(`${row.name}: ${k} = ${v}`);
  }
  for (const [k, v] of Object.entries(report.ratios)) if (!Number.isFinite(v) || v <= 0) problems.push(`ratio ${k} = ${v}`);
  return problems;
}

export async function runBench(
  gpu: Gpu,
  io: CliIo,
  suiteName: string | undefined,
  flags: Record<string, string | true>,
  runtime: BenchRuntime,
  resultsDir: string,
): Promise<CliResult> {
  const suite = ownEntry(SUITES, suiteName);
  if (!suite) throw new CliInputError(USAGE);
  const size = (typeof flags.size === 'string' ? flags.size : 'cpu') as BenchSize;
  if (!SIZES.includes(size)) throw new CliInputError(`--size must be one of ${SIZES.join(', ')}`);
  const started = new Date().toISOString();
  io.log(`bench ${suite.name} (${size}, ${runtime}) on ${gpu.adapter.vendor} ${gpu.adapter.architecture}${isEmulated(gpu.adapter) ? ' — software emulation, not GPU performance' : ''}`);
  const body = await suite.run({ gpu, io, size, runtime, flags });
  const report: BenchReport = {
    suite: suite.name,
    runtime,
    size,
    adapter: gpu.adapter,
    emulated: isEmulated(gpu.adapter),
    started,
    ...body,
  };
  const problems = validateReport(report);
  const stamp = started.replace(/[:.]/g, '-');
  const file = `${resultsDir.replace(/\/$/, '')}/${suite.name}-${runtime}-${size}-${stamp}.json`;
  await io.writeFile(file, JSON.stringify(report, null, 2) + '\n');
  io.log(`wrote ${file}`);
  if (problems.length) {
    for (const p of problems) io.log(`invalid number: ${p}`);
    return { exitCode: 1, result: { ok: false, suite: suite.name, file, problems } };
  }
  return { exitCode: 0, result: { ok: true, suite: suite.name, runtime, size, file, ratios: report.ratios, rows: report.rows.length } };
}
