/**
 * The GPU argmax that greedy decoding uses, against its CPU reference: awkward vocabulary sizes
 * (below, at and across the workgroup width, and phi-1_5's and falcon-7b's), ties, NaN, ±0,
 * ±Infinity, offsets into the logits and the output.
 */
import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { argmax, argmaxCpu, argmaxRow } from '../../workers/kernels/argmax';
import { POISON, randn, rng, testGpu } from './helpers';

async function gpuArgmax(values: Float32Array, rows: number, vocab: number, offsets: { logits?: number; out?: number } = {}): Promise<number[]> {
  const gpu = await testGpu();
  const lo = offsets.logits ?? 0;
  const oo = offsets.out ?? 0;
  const padded = new Float32Array(lo + values.length);
  padded.set(values, lo);
  const logits = gpu.upload(padded, 'scratch');
  const out = gpu.alloc((oo + rows + 1) * 4, 'scratch');
  gpu.fill(out, POISON);
  argmax(gpu, SHADERS.argmax, { logits, out, rows, vocab, logitsOffset: lo, outOffset: oo });
  const got = await gpu.readU32(out, oo + rows + 1);
  gpu.release(logits, out);
  // Nothing outside [outOffset, outOffset + rows) is written.
  for (let i = 0; i < got.length; i++) if (i < oo || i >= oo + rows) expect(got[i]).toBe(POISON);
  return Array.from(got.subarray(oo, oo + rows));
}

describe('argmax kernel', () => {
  it('random rows of awkward vocabulary sizes, with repeated values, match the CPU reference', async () => {
    for (const [rows, vocab, seed] of [
      [1, 1, 1],
      [3, 7, 2],
      [2, 255, 3],
      [2, 257, 4],
      [5, 1000, 5],
      [1, 51200, 6],
      [2, 65024, 7],
      [1, 70001, 8],
    ]) {
      // Rounded to 1/4, so ties between the largest values are common.
      const values = randn(rows * vocab, seed, 3).map((v) => Math.round(v * 4) / 4);
      const r = rng(seed + 100);
      // Plant ties of each row's maximum at two random places after the first maximum.
      for (let row = 0; row < rows; row++) {
        const base = row * vocab;
        const first = argmaxRow(values, base, vocab);
        for (let t = 0; t < 2; t++) {
          const at = first + Math.floor(r() * (vocab - first));
          values[base + at] = values[base + first];
        }
      }
      const want = Array.from(argmaxCpu(values, rows, vocab));
      expect(await gpuArgmax(values, rows, vocab), `rows ${rows}, vocab ${vocab}`).toEqual(want);
    }
  });

  it('ties go to the first index wherever the maxima sit across invocations', async () => {
    const vocab = 777;
    // Maxima at ids that different invocations of the 256-wide workgroup read: the lowest id wins.
    for (const ids of [[776, 520, 300], [5, 261], [0, 776], [255, 256]]) {
      const values = randn(vocab, 11).map((v) => Math.min(v, 3));
      for (const id of ids) values[id] = 10;
      expect(await gpuArgmax(values, 1, vocab)).toEqual([Math.min(...ids)]);
      expect(argmaxRow(values)).toBe(Math.min(...ids));
    }
  });

  it('NaN counts as the largest value (the first NaN wins), -0 equals +0, infinities order as numbers', async () => {
    const cases: { values: number[]; want: number }[] = [
      { values: [1, 2, NaN, 5, NaN, 9], want: 2 },
      { values: [NaN, 1, 2], want: 0 },
      { values: [1, Infinity, NaN], want: 2 },
      { values: [-0, 0, -1], want: 0 },
      { values: [-1, 0, -0], want: 1 },
      { values: [-Infinity, -Infinity, -Infinity], want: 0 },
      { values: [-Infinity, -3e38, -Infinity], want: 1 },
      { values: [3e38, Infinity, Infinity], want: 1 },
      { values: [-1e-45, 1e-45, 0], want: 1 },
    ];
    for (const { values, want } of cases) {
      const f = Float32Array.from(values);
      expect(argmaxRow(f), `cpu ${values}`).toBe(want);
      expect(await gpuArgmax(f, 1, f.length), `gpu ${values}`).toEqual([want]);
    }
    // A NaN with a payload and the sign bit set (not the canonical quiet NaN) is NaN as well.
    const odd = new Float32Array(300).fill(1);
    new Uint32Array(odd.buffer)[299] = 0xffc00123;
    new Uint32Array(odd.buffer)[280] = 0x7f800001;
    expect(argmaxRow(odd)).toBe(280);
    expect(await gpuArgmax(odd, 1, 300)).toEqual([280]);
  });

  it('reads from an offset into the logits and writes at an offset into the output', async () => {
    const [rows, vocab] = [3, 301];
    const values = randn(rows * vocab, 21);
    expect(await gpuArgmax(values, rows, vocab, { logits: 13, out: 2 })).toEqual(Array.from(argmaxCpu(values, rows, vocab)));
  });

  it('rejects an empty vocabulary', async () => {
    const gpu = await testGpu();
    expect(() => argmax(gpu, SHADERS.argmax, { logits: gpu.dummy, out: gpu.dummy, rows: 1, vocab: 0 })).toThrow(/vocabulary size 0/);
  });
});
