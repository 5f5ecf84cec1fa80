import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { embedding, embeddingCpu, type TableFormat } from '../../workers/kernels/embedding';
import { f32ArrayToBf16, f32ArrayToF16, bf16ArrayToF32, f16ArrayToF32 } from '../../workers/formats/float16';
import { POISON, randn, testGpu } from './helpers';

describe('embedding gather', () => {
  for (const format of ['f32', 'f16', 'bf16'] as TableFormat[]) {
    it(`${format} table, odd hidden size`, async () => {
      const gpu = await testGpu();
      const [vocab, hidden, rows] = [37, 13, 19];
      const table = randn(vocab * hidden, 5);
      const ids = Int32Array.from({ length: rows }, (_, i) => (i * 11 + 3) % vocab);
      let stored: ArrayBufferView;
      let values: Float32Array;
      if (format === 'f32') [stored, values] = [table, table];
      else if (format === 'f16') [stored, values] = [f32ArrayToF16(table), f16ArrayToF32(f32ArrayToF16(table))];
      else [stored, values] = [f32ArrayToBf16(table), bf16ArrayToF32(f32ArrayToBf16(table))];
      const tb = gpu.upload(stored, 'scratch');
      const ib = gpu.upload(ids, 'scratch');
      const out = gpu.alloc(rows * hidden * 4, 'scratch');
      gpu.fill(out, POISON);
      embedding(gpu, SHADERS.embedding, { ids: ib, table: tb, out, rows, hidden, vocab, format });
      expect(Array.from(await gpu.readF32(out, rows * hidden))).toEqual(Array.from(embeddingCpu(ids, values, hidden, vocab)));
      gpu.release(tb, ib, out);
    });
  }
});
