/**
 * The engine against the awkward golden cases (tests/fixtures/hf-golden-cases, made by
 * scripts/make-golden-cases.py with transformers 4.44.0 and PEFT 0.11.1): odd GQA groupings,
 * multi-query attention, linear and llama3 rope scaling, attention and MLP biases, tied and untied
 * heads, right padding in a batch of 3, a 40-token sequence. Same check as `golden-check <folder>`.
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

/** Case → adapted modules (2 layers × linear layers of the family): every LoRA gradient must be compared. */
const CASES: Record<string, number> = { 'llama-gqa-odd': 14, 'phi3-gqa': 8, 'qwen2-mqa': 14, 'llama3-untied-mlpbias': 14, 'llama-leftpad': 14 };

describe('hf-golden-cases', () => {
  for (const [name, modules] of Object.entries(CASES)) {
    it(`${name}: logits, loss, LoRA gradients, embedding gradient and greedy tokens within 1e-5`, async () => {
      const gpu = await testGpu();
      const report = await runGoldenCheck(gpu, SHADERS, `/tests/fixtures/hf-golden-cases/${name}`, fetchReader);
      console.log(name, JSON.stringify(report.tensors.map((t) => [t.name.replace('base_model.model.model.', ''), Number(t.rel.toExponential(2))])), 'tokens equal', report.tokens_equal);
      const failing = report.tensors.filter((t) => !(t.rel <= GOLDEN_TOLERANCE));
      expect(failing).toEqual([]);
      // logits, loss, their no-LoRA twins, embedding output and gradient, step logits + A and B grads per module.
      expect(report.tensors.length).toBe(7 + 2 * modules);
      expect(report.tokens_equal).toBe(true);
      expect(report.ok).toBe(true);
    });
  }

  // A label scored from a padded position (tests/fixtures/hf-golden-cases/llama-leftpad-padlabel/README.md):
  // that position's query sees no key, and transformers then attends uniformly to every key of the row,
  // the answer included. No score from there means anything, so the engine refuses the batch by name.
  it('llama-leftpad-padlabel: a label scored from a padded position is refused, naming row and position', async () => {
    const gpu = await testGpu();
    await expect(runGoldenCheck(gpu, SHADERS, '/tests/fixtures/hf-golden-cases/llama-leftpad-padlabel', fetchReader)).rejects.toThrow(/labels\[\d+, \d+\] = \d+ is scored from padded position \d+ \(attention_mask 0\): set it to -100/);
  });

  // The cases are not vacuous: reading the rope scaling wrong moves the numbers far past the tolerance.
  for (const name of ['llama-gqa-odd', 'llama3-untied-mlpbias']) {
    it(`${name} fails when its config.json's rope_scaling is dropped`, async () => {
      const gpu = await testGpu();
      const folder = `/tests/fixtures/hf-golden-cases/${name}`;
      const read: FileReader = async (path) => {
        const bytes = await fetchReader(path);
        if (!bytes || !path.endsWith('/config.json')) return bytes;
        const config = JSON.parse(new TextDecoder().decode(bytes));
        config.rope_scaling = null;
        return new TextEncoder().encode(JSON.stringify(config));
      };
      const report = await runGoldenCheck(gpu, SHADERS, folder, read);
      expect(report.ok).toBe(false);
      expect(report.tensors.find((t) => t.name === 'logits')!.rel).toBeGreaterThan(1e-3);
    });
  }
});
