import { describe, expect, it } from 'vitest';
import code from '../../shaders/convert.wgsl?raw';
import { widenHalfCpu, widenHalfGpu } from '../../workers/kernels/convert';
import { f32ArrayToBf16, f32ArrayToF16 } from '../../workers/formats/float16';
import { POISON, randn, testGpu } from './helpers';

describe('widen 16-bit floats on the GPU', () => {
  for (const kind of ['f16', 'bf16'] as const) {
    for (const count of [1, 7, 257, 1001]) {
      it(`${kind}, ${count} elements, bit-exact with the CPU reference`, async () => {
        const gpu = await testGpu();
        const values = randn(count, count * 31 + (kind === 'bf16' ? 1 : 0), 3);
        values[0] = -0;
        if (count > 3) values[3] = 65504;
        const halves = kind === 'bf16' ? f32ArrayToBf16(values) : f32ArrayToF16(values);
        const src = gpu.upload(halves, 'scratch');
        const dst = gpu.alloc(count * 4, 'scratch');
        gpu.fill(dst, POISON);
        widenHalfGpu(gpu, code, src, count, kind, 'scratch', dst);
        const got = await gpu.readF32(dst, count);
        const want = widenHalfCpu(halves, kind);
        expect(new Uint32Array(got.buffer)).toEqual(new Uint32Array(want.buffer));
        gpu.release(src, dst);
      });
    }
  }
});
