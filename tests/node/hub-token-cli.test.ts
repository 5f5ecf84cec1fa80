/**
 * The real command line against a gated model on the mock hub (HF_ENDPOINT), its large files on
 * a CDN at another origin: `train` exits 1 with a hub-access error that says what to do when no
 * token is given, trains with HF_TOKEN, and the token never reaches the CDN nor the output. The
 * runner's page is headless Chromium, so this is the browser's own redirect handling at work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { MockHub } from '../mock-hub/server';

const REPO = 'test-org/gated-demo';
const TOKEN = 'hf_cliGatedToken789';
const hub = new MockHub();

beforeAll(async () => {
  await hub.start();
  await hub.startCdn();
  const files: [string, Uint8Array][] = [
    ['config.json', readFileSync('public/demo/model/config.json')],
    ['model.safetensors', readFileSync('public/demo/model/model.safetensors')],
    ['tokenizer.json', readFileSync('public/demo/tokenizer/tokenizer.json')],
    ['tokenizer_config.json', readFileSync('public/demo/tokenizer/tokenizer_config.json')],
  ];
  hub.upload(REPO, files);
  hub.gate(REPO, TOKEN);
});
afterAll(() => hub.stop());

/** Runs the CLI without blocking this process (the mock hub answers from it). */
function cli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string; last: Record<string, unknown> }> {
  const base = { ...process.env };
  delete base.HF_TOKEN;
  const child = spawn(process.execPath, ['scripts/cli.mjs', 'train', ...args], { env: { ...base, HF_ENDPOINT: hub.endpoint, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) =>
    child.on('close', (status) => {
      const lines = stdout.trim().split('\n');
      resolve({ status, stdout, stderr, last: JSON.parse(lines[lines.length - 1]) as Record<string, unknown> });
    }),
  );
}

const ARGS = ['--model', REPO, '--data', 'public/demo/data/ds1000-demo.jsonl', '--template', 'ds1000', '--steps', '1', '--batch', '1', '--accum', '1', '--max-length', '256'];

describe('cli train on a gated hub model', () => {
  it('without a token: exit 1, a hub-access error that names the token and the model page', async () => {
    hub.clearLog();
    const r = await cli(ARGS, {});
    expect(r.status, r.stderr).toBe(1);
    expect(r.last).toMatchObject({ ok: false, code: 'hub-access', file: 'config.json' });
    expect(String(r.last.error)).toMatch(/HTTP 401: the repo is gated or private: log in on the hub, accept the license on http:\/\/127\.0\.0\.1:\d+\/test-org\/gated-demo/);
    expect(String(r.last.hint)).toMatch(/^Set HF_TOKEN to an access token/);
    expect(hub.requests.filter((q) => q.server === 'cdn')).toEqual([]);
  }, 300_000);

  it('with HF_TOKEN: trains; the CDN never sees Authorization; the token is never printed', async () => {
    hub.clearLog();
    const r = await cli(ARGS, { HF_TOKEN: TOKEN });
    expect(r.status, r.stderr).toBe(0);
    expect(r.last).toMatchObject({ ok: true, steps: 1 });
    const cdn = hub.requests.filter((q) => q.server === 'cdn' && q.method === 'GET');
    expect(cdn.length).toBeGreaterThan(0);
    expect(hub.requests.filter((q) => q.server === 'cdn' && q.authorized)).toEqual([]);
    expect(hub.requests.filter((q) => q.server === 'hub' && q.method === 'GET' && !q.path.startsWith('/api/')).every((q) => q.authorized)).toBe(true);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
  }, 300_000);

  it('--token with a wrong token: exit 1, the refusal said, the token not printed', async () => {
    const wrong = 'hf_wrongCliToken000';
    const r = await cli([...ARGS, '--token', wrong], {});
    expect(r.status, r.stderr).toBe(1);
    expect(r.last).toMatchObject({ ok: false, code: 'hub-access' });
    expect(String(r.last.error)).toMatch(/the access token was refused/);
    expect(r.stdout + r.stderr).not.toContain(wrong);
  }, 300_000);

  it('--token without a value is invalid input (exit 2)', async () => {
    const r = await cli([...ARGS, '--token'], {});
    expect(r.status, r.stderr).toBe(2);
    expect(String(r.last.error)).toMatch(/--token needs the access token/);
  }, 300_000);
});
