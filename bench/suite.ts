/**
 * What every benchmark suite shares: its context, the result record written under
 * bench/results/, and the timing rule (warm-up, then the median of N runs, timed with GPU
 * timestamps where the adapter has them and with onSubmittedWorkDone wall time otherwise).
 */
import type { Gpu } from '../workers/gpu/runtime';
import type { CliIo } from '../workers/cli/io';

/** A software adapter (SwiftShader): its numbers are CPU emulation, not GPU performance. */
export { isEmulated } from '../workers/gpu/device';
import type { AdapterDescription } from '../workers/gpu/device';

export type BenchSize = 'smoke' | 'cpu' | 'full';
export type BenchRuntime = 'browser' | 'node';
/** cpu-clock: performance.now() around work that runs on the CPU alone. */
export type TimingMethod = 'timestamp-query' | 'submitted-work-done' | 'cpu-clock';

export interface BenchContext {
  gpu: Gpu;
  io: CliIo;
  size: BenchSize;
  runtime: BenchRuntime;
  /** Extra command-line flags (e.g. --peak-tflops, --runs). */
  flags: Record<string, string | true>;
}

export interface Timing {
  method: TimingMethod;
  /** Median seconds of the measured runs. */
  median: number;
  min: number;
  max: number;
  runs: number;
}

export interface BenchRow {
  /** What was measured, e.g. "nf4 fused 2048x2048 M=512". */
  name: string;
  shape: Record<string, number | string>;
  timing: Timing;
  /** Derived rates: gflops, gbs, tokens_per_s, bytes, … */
  metrics: Record<string, number>;
}

export interface BenchReport {
  suite: string;
  runtime: BenchRuntime;
  size: BenchSize;
  adapter: AdapterDescription;
  /** True on a software adapter (SwiftShader): numbers are CPU emulation, not GPU performance. */
  emulated: boolean;
  started: string;
  rows: BenchRow[];
  /** The comparisons that matter, measured in this one run (e.g. nf4_vs_f32). */
  ratios: Record<string, number>;
  notes: string[];
}

export interface BenchSuite {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<Pick<BenchReport, 'rows' | 'ratios' | 'notes'>>;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** A Timing from its samples (seconds). */
export function timingOf(method: Timing['method'], samples: number[]): Timing {
  return { method, median: median(samples), min: Math.min(...samples), max: Math.max(...samples), runs: samples.length };
}

export const geomean = (xs: number[]) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

/**
 * GPU time by dispatch label of one run of `work` (timestamps; null without them), largest
 * first: where a step's time goes.
 */
export async function profileGpu(gpu: Gpu, work: () => void | Promise<void>): Promise<[string, number][] | null> {
  if (!gpu.hasTimestamps) return null;
  await gpu.done();
  gpu.beginTiming();
  await work();
  const { byLabel } = await gpu.endTiming();
  return [...byLabel].map(([label, ns]) => [label, ns / 1e9] as [string, number]).sort((a, b) => b[1] - a[1]);
}

/**
 * Times `work` (which records GPU dispatches): `warmup` untimed runs, then `runs` timed ones.
 * `work` may be async (e.g. decoding reads tokens back); with timestamps only GPU pass time counts.
 */
export async function timeGpu(gpu: Gpu, work: () => void | Promise<void>, opts: { warmup?: number; runs?: number; wallClock?: boolean } = {}): Promise<Timing> {
  const warmup = opts.warmup ?? 2;
  const runs = opts.runs ?? 5;
  for (let i = 0; i < warmup; i++) {
    await work();
    await gpu.done();
  }
  const useTimestamps = gpu.hasTimestamps && !opts.wallClock;
  const samples: number[] = [];
  const method: TimingMethod = useTimestamps ? 'timestamp-query' : 'submitted-work-done';
  for (let i = 0; i < runs; i++) {
    if (useTimestamps) {
      gpu.beginTiming();
      await work();
      samples.push((await gpu.endTiming()).ns / 1e9);
    } else {
      await gpu.done();
      const t0 = performance.now();
      await work();
      await gpu.done();
      samples.push((performance.now() - t0) / 1000);
    }
  }
  return timingOf(method, samples);
}

/** Fraction of a card's peak, when the user passes --peak-tflops / --peak-gbs. */
export function peakFractions(flags: Record<string, string | true>, gflops?: number, gbs?: number): Record<string, number> {
  const out: Record<string, number> = {};
  const tflops = Number(flags['peak-tflops']);
  const peakGbs = Number(flags['peak-gbs']);
  if (gflops !== undefined && tflops > 0) out.fraction_of_peak_flops = gflops / (tflops * 1000);
  if (gbs !== undefined && peakGbs > 0) out.fraction_of_peak_bandwidth = gbs / peakGbs;
  return out;
}
