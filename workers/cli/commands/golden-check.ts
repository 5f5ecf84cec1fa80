import { Gpu } from '../../gpu/runtime';
import { GOLDEN_TOLERANCE, runGoldenCheck } from '../../model/golden';
import { SHADERS } from '../../kernels/shader-sources';
import { CliInputError, type CliCommand } from '../io';
import { checkArgs, type ArgSpec } from '../flags';

const USAGE = 'usage: golden-check <folder> [--nf4]';
const ARGS: ArgSpec = { usage: USAGE, switches: ['nf4'], positional: 1 };

/**
 * `golden-check <folder> [--nf4]`: the engine against Hugging Face reference numbers (hf-golden
 * format). One stdout line per tensor, then {"ok","worst","tokens_equal"}; exit 0 only if every
 * tensor is within 1e-5 relative and the greedy tokens are identical. With --nf4 the base linear
 * layers are quantized: the deviation from the golden numbers is reported, and the pass/fail
 * compares against the exact engine run on the dequantized weights.
 */
export const goldenCheck: CliCommand = async (args, io) => {
  checkArgs(args, ARGS);
  const folder = args.positional[0];
  if (!folder) throw new CliInputError(USAGE);
  if ((await io.listDir(folder)) === null) throw new CliInputError(`${folder} is not a folder`);
  const nf4 = args.flags.nf4 === true;
  const gpu = await Gpu.create();
  try {
    const read = async (path: string) => ((await io.exists(path)) ? io.readFile(path) : null);
    let report;
    try {
      report = await runGoldenCheck(gpu, SHADERS, folder, read, { nf4, log: io.log });
    } catch (err) {
      const name = (err as Error).name;
      if (['ConfigError', 'AdapterError', 'WeightError', 'ModelInputError', 'SafetensorsError'].includes(name)) throw new CliInputError((err as Error).message);
      throw err;
    }
    const against = nf4 ? 'exact engine on dequantized weights' : 'golden';
    for (const t of report.tensors) {
      io.log(`${t.rel <= GOLDEN_TOLERANCE ? 'ok  ' : 'FAIL'} ${t.name}  rel ${t.rel.toExponential(3)} (vs ${against})`);
      io.line({ tensor: t.name, rel: t.rel, max_abs_diff: t.maxAbsDiff, against });
    }
    if (report.nf4) {
      for (const t of report.nf4.golden_tensors) io.log(`nf4 vs golden: ${t.name}  rel ${t.rel.toExponential(3)}`);
      io.log(`nf4 vs golden: worst ${report.nf4.golden_worst.name} ${report.nf4.golden_worst.rel.toExponential(3)}, tokens equal: ${report.nf4.golden_tokens_equal}`);
    }
    io.log(`tokens equal: ${report.tokens_equal}; worst ${report.worst.name} ${report.worst.rel.toExponential(3)}`);
    const result: Record<string, unknown> = { ok: report.ok, worst: report.worst, tokens_equal: report.tokens_equal };
    if (report.nf4) result.nf4_vs_golden = { worst: report.nf4.golden_worst, tokens_equal: report.nf4.golden_tokens_equal };
    return { exitCode: report.ok ? 0 : 1, result };
  } finally {
    gpu.destroy();
  }
};
