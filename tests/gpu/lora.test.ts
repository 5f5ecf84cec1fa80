import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import {
  dropoutGpu,
  dropoutMaskCpu,
  loraBackward,
  loraBackwardCpu,
  loraForward,
  loraForwardCpu,
  loraScale,
  type LoraDims,
} from '../../workers/kernels/lora';
import { POISON, randn, relErr, testGpu } from './helpers';


const shapes: [number, number, number, number][] = [
  [5, 37, 23, 3],
  [17, 70, 33, 8],
];

describe('LoRA dropout mask', () => {
  it('GPU mask equals the CPU mask and drops about p', async () => {
    const gpu = await testGpu();
    const count = 10007;
    const d = { p: 0.3, seed: 1234, step: 7, layer: 5 };
    const ones = gpu.upload(new Float32Array(count).fill(1), 'scratch');
    const out = gpu.alloc(count * 4, 'scratch');
    gpu.fill(out, POISON);
    dropoutGpu(gpu, SHADERS.lora, ones, out, count, d, false);
    const got = await gpu.readF32(out, count);
    const want = dropoutMaskCpu(count, d);
    expect(got).toEqual(want);
    const dropped = want.filter((v) => v === 0).length / count;
    expect(Math.abs(dropped - 0.3)).toBeLessThan(0.02);
    expect(want.find((v) => v !== 0)).toBe(Math.fround(1 / 0.7));
    // Another step or layer gives another mask.
    const other = dropoutMaskCpu(count, { ...d, step: 8 });
    const same = other.filter((v, i) => v === want[i]).length / count;
    expect(same).toBeLessThan(0.7);
    expect(dropoutMaskCpu(count, { ...d, layer: 6 })).not.toEqual(want);
    gpu.release(ones, out);
  });
});

describe('LoRA forward/backward vs CPU reference', () => {
  for (const [M, inF, outF, r] of shapes) {
    for (const p of [0, 0.25]) {
      it(`M=${M} in=${inF} out=${outF} r=${r} dropout=${p}`, async () => {
        const gpu = await testGpu();
        const seed = M * 1000 + inF + r;
        const s: LoraDims = { M, inF, outF, r, scale: loraScale(16, r), dropout: p ? { p, seed: 99, step: 3, layer: 2 } : null };
        const x = randn(M * inF, seed);
        const a = randn(r * inF, seed + 1, 0.1);
        const b = randn(outF * r, seed + 2, 0.1);
        const y0 = randn(M * outF, seed + 3);
        const dy = randn(M * outF, seed + 4);
        const dA0 = randn(r * inF, seed + 5, 0.01);
        const dB0 = randn(outF * r, seed + 6, 0.01);
        const dx0 = randn(M * inF, seed + 7, 0.01);
        const [xg, ag, bg, yg, dyg, dAg, dBg, dxg] = [x, a, b, y0, dy, dA0, dB0, dx0].map((v) => gpu.upload(v, 'scratch'));
        const hg = gpu.alloc(M * r * 4, 'scratch');
        gpu.fill(hg, POISON);
        loraForward(gpu, SHADERS, { ...s, x: xg, a: ag, b: bg, y: yg, h: hg });
        const y = Float32Array.from(y0);
        loraForwardCpu(x, a, b, y, s);
        expect(relErr(await gpu.readF32(yg, M * outF), y)).toBeLessThan(1e-5);

        // Backward twice (kept h, then recomputed h): gradients add up.
        loraBackward(gpu, SHADERS, { ...s, x: xg, a: ag, b: bg, dy: dyg, dA: dAg, dB: dBg, dx: dxg, h: hg });
        loraBackward(gpu, SHADERS, { ...s, x: xg, a: ag, b: bg, dy: dyg, dA: dAg, dB: dBg, dx: dxg });
        const [dA, dB, dx] = [Float32Array.from(dA0), Float32Array.from(dB0), Float32Array.from(dx0)];
        loraBackwardCpu(x, a, b, dy, dA, dB, dx, s);
        loraBackwardCpu(x, a, b, dy, dA, dB, dx, s);
        expect(relErr(await gpu.readF32(dAg, r * inF), dA)).toBeLessThan(1e-5);
        expect(relErr(await gpu.readF32(dBg, outF * r), dB)).toBeLessThan(1e-5);
        expect(relErr(await gpu.readF32(dxg, M * inF), dx)).toBeLessThan(1e-5);
        gpu.release(xg, ag, bg, yg, dyg, dAg, dBg, dxg, hg);
      });
    }
  }
});

describe('LoRA gradients vs finite differences (float64 CPU reference)', () => {
  for (const p of [0, 0.4]) {
    it(`loss = sum(y·G), dropout=${p}, rsLoRA`, () => {
      const [M, inF, outF, r] = [3, 11, 7, 4];
      const s: LoraDims = { M, inF, outF, r, scale: loraScale(8, r, true), dropout: p ? { p, seed: 5, step: 1, layer: 9 } : null };
      const f64 = (v: Float32Array) => Float64Array.from(v);
      const x = f64(randn(M * inF, 1));
      const a = f64(randn(r * inF, 2, 0.5));
      const b = f64(randn(outF * r, 3, 0.5));
      const g = f64(randn(M * outF, 4));
      const loss = () => {
        const y = new Float64Array(M * outF);
        loraForwardCpu(x, a, b, y, s);
        return y.reduce((acc, v, i) => acc + v * g[i], 0);
      };
      const dA = new Float64Array(r * inF);
      const dB = new Float64Array(outF * r);
      const dx = new Float64Array(M * inF);
      loraBackwardCpu(x, a, b, g, dA, dB, dx, s);
      const eps = 1e-6;
      for (const [param, grad] of [[a, dA], [b, dB], [x, dx]] as const) {
        const fd = new Float64Array(param.length);
        for (let i = 0; i < param.length; i++) {
          const keep = param[i];
          param[i] = keep + eps;
          const up = loss();
          param[i] = keep - eps;
          const down = loss();
          param[i] = keep;
          fd[i] = (up - down) / (2 * eps);
        }
        expect(relErr(grad, fd)).toBeLessThan(1e-6);
      }
    });
  }
});
