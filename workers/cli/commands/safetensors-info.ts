import { SafetensorsError, SafetensorsFile } from '../../formats/safetensors';
import { CliInputError, type CliCommand } from '../io';
import { checkArgs } from '../flags';

const USAGE = 'usage: safetensors-info <file.safetensors>';

/** `safetensors-info <file>`: tensor names, dtypes and shapes. */
export const safetensorsInfo: CliCommand = async (args, io) => {
  checkArgs(args, { usage: USAGE, positional: 1 });
  const path = args.positional[0];
  if (!path) throw new CliInputError(USAGE);
  let file: SafetensorsFile;
  try {
    file = new SafetensorsFile(await io.readFile(path), path);
  } catch (err) {
    if (err instanceof SafetensorsError) throw new CliInputError(err.message);
    throw err;
  }
  const tensors = [...file.header.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.end - t.begin }));
  for (const t of tensors) io.log(`${t.name.padEnd(60)} ${t.dtype.padEnd(5)} [${t.shape.join(', ')}]`);
  return { exitCode: 0, result: { ok: true, file: path, count: tensors.length, metadata: file.header.metadata, tensors } };
};
