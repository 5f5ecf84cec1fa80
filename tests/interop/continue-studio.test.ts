/**
 * A run leaves the tab and comes back: the studio trains N steps (`cli train --no-quantize`,
 * dropout 0, stopped after N), `cli export-run` writes its bundle, continue.py runs the M steps
 * left on the CPU (../shared/pyref: torch 1.13.1, transformers 4.40.2, PEFT 0.11.1, accelerate
 * 0.30.1) — and every step's loss, lr and gradient norm, the evaluations, the final LoRA weights
 * and AdamW moments equal the studio's own uninterrupted N + M-step run within 1e-4 relative.
 * And back: continue.py stopped at N + 1 (--max-steps), its run folder continued by the studio
 * (`cli train --from-run`) to the end equals the same run in one go too.
 * On tests/fixtures/hf-golden tiny-phi and tiny-falcon, with a tokenizer cut to their
 * 512-token vocabulary. Skipped, with a message, where ../shared/pyref or Chromium is absent.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HAVE_PYREF, PYREF, freePort, lastJson, python, pyrefEnv, type RunDeviations } from './pyref';
import { cli, writeBase, writeQaData, writeSmallTokenizer } from './studio-run';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_PYREF) console.warn(`continue-studio-interop: skipped, ${PYREF} (the Python reference stack) is not here`);
else if (!HAVE_CHROMIUM) console.warn(`continue-studio-interop: skipped, no Chromium at ${CHROMIUM} for the studio's command line`);

const COMPARE = resolve('tests/interop/compare_runs.py');
const N = 3;
const TOTAL = 6;

describe.skipIf(!HAVE_PYREF || !HAVE_CHROMIUM)('studio run → export-run → continue.py == the studio run in one go', () => {
  let env: NodeJS.ProcessEnv = {};
  let dir: string;
  let port = 0;
  beforeAll(async () => {
    env = pyrefEnv();
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'continue-studio-'));
    writeQaData(join(dir, 'qa.jsonl'));
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [folder, targets] of [
    ['tiny-phi', 'q_proj,k_proj,v_proj,dense,fc1,fc2'],
    ['tiny-falcon', 'query_key_value,dense,dense_h_to_4h,dense_4h_to_h'],
  ] as const) {
    it(`${folder}: ${N} steps in the studio + ${TOTAL - N} in continue.py`, () => {
      const base = join(dir, folder);
      writeBase(`tests/fixtures/hf-golden/${folder}`, base);
      writeSmallTokenizer(base); // beside the weights: `train --from-run` reads the model folder's tokenizer
      const train = [
        '--model', base, '--data', join(dir, 'qa.jsonl'), '--map', 'prompt=q,response=a', '--no-quantize',
        '--dropout', '0', '--r', '4', '--alpha', '8', '--targets', targets, '--steps', String(TOTAL), '--batch', '2', '--accum', '3',
        '--lr', '2e-3', '--warmup-steps', '2', '--weight-decay', '0.01', '--max-grad-norm', '1', '--eval-every', '2', '--checkpoint-every', '0',
        '--sample-every', '0', '--validation', '0.2', '--max-length', '64', '--seed', '5',
      ];
      // The studio in one go, and its end state as a bundle (the adapter and the moments at step TOTAL).
      const whole = cli('train', [...train, '--profile', join(dir, `${folder}-p-whole`)], port);
      expect(whole.last.ok, whole.stderr).toBe(true);
      expect(whole.last.steps).toBe(TOTAL);
      writeFileSync(join(dir, `${folder}-whole.jsonl`), whole.lines.map((l) => JSON.stringify(l)).join('\n'));
      const wholeBundle = cli('export-run', ['--profile', join(dir, `${folder}-p-whole`), '--out', join(dir, `${folder}-whole`)], port);
      expect(wholeBundle.last.ok, wholeBundle.stderr).toBe(true);

      // The studio stopped after N, exported, continued in Python.
      const part = cli('train', [...train, '--profile', join(dir, `${folder}-p-part`), '--stop-after', String(N)], port);
      expect(part.last, part.stderr).toMatchObject({ ok: true, status: 'stopped', steps: N });
      const bundle = join(dir, `${folder}-bundle`);
      const exported = cli('export-run', ['--profile', join(dir, `${folder}-p-part`), '--out', bundle], port);
      expect(exported.last, exported.stderr).toMatchObject({ ok: true, step: N, total_steps: TOTAL });
      const runJson = JSON.parse(readFileSync(join(bundle, 'run.json'), 'utf8')) as { quantization: { type: string }; step: number };
      expect(runJson.quantization.type).toBe('none');
      const cont = python(env, ['continue.py', '--base', base, '--out', join(dir, `${folder}-continued`)], bundle);
      const contSteps = cont.stdout.trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss?: number });
      expect(contSteps.filter((l) => l.loss !== undefined).map((l) => l.step)).toEqual([4, 5, 6]);
      writeFileSync(join(dir, `${folder}-continued.jsonl`), cont.stdout);

      const d = lastJson<RunDeviations>(
        python(env, [COMPARE, 'runs', join(dir, `${folder}-continued`), join(dir, `${folder}-continued.jsonl`), join(dir, `${folder}-whole`), join(dir, `${folder}-whole.jsonl`)]),
      );
      console.log(`${folder}: continue.py steps ${N + 1}…${TOTAL} vs the studio's run in one go: ${JSON.stringify(d)}`);
      expect(d.steps).toEqual([4, 5, 6]);
      expect(d.eval_steps).toEqual([4, 6]);
      expect(d.adamw_step).toEqual([TOTAL, TOTAL]);
      for (const k of ['loss', 'lr', 'grad_norm', 'eval_loss', 'weights', 'moments'] as const) expect(d[k], k).toBeLessThan(1e-4);

      // And back: continue.py to N + 2, the studio from its folder to the end.
      const half = join(dir, `${folder}-to-${N + 2}`);
      const py = python(env, ['continue.py', '--base', base, '--max-steps', String(N + 2), '--out', half], bundle);
      const back = cli('train', ['--from-run', half, '--model', base, '--no-quantize', '--profile', join(dir, `${folder}-p-back`)], port);
      expect(back.last, back.stderr).toMatchObject({ ok: true, status: 'done', steps: TOTAL });
      expect(back.lines).toContainEqual({ resumed_from_step: N + 2, from_run: half });
      const backBundle = cli('export-run', ['--profile', join(dir, `${folder}-p-back`), '--out', join(dir, `${folder}-back`)], port);
      expect(backBundle.last, backBundle.stderr).toMatchObject({ ok: true, step: TOTAL });
      writeFileSync(join(dir, `${folder}-back.jsonl`), py.stdout + back.lines.map((l) => JSON.stringify(l)).join('\n'));
      const b = lastJson<RunDeviations>(
        python(env, [COMPARE, 'runs', join(dir, `${folder}-back`), join(dir, `${folder}-back.jsonl`), join(dir, `${folder}-whole`), join(dir, `${folder}-whole.jsonl`)]),
      );
      console.log(`${folder}: studio ${N} + continue.py ${N + 1}…${N + 2} + studio --from-run ${N + 3}…${TOTAL} vs the studio's run in one go: ${JSON.stringify(b)}`);
      expect(b.steps).toEqual([4, 5, 6]);
      expect(b.adamw_step).toEqual([TOTAL, TOTAL]);
      for (const k of ['loss', 'lr', 'grad_norm', 'eval_loss', 'weights', 'moments'] as const) expect(b[k], k).toBeLessThan(1e-4);
    }, 2_400_000);
  }
});
