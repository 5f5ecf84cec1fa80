import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The real command line: `train` on the built-in demo model, with persistent Chromium profiles
// so the IndexedDB checkpoints survive the browser being closed between runs.
const ARGS = ['--model', 'demo', '--data', 'public/demo/data/ds1000-demo.jsonl', '--steps', '4', '--batch', '1', '--accum', '2', '--seed', '3'];

function cli(args: string[]) {
  const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'train', ...ARGS, ...args], { encoding: 'utf8', timeout: 600_000 });
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  return { run, lines, last: lines[lines.length - 1], steps: lines.filter((l) => typeof l.loss === 'number') };
}

describe('npm run cli -- train', () => {
  it('2N steps == N steps, browser closed, reopened with --resume, N more: same losses, same adapter bytes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'train-cli-'));
    try {
      const full = cli(['--profile', join(dir, 'p1'), '--out', join(dir, 'full')]);
      expect(full.last.ok, full.run.stderr).toBe(true);
      expect(full.last).toMatchObject({ steps: 4, adapter: join(dir, 'full') });
      expect(full.steps.map((s) => s.step)).toEqual([1, 2, 3, 4]);
      for (const s of full.steps) expect(Object.keys(s).sort()).toEqual(['gpu_bytes', 'grad_norm', 'loss', 'lr', 'step', 'tokens_per_s']);
      expect(full.lines.some((l) => typeof l.eval_loss === 'number')).toBe(true);

      const first = cli(['--profile', join(dir, 'p2'), '--stop-after', '2']);
      expect(first.last, first.run.stderr).toMatchObject({ ok: true, status: 'stopped', steps: 2 });
      const second = cli(['--profile', join(dir, 'p2'), '--resume', '--out', join(dir, 'resumed')]);
      expect(second.last, second.run.stderr).toMatchObject({ ok: true, status: 'done', steps: 4 });
      expect(second.lines).toContainEqual({ resumed_from_step: 2 });
      expect([...first.steps, ...second.steps].map((s) => [s.step, s.loss, s.grad_norm])).toEqual(full.steps.map((s) => [s.step, s.loss, s.grad_norm]));
      expect(second.last.final_loss).toBe(full.last.final_loss);
      const bytes = (d: string) => readFileSync(join(dir, d, 'adapter_model.safetensors'));
      expect(bytes('resumed').equals(bytes('full'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 1_800_000);

  it('--resume without a checkpoint exits 2 and says why', () => {
    const dir = mkdtempSync(join(tmpdir(), 'train-cli-'));
    try {
      const r = cli(['--profile', join(dir, 'p'), '--resume']);
      expect(r.last.ok).toBe(false);
      expect(String(r.last.error)).toMatch(/no checkpoint of this run/);
      expect(r.run.status).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
