import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nf4EdgeFolder, NO_FORWARD_STATE_DICT, SUBNORMAL_CASE } from '../nf4-edge-folder';

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

  it('passes a folder with a subnormal absmax\' zero block and a state dict without forward, saying what it compared', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nf4-edge-'));
    try {
      for (const [name, bytes] of nf4EdgeFolder()) writeFileSync(join(dir, name), bytes);
      const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'nf4-check', dir], { encoding: 'utf8', timeout: 240_000 });
      const lines = run.stdout.trim().split('\n');
      expect(JSON.parse(lines[lines.length - 1]), run.stderr).toEqual({ ok: true, cases: 2, failed: [] });
      expect(run.stderr).toMatch(new RegExp(`^PASS ${NO_FORWARD_STATE_DICT} — .*forward not checked`, 'm'));
      expect(run.stderr).toMatch(new RegExp(`^PASS ${SUBNORMAL_CASE}`, 'm'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
