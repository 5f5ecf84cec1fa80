import nf4 from '../../../shaders/nf4.wgsl?raw';
import nf4Matmul from '../../../shaders/nf4-matmul.wgsl?raw';
import { Gpu } from '../../gpu/runtime';
import { checkNf4Folder } from '../../nf4/check';
import { CliInputError, joinPath, type CliCommand } from '../io';

/**
 * `nf4-check <folder> [--cpu-only]`: checks every case file and Linear4bit state dict of a
 * folder in the bnb-nf4 format on the CPU reference and the GPU kernels. One line per file on
 * stderr; exit 0 only if all pass.
 */
export const nf4Check: CliCommand = async (args, io) => {
  const folder = args.positional[0];
  if (!folder) throw new CliInputError('usage: nf4-check <folder of bnb-nf4 cases> [--cpu-only]');
  const entries = await io.listDir(folder);
  if (!entries) throw new CliInputError(`${folder} is not a folder`);
  const gpu = args.flags['cpu-only'] ? null : await Gpu.create();
  try {
    if (gpu) io.log(`GPU: ${gpu.adapter.vendor} ${gpu.adapter.architecture} ${gpu.adapter.description}`.trim());
    const reader = {
      list: async () => entries.filter((e) => !e.isDirectory).map((e) => e.name),
      read: (name: string) => io.readFile(joinPath(folder, name)),
    };
    const summary = await checkNf4Folder(reader, gpu, gpu ? { nf4, nf4Matmul } : null, (r) => {
      const detail = [...r.failures, ...r.notes].join('; ');
      io.log(`${r.ok ? 'PASS' : 'FAIL'} ${r.name}${detail ? ` — ${detail}` : ''}`);
    });
    if (summary.cases === 0) throw new CliInputError(`${folder} holds no bnb-nf4 case files or Linear4bit state dicts`);
    return {
      exitCode: summary.ok ? 0 : 1,
      result: { ok: summary.ok, cases: summary.cases, failed: summary.failed },
    };
  } finally {
    gpu?.destroy();
  }
};
