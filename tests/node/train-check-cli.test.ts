import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';

// The real command line (Vite + headless Chromium with WebGPU), as CI and users run it.
describe('npm run cli -- train-check', () => {
  it('passes on tiny-phi: per-step lines, per-quantity lines, the verdict last, exit 0', () => {
    const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'train-check', 'tests/fixtures/hf-train/tiny-phi'], { encoding: 'utf8', timeout: 240_000 });
    const lines = run.stdout.trim().split('\n');
    const verdict = JSON.parse(lines[lines.length - 1]) as { ok: boolean; worst: { name: string; rel: number } };
    expect(verdict.ok, run.stderr).toBe(true);
    expect(Object.keys(verdict).sort()).toEqual(['ok', 'worst']);
    expect(verdict.worst.rel).toBeLessThanOrEqual(1e-4);
    const records = lines.slice(0, -1).map((l) => JSON.parse(l) as { type: string; name?: string; step?: number });
    expect(records.filter((r) => r.type === 'step').map((r) => r.step)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(records.filter((r) => r.type === 'quantity').map((r) => r.name)).toContain('exp_avg_sq');
    expect(run.status).toBe(0);
  }, 300_000);

  it('exits 2 naming the missing file for a folder of another format', () => {
    const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'train-check', 'tests/fixtures/hf-golden/tiny-phi'], { encoding: 'utf8', timeout: 240_000 });
    const lines = run.stdout.trim().split('\n');
    const verdict = JSON.parse(lines[lines.length - 1]) as { ok: boolean; error: string };
    expect(verdict.ok).toBe(false);
    expect(verdict.error).toMatch(/train\.json is missing/);
    expect(run.status).toBe(2);
  }, 300_000);
});
