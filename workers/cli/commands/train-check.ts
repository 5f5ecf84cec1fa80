import { Gpu } from '../../gpu/runtime';
import { SHADERS } from '../../kernels/shader-sources';
import { causalLmFactory } from '../../train/hf-train-model';
import { runTrainCheckFolder, TrainCheckInputError, TRAIN_CHECK_TOLERANCE } from '../../train/train-check';
import { CliInputError, joinPath, type CliCommand } from '../io';
import { checkArgs } from '../flags';

const USAGE = 'usage: train-check <folder of the hf-train format>';

/**
 * `train-check <folder>`: trains on an hf-train folder (config.json, model.safetensors,
 * adapter_config.json, adapter_model.safetensors, train.json, batches.safetensors) with the
 * studio's Trainer and compares with expected.safetensors; exit 0 only when every quantity is
 * within 1e-4 relative (token counts, clip decisions and the step count exact).
 */
export const trainCheck: CliCommand = async (args, io) => {
  checkArgs(args, { usage: USAGE, positional: 1 });
  const folder = args.positional[0];
  if (!folder) throw new CliInputError(USAGE);
  if (!(await io.listDir(folder))) throw new CliInputError(`${folder} is not a folder`);
  const read = async (name: string) => {
    const path = joinPath(folder, name);
    if (!(await io.exists(path))) throw new CliInputError(`${path} is missing (an hf-train folder needs config.json, model.safetensors, adapter_config.json, adapter_model.safetensors, train.json, batches.safetensors, expected.safetensors)`);
    return io.readFile(path);
  };
  const gpu = await Gpu.create();
  try {
    io.log(`train-check ${folder} on ${gpu.adapter.vendor} ${gpu.adapter.architecture}`);
    const report = await runTrainCheckFolder({
      gpu,
      folder,
      read,
      createModel: causalLmFactory(SHADERS),
      shaders: SHADERS,
      log: (line) => io.log(line),
      onStep: (s) => io.line({ type: 'step', ...s }),
    }).catch((err: unknown) => {
      throw err instanceof TrainCheckInputError ? new CliInputError(err.message) : err;
    });
    for (const q of report.quantities) io.line({ type: 'quantity', name: q.name, rel: q.rel, ok: q.ok, ...(q.worstTensor ? { worst_tensor: q.worstTensor } : {}) });
    io.log(`${report.ok ? 'PASS' : 'FAIL'}: worst ${report.worst.name} ${report.worst.rel.toExponential(2)} (tolerance ${TRAIN_CHECK_TOLERANCE})`);
    return { exitCode: report.ok ? 0 : 1, result: { ok: report.ok, worst: report.worst } };
  } finally {
    gpu.destroy();
  }
};
