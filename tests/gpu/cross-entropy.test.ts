import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { crossEntropy, crossEntropyCpu, shiftLabels } from '../../workers/kernels/cross-entropy';
import { POISON, randn, relErr, testGpu } from './helpers';
import { finiteDiff, pick, someCoords } from './fd';

describe('chunked cross-entropy', () => {
  it('shiftLabels scores position t against label t+1 within each row', () => {
    const labels = Int32Array.from([-100, 5, 6, -100, 7, 8]);
    const { targets, count } = shiftLabels(labels, 2, 3);
    expect(Array.from(targets)).toEqual([5, 6, -100, 7, 8, -100]);
    expect(count).toBe(4);
  });

  it('per-row loss and gradient over two chunks of a 1000-word vocabulary, with ignored rows', async () => {
    const gpu = await testGpu();
    const [rows, vocab, chunk] = [9, 1000, 5];
    const logits = randn(rows * vocab, 7, 3);
    const targets = Int32Array.from({ length: rows }, (_, i) => (i % 4 === 2 ? -100 : (i * 389) % vocab));
    const gradScale = 0.37;
    const tb = gpu.upload(targets, 'scratch');
    const loss = gpu.alloc(rows * 4, 'scratch');
    gpu.fill(loss, POISON);
    const chunkBuf = gpu.alloc(chunk * vocab * 4, 'scratch');
    const got = new Float32Array(rows * vocab);
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const n = Math.min(chunk, rows - r0);
      gpu.write(chunkBuf, logits.subarray(r0 * vocab, (r0 + n) * vocab));
      crossEntropy(gpu, SHADERS.crossEntropy, { logits: chunkBuf, targets: tb, loss, rows: n, vocab, rowStart: r0, backward: true, gradScale });
      got.set(await gpu.readF32(chunkBuf, n * vocab), r0 * vocab);
    }
    const ref = crossEntropyCpu(logits, targets, rows, vocab, gradScale);
    expect(relErr(await gpu.readF32(loss, rows), ref.loss)).toBeLessThan(1e-6);
    expect(relErr(got, ref.dlogits)).toBeLessThan(1e-5);
    // Gradient of gradScale·Σ loss against finite differences in float64.
    const coords = someCoords(rows * vocab, 20);
    const fd = finiteDiff((x) => gradScale * crossEntropyCpu(x, targets, rows, vocab).loss.reduce((a, b) => a + b, 0), logits, coords);
    expect(relErr(pick(ref.dlogits, coords), fd)).toBeLessThan(1e-6);
    // Forward-only mode leaves the logits as they were.
    gpu.write(chunkBuf, logits.subarray(0, chunk * vocab));
    crossEntropy(gpu, SHADERS.crossEntropy, { logits: chunkBuf, targets: tb, loss, rows: chunk, vocab, rowStart: 0, backward: false });
    expect(Array.from(await gpu.readF32(chunkBuf, chunk * vocab))).toEqual(Array.from(logits.subarray(0, chunk * vocab)));
    gpu.release(tb, loss, chunkBuf);
  });
});
