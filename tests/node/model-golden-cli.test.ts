import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';

// The real command line (Vite + headless Chromium with WebGPU), as CI and users run it.
describe('npm run cli -- golden-check', () => {
  it('passes on tiny-falcon, printing per-tensor lines and the summary last', () => {
    const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'golden-check', 'tests/fixtures/hf-golden/tiny-falcon'], { encoding: 'utf8', timeout: 240_000 });
    const lines = run.stdout.trim().split('\n');
    const summary = JSON.parse(lines[lines.length - 1]) as { ok: boolean; worst: { name: string; rel: number }; tokens_equal: boolean };
    expect(summary.ok, run.stderr).toBe(true);
    expect(summary.tokens_equal).toBe(true);
    expect(summary.worst.rel).toBeLessThanOrEqual(1e-5);
    expect(Object.keys(summary).sort()).toEqual(['ok', 'tokens_equal', 'worst']);
    const tensors = lines.slice(0, -1).map((l) => JSON.parse(l) as { tensor: string; rel: number }).filter((l) => l.tensor);
    expect(tensors.map((t) => t.tensor)).toEqual(expect.arrayContaining(['logits', 'loss', 'logits_no_lora', 'loss_no_lora', 'embedding_output.grad', 'gen_step_logits']));
    expect(run.status).toBe(0);
  }, 300_000);

  it('exits 2 with a message naming the problem for a folder without the files', () => {
    const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'golden-check', 'tests/fixtures/bnb-nf4'], { encoding: 'utf8', timeout: 240_000 });
    const lines = run.stdout.trim().split('\n');
    const summary = JSON.parse(lines[lines.length - 1]) as { ok: boolean; error: string };
    expect(summary.ok).toBe(false);
    expect(summary.error).toMatch(/config\.json/);
    expect(run.status).toBe(2);
  }, 300_000);
});
