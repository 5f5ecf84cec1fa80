/**
 * The bnb-nf4 fixture format (tests/fixtures/bnb-nf4/README.md): which files are quantisation
 * cases, which are Linear4bit state dicts, and small helpers for comparing float32 results.
 */
import type { SafetensorsFile } from '../formats/safetensors';
import type { Nf4Dtype } from './reference';

export type FixtureKind = 'case' | 'state-dict' | 'expected' | 'other';

/** Classifies a file name of a bnb-nf4 folder. */
export function fixtureKind(name: string): FixtureKind {
  if (!name.endsWith('.safetensors')) return 'other';
  if (name === 'tables.safetensors') return 'other';
  if (name.endsWith('.expected.safetensors')) return 'expected';
  if (name.endsWith('_state_dict.safetensors')) return 'state-dict';
  return 'case';
}

export const isCaseFile = (name: string): boolean => fixtureKind(name) === 'case';
export const isStateDictFile = (name: string): boolean => fixtureKind(name) === 'state-dict';
export const companionOf = (stateDictName: string): string => stateDictName.replace(/\.safetensors$/, '.expected.safetensors');

/** The dtype of a case's `input` tensor (dequantised outputs come back in it). */
export function caseDtype(file: SafetensorsFile): Nf4Dtype {
  const d = file.info('input').dtype;
  if (d === 'F32') return 'float32';
  if (d === 'BF16') return 'bfloat16';
  if (d === 'F16') return 'float16';
  throw new Error(`${file.file}: tensor "input" has dtype ${d}; expected F32, BF16 or F16`);
}

const scratch = new Float32Array(2);
const scratchBits = new Int32Array(scratch.buffer);

/** Distance in float32 ulps (ordered bit patterns), 0 for equal values, Infinity if either is NaN. */
export function f32Ulps(a: number, b: number): number {
  scratch[0] = a;
  scratch[1] = b;
  if (Number.isNaN(scratch[0]) || Number.isNaN(scratch[1])) return Infinity;
  const ord = (x: number) => (x < 0 ? -2147483648 - x : x);
  return Math.abs(ord(scratchBits[0]) - ord(scratchBits[1]));
}
