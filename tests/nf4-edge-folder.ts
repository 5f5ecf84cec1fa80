/**
 * A small folder in the bnb-nf4 fixture format for two things the format allows that the
 * bitsandbytes fixtures do not show: an all-zero block whose double-quantised absmax' is a
 * negative subnormal, and a Linear4bit `.expected` file without the forward (`x`, `y`). Built
 * with the project's own CPU reference and safetensors writer (workers/nf4/generate.ts), so it
 * checks the checker and the GPU against the CPU reference, not against bitsandbytes.
 */
import { layerFiles, subnormalAbsmaxCase } from '../workers/nf4/generate';

export const SUBNORMAL_CASE = 'gen_subnormal_absmax_3x64.safetensors';
export const NO_FORWARD_STATE_DICT = 'gen_linear4bit_noforward_state_dict.safetensors';

export function nf4EdgeFolder(): Map<string, Uint8Array> {
  const { stateDict, expected } = layerFiles({
    name: 'gen_linear4bit_noforward',
    prefix: 'model.layers.0.mlp.fc1.',
    inFeatures: 72,
    outFeatures: 40,
    dtype: 'float32',
    doubleQuant: true,
    seed: 5,
    forward: false,
  });
  return new Map([
    [SUBNORMAL_CASE, subnormalAbsmaxCase()],
    [NO_FORWARD_STATE_DICT, stateDict],
    [NO_FORWARD_STATE_DICT.replace(/\.safetensors$/, '.expected.safetensors'), expected],
  ]);
}

export function folderReader(files: Map<string, Uint8Array>) {
  return {
    list: async () => [...files.keys()],
    read: async (name: string) => {
      const bytes = files.get(name);
      if (!bytes) throw new Error(`${name}: not in the folder`);
      return bytes;
    },
  };
}
