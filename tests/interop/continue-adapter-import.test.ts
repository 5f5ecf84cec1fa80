/**
 * The adapter continue.py writes comes back into the studio: its run folder's adapter/ (PEFT
 * files) loads into the studio's engine the way an imported adapter does, and the engine's
 * logits, loss, LoRA gradients and greedy tokens match transformers + PEFT with that adapter
 * (`cli golden-check`, 1e-5 relative, tokens equal). The adapter is continue.py's after the six
 * steps of the hf-train fixtures (tiny-phi, tiny-falcon), the golden numbers come from PEFT on
 * the CPU (../shared/pyref). Skipped, with a message, where ../shared/pyref or Chromium is absent.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HAVE_PYREF, PYREF, lastJson, python, pyrefEnv } from './pyref';
import { cli, writeBase } from './studio-run';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_PYREF) console.warn(`continue-adapter-import: skipped, ${PYREF} (the Python reference stack) is not here`);
else if (!HAVE_CHROMIUM) console.warn(`continue-adapter-import: skipped, no Chromium at ${CHROMIUM} for the studio's command line`);

describe.skipIf(!HAVE_PYREF || !HAVE_CHROMIUM)("continue.py's adapter in the studio's engine == in PEFT", () => {
  let env: NodeJS.ProcessEnv = {};
  let dir: string;
  beforeAll(() => {
    env = pyrefEnv();
    dir = mkdtempSync(join(tmpdir(), 'continue-adapter-'));
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const folder of ['tiny-phi', 'tiny-falcon']) {
    it(`${folder}: logits, loss, gradients and greedy tokens within 1e-5`, () => {
      const bundle = join(dir, folder);
      python(env, [resolve('tests/interop/hf_train_bundle.py'), resolve(`tests/fixtures/hf-train/${folder}`), bundle, resolve('workers/export/run-bundle/continue.py')]);
      python(env, ['continue.py', '--out', join(bundle, 'continued')], bundle);
      const base = join(dir, `${folder}-base`);
      writeBase(`tests/fixtures/hf-train/${folder}`, base);
      const golden = join(dir, `${folder}-golden`);
      const made = lastJson<{ tensors: string[] }>(python(env, [resolve('tests/interop/adapter_golden.py'), base, join(bundle, 'continued', 'adapter'), golden]));
      expect(made.tensors).toContain('logits');
      const check = cli('golden-check', [golden], 0);
      const rels = check.lines.filter((l) => typeof l.tensor === 'string').map((l) => [l.tensor as string, l.rel as number] as const);
      console.log(`${folder}: studio engine vs PEFT on continue.py's adapter: worst ${JSON.stringify(check.last.worst)}, ${rels.length} tensors, logits ${rels.find(([n]) => n === 'logits')?.[1]}`);
      expect(check.last, check.stderr).toMatchObject({ ok: true, tokens_equal: true });
      expect(rels.map(([n]) => n)).toEqual(expect.arrayContaining(['logits', 'logits_no_lora', 'loss', 'gen_step_logits']));
      for (const [name, rel] of rels) expect(rel, name).toBeLessThanOrEqual(1e-5);
    }, 900_000);
  }
});
