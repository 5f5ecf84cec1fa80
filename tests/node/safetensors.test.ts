import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { SafetensorsFile, writeSafetensors, SafetensorsError } from '../../workers/formats/safetensors';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../workers/formats/float16';

const FIX = 'tests/fixtures';

function allSafetensors(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? allSafetensors(`${dir}/${e.name}`) : e.name.endsWith('.safetensors') ? [`${dir}/${e.name}`] : [],
  );
}

describe('safetensors reader', () => {
  it('reads every fixture file and every tensor', () => {
    const files = allSafetensors(FIX);
    expect(files.length).toBeGreaterThan(20);
    for (const path of files) {
      const f = new SafetensorsFile(new Uint8Array(readFileSync(path)), path);
      for (const t of f.header.tensors.values()) {
        const raw = f.raw(t.name);
        expect(raw.byteLength).toBe(t.end - t.begin);
        if (['F32', 'F16', 'BF16'].includes(t.dtype)) expect(f.f32(t.name).length).toBe(t.shape.reduce((a, b) => a * b, 1));
      }
    }
  });

  it('widens bf16 and f16 fixture inputs exactly', () => {
    const bf = new SafetensorsFile(new Uint8Array(readFileSync(`${FIX}/bnb-nf4/bf16_input_32x64.safetensors`)));
    expect(bf.info('input').dtype).toBe('BF16');
    const v = bf.f32('input');
    const bits = new Uint16Array(bf.raw('input').buffer);
    for (let i = 0; i < v.length; i++) expect(f32ToBf16Bits(v[i])).toBe(bits[i]);
    const fp = new SafetensorsFile(new Uint8Array(readFileSync(`${FIX}/bnb-nf4/fp16_input_32x64.safetensors`)));
    const h = new Uint16Array(fp.raw('input').buffer);
    const w = fp.f32('input');
    for (let i = 0; i < w.length; i++) expect(f32ToF16Bits(w[i])).toBe(h[i]);
  });

  it('round-trips through the writer with aligned offsets', () => {
    const a = new Float32Array([1, -2, 3.5]);
    const b = new Uint8Array([1, 2, 3]);
    const c = new BigInt64Array([5n, -7n]);
    const bytes = writeSafetensors(
      [
        { name: 'b', dtype: 'U8', shape: [3], data: b },
        { name: 'a', dtype: 'F32', shape: [3], data: a },
        { name: 'c', dtype: 'I64', shape: [2, 1], data: c },
      ],
      { format: 'pt' },
    );
    const f = new SafetensorsFile(bytes);
    expect([...f.f32('a')]).toEqual([1, -2, 3.5]);
    expect([...f.raw('b')]).toEqual([1, 2, 3]);
    expect([...f.ints('c')]).toEqual([5, -7]);
    expect(f.header.metadata.format).toBe('pt');
    for (const t of f.header.tensors.values()) expect((t.begin - f.header.dataStart) % 8 === 0 || t.dtype === 'U8').toBe(true);
    expect(f.header.dataStart % 8).toBe(0);
  });

  it('names the file and tensor when a header lies', () => {
    const good = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [4], data: new Float32Array(4) }]);
    expect(() => new SafetensorsFile(good.slice(0, good.length - 4), 'cut.safetensors')).toThrow(/cut\.safetensors \(tensor "w"\).*beyond the end/);
    const lying = (header: object) => {
      const json = new TextEncoder().encode(JSON.stringify(header));
      const out = new Uint8Array(8 + json.length + 16);
      new DataView(out.buffer).setUint32(0, json.length, true);
      out.set(json, 8);
      return out;
    };
    expect(() => new SafetensorsFile(lying({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }), 'f')).toThrow(/needs 8/);
    expect(() => new SafetensorsFile(lying({ x: { dtype: 'Q4', shape: [2], data_offsets: [0, 4] } }), 'f')).toThrow(/f \(tensor "x"\): unknown dtype "Q4"/);
    expect(() => new SafetensorsFile(lying({ x: { dtype: 'U8', shape: [8], data_offsets: [0, 8] }, y: { dtype: 'U8', shape: [8], data_offsets: [4, 12] } }), 'f')).toThrow(/overlaps/);
    expect(() => new SafetensorsFile(new Uint8Array([255, 255, 255, 255, 255, 255, 0, 0]), 'junk')).toThrow(SafetensorsError);
    expect(() => new SafetensorsFile(new Uint8Array(3), 'tiny')).toThrow(/too short/);
  });

  it('refuses a dtype that is no dtype, even one every object inherits, naming the tensor', () => {
    const header = (h: object | string) => {
      const json = new TextEncoder().encode(typeof h === 'string' ? h : JSON.stringify(h));
      const out = new Uint8Array(8 + json.length + 16);
      new DataView(out.buffer).setUint32(0, json.length, true);
      out.set(json, 8);
      return out;
    };
    for (const dtype of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'f32', '']) {
      const start = performance.now();
      expect(() => new SafetensorsFile(header({ 'model.w': { dtype, shape: [2], data_offsets: [0, 8] } }), 'hostile.safetensors')).toThrow(
        `hostile.safetensors (tensor "model.w"): unknown dtype ${JSON.stringify(dtype)} (known: `,
      );
      expect(performance.now() - start).toBeLessThan(1000);
    }
    // A tensor may be called "__proto__": it is an ordinary name.
    const named = new SafetensorsFile(header('{"__proto__": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}'), 'p');
    expect(named.names).toEqual(['__proto__']);
    expect(() => new SafetensorsFile(header({ __metadata__: { format: { toString: 1 } } }), 'm')).toThrow('m: "__metadata__" entry "format" is {"toString":1}, not a string');
    expect(() => new SafetensorsFile(header({ x: { dtype: 'F64', shape: [2 ** 40, 2 ** 20], data_offsets: [0, 2 ** 63] } }), 'big')).toThrow(/big \(tensor "x"\)/);
  });

  it('converts special half values', () => {
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(2 ** -25)).toBe(0);
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(2);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(f32ToBf16Bits(1.00390625)).toBe(0x3f80); // tie to even
  });
});
