/**
 * The engine against Hugging Face transformers' own numbers (tests/fixtures/hf-golden): the same
 * check `npm run cli -- golden-check <folder>` runs, for every fixture family (phi, falcon, Llama,
 * Llama 3.2, Qwen2, Phi-3).
 */
import { describe, expect, it } from 'vitest';
import { GOLDEN_TOLERANCE, runGoldenCheck, type FileReader } from '../../workers/model/golden';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { testGpu } from './helpers';

/** Fixture files over the test server; the dev server answers missing files with HTML, so treat that as absent. */
const fetchReader: FileReader = async (path) => {
  const res = await fetch(path);
  if (!res.ok || (res.headers.get('content-type') ?? '').includes('text/html')) return null;
  return new Uint8Array(await res.arrayBuffer());
};

describe('hf-golden', () => {
  for (const name of ['tiny-phi', 'tiny-falcon', 'tiny-llama', 'tiny-llama3', 'tiny-qwen2', 'tiny-phi3']) {
    it(`${name}: logits, loss, LoRA gradients, embedding gradient and greedy tokens within 1e-5`, async () => {
      const gpu = await testGpu();
      const report = await runGoldenCheck(gpu, SHADERS, `/tests/fixtures/hf-golden/${name}`, fetchReader);
      const failing = report.tensors.filter((t) => !(t.rel <= GOLDEN_TOLERANCE));
      expect(failing).toEqual([]);
      // Every LoRA gradient of the fixture is compared, plus the 7 named tensors.
      expect(report.tensors.length).toBeGreaterThan(7 + 8);
      expect(report.tokens_equal).toBe(true);
      expect(report.ok).toBe(true);
    });
  }

  it('tiny-phi with NF4 base weights equals the exact engine on the dequantized weights', async () => {
    const gpu = await testGpu();
    const report = await runGoldenCheck(gpu, SHADERS, '/tests/fixtures/hf-golden/tiny-phi', fetchReader, { nf4: true });
    expect(report.tensors.filter((t) => !(t.rel <= GOLDEN_TOLERANCE))).toEqual([]);
    expect(report.tokens_equal).toBe(true);
    // Quantizing the tiny random weights to 4 bits moves the logits visibly: the check is not vacuous.
    expect(report.nf4!.golden_worst.rel).toBeGreaterThan(1e-3);
  });
});
