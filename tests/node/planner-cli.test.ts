import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { planPreset } from '../../workers/load/planner';

const cli = (...args: string[]) => spawnSync(process.execPath, ['scripts/cli.mjs', 'plan', ...args], { encoding: 'utf8', timeout: 240_000 });
const lastLine = (out: string) => JSON.parse(out.trim().split('\n').at(-1)!);

// Runs the real command line (Vite + headless Chromium), as users do.
describe('npm run cli -- plan', () => {
  it('prints the breakdown and the plan as the last stdout line', async () => {
    const run = cli('--preset', 'phi-1_5', '--seq', '256', '--batch', '2', '--rank', '8');
    expect(run.status, run.stderr).toBe(0);
    const result = lastLine(run.stdout);
    const expected = await planPreset('phi-1_5', { seq: 256, batch: 2, rank: 8 });
    expect(result).toMatchObject({ ok: true, preset: 'phi-1_5', seq: 256, batch: 2, rank: 8, peak_gpu_bytes: expected.peakBytes, by_category: expected.byCategory, storage_bytes: expected.storageBytes, verdict: expected.verdict });
    expect(run.stderr).toMatch(/weights\s+\d/);
    expect(run.stderr).toMatch(/verdict: fits/);
  }, 300_000);

  it('exits 2 with the reason on bad input', () => {
    const run = cli('--preset', 'gpt-9');
    expect(run.status).toBe(2);
    expect(lastLine(run.stdout)).toEqual({ ok: false, error: expect.stringMatching(/unknown preset "gpt-9"/) });
    const bad = cli('--preset', 'demo', '--seq', 'abc');
    expect(bad.status).toBe(2);
    expect(lastLine(bad.stdout).error).toMatch(/--seq must be a positive integer/);
  }, 300_000);
});
