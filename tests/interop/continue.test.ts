/**
 * continue.py (the run bundle's continuation) against PyTorch's and transformers' own training
 * numbers, on the CPU with ../shared/pyref (torch 1.13.1, transformers 4.40.2, PEFT 0.11.1,
 * accelerate 0.30.1):
 * - an hf-train fixture made into a step-0 bundle: continue.py's 6 steps give the fixture's step
 *   losses, lrs, pre-clip gradient norms, eval loss, final LoRA weights and AdamW moments within
 *   1e-4 relative (the fixture's suggested check); tiny-phi again on transformers 4.44.0;
 * - two processes (gloo, ranks started by hand) equal one within 1e-5, on a bundle with short
 *   micro-batches, unequal shares and an odd validation split;
 * - a run stopped with --max-steps and continued from its own output folder equals the run
 *   made in one go.
 * Skipped, with a message, where ../shared/pyref is absent.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HAVE_PYREF, PYREF, lastJson, python, pythonRanks, pyrefEnv, type RunDeviations } from './pyref';

if (!HAVE_PYREF) console.warn(`continue-interop: skipped, ${PYREF} (the Python reference stack) is not here`);

const CONTINUE_PY = resolve('workers/export/run-bundle/continue.py');
const MAKE_BUNDLE = resolve('tests/interop/hf_train_bundle.py');
const COMPARE = resolve('tests/interop/compare_runs.py');

interface FixtureDeviations {
  steps: number;
  adamw_step: number;
  expected_adamw_step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  eval_loss: number;
  weights: number;
  exp_avg: number;
  exp_avg_sq: number;
  tensors: number;
}

describe.skipIf(!HAVE_PYREF)('continue.py against torch/transformers/PEFT (../shared/pyref)', () => {
  let env: NodeJS.ProcessEnv = {};
  let dir: string;
  beforeAll(() => {
    env = pyrefEnv();
    dir = mkdtempSync(join(tmpdir(), 'continue-interop-'));
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const folder of ['tiny-phi', 'tiny-falcon']) {
    it(`${folder}: a step-0 bundle of the hf-train fixture continues to its 6-step trajectory`, () => {
      const fixture = resolve(`tests/fixtures/hf-train/${folder}`);
      const bundle = join(dir, folder);
      python(env, [MAKE_BUNDLE, fixture, bundle, CONTINUE_PY]);
      const run = python(env, ['continue.py', '--out', join(bundle, 'continued')], bundle);
      const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
      expect(lines.filter((l) => 'loss' in l).map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6]);
      for (const l of lines.filter((x) => 'loss' in x)) expect(Object.keys(l).sort()).toEqual(['grad_norm', 'loss', 'lr', 'step']);
      writeFileSync(join(dir, `${folder}.jsonl`), run.stdout);
      const d = lastJson<FixtureDeviations>(python(env, [COMPARE, 'hf-train', fixture, join(bundle, 'continued'), join(dir, `${folder}.jsonl`)]));
      console.log(`${folder} vs hf-train expected: ${JSON.stringify(d)}`);
      expect(d.steps).toBe(6);
      expect(d.adamw_step).toBe(d.expected_adamw_step);
      for (const k of ['loss', 'lr', 'grad_norm', 'eval_loss', 'weights', 'exp_avg', 'exp_avg_sq'] as const) expect(d[k], k).toBeLessThan(1e-4);
      const out = JSON.parse(readFileSync(join(bundle, 'continued', 'run.json'), 'utf8')) as { step: number; schedule: { position: number }; optimizer: { step: number }; log: { train: unknown[] } };
      expect([out.step, out.schedule.position, out.optimizer.step, out.log.train.length]).toEqual([6, 6, 6, 6]);
    });
  }

  it('tiny-phi on transformers 4.44.0: the same trajectory', () => {
    process.env.PYREF_TRANSFORMERS = '4.44.0';
    const env444 = pyrefEnv();
    delete process.env.PYREF_TRANSFORMERS;
    const fixture = resolve('tests/fixtures/hf-train/tiny-phi');
    const bundle = join(dir, 'tiny-phi-444');
    python(env444, [MAKE_BUNDLE, fixture, bundle, CONTINUE_PY]);
    const run = python(env444, ['-c', 'import transformers; print(transformers.__version__)']);
    expect(run.stdout.trim()).toBe('4.44.0');
    writeFileSync(join(dir, 'tiny-phi-444.jsonl'), python(env444, ['continue.py', '--out', join(bundle, 'continued')], bundle).stdout);
    const d = lastJson<FixtureDeviations>(python(env444, [COMPARE, 'hf-train', fixture, join(bundle, 'continued'), join(dir, 'tiny-phi-444.jsonl')]));
    console.log(`tiny-phi (transformers 4.44.0) vs hf-train expected: ${JSON.stringify(d)}`);
    for (const k of ['loss', 'lr', 'grad_norm', 'eval_loss', 'weights', 'exp_avg', 'exp_avg_sq'] as const) expect(d[k], k).toBeLessThan(1e-4);
  });

  it('two processes (gloo) equal one, on short micro-batches and unequal shares', async () => {
    const bundle = join(dir, 'awkward');
    python(env, [MAKE_BUNDLE, resolve('tests/fixtures/hf-train/tiny-phi'), bundle, CONTINUE_PY, '--awkward']);
    const one = python(env, ['continue.py', '--out', join(dir, 'one')], bundle);
    writeFileSync(join(dir, 'one.jsonl'), one.stdout);
    const two = await pythonRanks(env, 2, ['continue.py', '--out', join(dir, 'two')], bundle);
    expect(two[0].stderr).toContain('2 process(es)');
    expect(two[1].stdout.trim()).toBe(''); // only the main process prints
    writeFileSync(join(dir, 'two.jsonl'), two[0].stdout);
    const d = lastJson<RunDeviations>(python(env, [COMPARE, 'runs', join(dir, 'two'), join(dir, 'two.jsonl'), join(dir, 'one'), join(dir, 'one.jsonl')]));
    console.log(`2 processes vs 1: ${JSON.stringify(d)}`);
    expect(d.steps).toEqual([1, 2, 3, 4, 5, 6]);
    expect(d.eval_steps).toEqual([0, 2, 4, 6]);
    expect(d.adamw_step).toEqual([6, 6]);
    for (const k of ['loss', 'lr', 'grad_norm', 'eval_loss', 'weights', 'moments'] as const) expect(d[k], k).toBeLessThan(1e-5);
  });

  it('a run stopped with --max-steps and continued from its own folder equals the run made in one go', () => {
    const bundle = join(dir, 'awkward');
    const first = python(env, ['continue.py', '--max-steps', '3', '--out', join(dir, 'half')], bundle);
    // The continued folder is a bundle again; its base was a folder next to the first bundle.
    const second = python(env, ['continue.py', '--out', join(dir, 'whole'), '--base', join(bundle, 'base')], join(dir, 'half'));
    writeFileSync(join(dir, 'halves.jsonl'), first.stdout + second.stdout);
    const d = lastJson<RunDeviations>(python(env, [COMPARE, 'runs', join(dir, 'whole'), join(dir, 'halves.jsonl'), join(dir, 'one'), join(dir, 'one.jsonl')]));
    console.log(`stopped at 3 and continued vs in one go: ${JSON.stringify(d)}`);
    expect(d.steps).toEqual([1, 2, 3, 4, 5, 6]);
    for (const k of ['loss', 'lr', 'grad_norm', 'weights', 'moments'] as const) expect(d[k], k).toBe(0);
    const out = JSON.parse(readFileSync(join(dir, 'whole', 'run.json'), 'utf8')) as { log: { train: { step: number }[]; eval: { step: number }[] } };
    expect(out.log.train.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(out.log.eval.map((r) => r.step)).toEqual([0, 2, 4, 6]);
  });
});
