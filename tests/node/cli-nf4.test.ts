import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';

// Runs the real command line (Vite + headless Chromium with WebGPU), as CI and users do.
describe('npm run cli -- nf4-check', () => {
  it('passes on tests/fixtures/bnb-nf4 and prints the summary as the last stdout line', () => {
    const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'nf4-check', 'tests/fixtures/bnb-nf4'], { encoding: 'utf8', timeout: 240_000 });
    const lines = run.stdout.trim().split('\n');
    const summary = JSON.parse(lines[lines.length - 1]) as { ok: boolean; cases: number; failed: string[] };
    expect(summary, run.stderr).toEqual({ ok: true, cases: 18, failed: [] });
    expect(run.status).toBe(0);
    expect(run.stderr.match(/^PASS /gm)?.length).toBe(18);
  }, 300_000);
});
