import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { DYNAMIC_MAP, DYNAMIC_MIDPOINTS, NF4_CODE, NF4_MIDPOINTS } from '../../workers/nf4/tables';
import {
  castToDtype,
  dequantizeNF4,
  meanOffset,
  nf4Codes,
  quantizeNF4,
  quantizeNested,
  restoreAbsmax,
  unpackCodes,
} from '../../workers/nf4/reference';
import { f32Ulps, isCaseFile, caseDtype } from '../../workers/nf4/fixture-case';

const DIR = 'tests/fixtures/bnb-nf4';
const load = (name: string) => new SafetensorsFile(new Uint8Array(readFileSync(`${DIR}/${name}`)), name);

const bits = (a: ArrayBufferView) => new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Index of the first differing element, or -1: clearer failures than comparing whole arrays. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const caseFiles = readdirSync(DIR).filter(isCaseFile).sort();

describe('NF4 tables', () => {
  it('equal bitsandbytes tables bit for bit', () => {
    const t = load('tables.safetensors');
    expect(firstDiff(bits(NF4_CODE), bits(t.f32('nf4_code')))).toBe(-1);
    expect(firstDiff(bits(NF4_MIDPOINTS), bits(t.f32('nf4_midpoints')))).toBe(-1);
    expect(firstDiff(bits(DYNAMIC_MAP), bits(t.f32('dynamic_map')))).toBe(-1);
    expect(firstDiff(bits(DYNAMIC_MIDPOINTS), bits(t.f32('dynamic_midpoints')))).toBe(-1);
  });
});

describe('NF4 CPU reference vs bitsandbytes fixtures', () => {
  it('finds the case files', () => {
    expect(caseFiles.length).toBeGreaterThanOrEqual(15);
  });

  for (const name of caseFiles) {
    describe(name, () => {
      const f = load(name);
      const input = f.f32('input');
      const shape = f.info('input').shape;
      const dtype = caseDtype(f);

      it('codes, packed bytes and absmax', () => {
        const { codes, absmax } = nf4Codes(input);
        expect(firstDiff(codes, f.raw('codes'))).toBe(-1);
        expect(firstDiff(bits(absmax), bits(f.f32('absmax')))).toBe(-1);
        const q = quantizeNF4(input, shape, { doubleQuant: false });
        expect(firstDiff(q.packed, f.raw('packed'))).toBe(-1);
        expect(firstDiff(unpackCodes(q.packed, input.length), codes)).toBe(-1);
      });

      it('plain dequant', () => {
        const q = quantizeNF4(input, shape, { doubleQuant: false });
        const out = castToDtype(dequantizeNF4(q), dtype);
        expect(firstDiff(bytesOf(out), f.raw('dequant'))).toBe(-1);
      });

      it('offset within 2 ulp', () => {
        const offset = meanOffset(f.f32('absmax'));
        expect(f32Ulps(offset, f.f32('dq.offset')[0])).toBeLessThanOrEqual(2);
      });

      it('nested codes, nested absmax, restored absmax and dq dequant from the stored offset', () => {
        const offset = f.f32('dq.offset')[0];
        const absmax = f.f32('absmax');
        const nested = quantizeNested(absmax, offset);
        // The nested quantiser's input is absmax - offset; check that step on its own too.
        const centred = Float32Array.from(absmax, (a) => Math.fround(a - offset));
        expect(firstDiff(bits(centred), bits(f.f32('dq.absmax_minus_offset')))).toBe(-1);
        expect(firstDiff(nested.qabsmax, f.raw('dq.qabsmax'))).toBe(-1);
        expect(firstDiff(bits(nested.nestedAbsmax), bits(f.f32('dq.nested_absmax')))).toBe(-1);
        expect(firstDiff(bits(restoreAbsmax(nested)), bits(f.f32('dq.absmax_dequant')))).toBe(-1);
        const q = quantizeNF4(input, shape, { doubleQuant: true, offset });
        expect(firstDiff(q.packed, f.raw('packed'))).toBe(-1);
        const out = castToDtype(dequantizeNF4(q), dtype);
        expect(firstDiff(bytesOf(out), f.raw('dq.dequant'))).toBe(-1);
      });
    });
  }
});
