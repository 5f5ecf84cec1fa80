import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { SafetensorsFile, writeSafetensors } from '../../workers/formats/safetensors';
import { linear4bitPrefixes, linear4bitTensors, pythonFloatRepr, quantStateJson, readLinear4bit } from '../../workers/nf4/state-dict';
import { castToDtype, dequantizeNF4, quantizeNF4 } from '../../workers/nf4/reference';
import { nf4LinearCpu } from '../../workers/kernels/nf4-matmul';
import { companionOf, isStateDictFile } from '../../workers/nf4/fixture-case';

const DIR = 'tests/fixtures/bnb-nf4';
const read = (name: string) => new Uint8Array(readFileSync(`${DIR}/${name}`));
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const manifest = JSON.parse(readFileSync(`${DIR}/manifest.json`, 'utf8')) as { linear4bit: { file: string; quant_state_json: string }[] };

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let r = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    r = Math.max(r, Math.abs(b[i]));
  }
  return d / r;
}

const files = readdirSync(DIR).filter(isStateDictFile).sort();

describe('Python float repr', () => {
  it.each([
    [0.05206925794482231, '0.05206925794482231'],
    [0, '0.0'],
    [1, '1.0'],
    [100, '100.0'],
    [1e-5, '1e-05'],
    [1.5e-5, '1.5e-05'],
    [0.0001, '0.0001'],
    [1e16, '1e+16'],
    [123456789012345.6, '123456789012345.6'],
    [Math.fround(1e-38), '9.999999350456404e-39'],
    [-2.5, '-2.5'],
  ])('%s', (v, want) => expect(pythonFloatRepr(v)).toBe(want));
});

describe('Linear4bit state dicts', () => {
  it('finds the three fixture state dicts', () => expect(files.length).toBe(3));

  for (const name of files) {
    describe(name, () => {
      const bytes = read(name);
      const file = new SafetensorsFile(bytes, name);
      const [prefix] = linear4bitPrefixes(file);
      const state = readLinear4bit(file, prefix);
      const expected = new SafetensorsFile(read(companionOf(name)), companionOf(name));

      it('quant state JSON is byte-identical and matches the manifest', () => {
        const stored = new TextDecoder().decode(file.raw(`${prefix}weight.quant_state.bitsandbytes__nf4`));
        expect(quantStateJson(state.quant, state.dtype)).toBe(stored);
        expect(manifest.linear4bit.find((e) => e.file === name)?.quant_state_json).toBe(stored);
      });

      it('writes back the same tensors and the same file bytes', () => {
        const tensors = linear4bitTensors(state);
        expect(tensors.map((t) => t.name).sort()).toEqual([...file.names].sort());
        for (const t of tensors) {
          expect(t.dtype, t.name).toBe(file.info(t.name).dtype);
          expect(t.shape, t.name).toEqual(file.info(t.name).shape);
          expect(bytesOf(t.data), t.name).toEqual(file.raw(t.name));
        }
        expect(writeSafetensors(tensors, file.header.metadata)).toEqual(bytes);
      });

      it('dequantises to the stored dequant_weight bit for bit', () => {
        const got = castToDtype(dequantizeNF4(state.quant), state.dtype);
        expect(bytesOf(got)).toEqual(expected.raw('dequant_weight'));
      });

      it('requantising input_weight reproduces the stored codes and absmax', () => {
        const w = expected.f32('input_weight');
        const q = quantizeNF4(w, state.quant.shape, { doubleQuant: !!state.quant.nested, offset: state.quant.nested?.offset });
        expect(q.packed).toEqual(state.quant.packed);
        if (state.quant.nested) {
          expect(q.nested!.qabsmax).toEqual(state.quant.nested.qabsmax);
          expect(q.nested!.nestedAbsmax).toEqual(state.quant.nested.nestedAbsmax);
        } else {
          expect(q.absmax).toEqual(state.quant.absmax);
        }
      });

      it('layer output y = x·Wᵀ + b matches within tolerance', () => {
        const x = expected.f32('x');
        const M = expected.info('x').shape[0];
        const y = nf4LinearCpu(state.quant).forward(x, M, expected.f32('input_bias'));
        // bitsandbytes computes in the layer dtype: float32 results agree to rounding, bf16 to its 8-bit mantissa.
        const tol = state.dtype === 'float32' ? 1e-5 : 1e-2;
        expect(relErr(y, expected.f32('y'))).toBeLessThan(tol);
      });
    });
  }
});
