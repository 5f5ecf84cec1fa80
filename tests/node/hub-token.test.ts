/**
 * A gated model on the mock hub, its large files redirected to a CDN on another port (another
 * origin): without a token the load fails with a 401 that says what to do; with the token it
 * loads, every hub request carries the token, and the CDN never sees an Authorization header.
 * The scope rule itself (`sendsTokenTo`) and the browser's opaque redirects are checked alone.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MockHub } from '../mock-hub/server';
import { tinyModelFiles, tinyModelTensors, tinyPhiConfig } from '../mock-hub/tiny-model';
import { HubClient, HubError } from '../../workers/load/hub';
import { fetchWithHubToken, sendsTokenTo } from '../../workers/load/hub-auth';
import { hubFileSet } from '../../workers/load/sources';
import { loadModel } from '../../workers/load/load-model';
import { DEFAULT_QUANT } from '../../workers/load/presets';
import { errorInfo } from '../../workers/errors';
import { Tokenizers } from '../../workers/session/tokenizers';
import { tokenizerFromFiles, tokenizerFromHubFiles } from '../../workers/tokenizer';
import { readFileSync } from 'node:fs';

const REPO = 'test-org/gated-llama';
const TOKEN = 'hf_gatedTestToken123';
const hub = new MockHub();
const config = tinyPhiConfig();
const tensors = tinyModelTensors(config, 'F16', 31);

beforeAll(async () => {
  await hub.start();
  await hub.startCdn();
  hub.upload(REPO, tinyModelFiles(config, tensors, 2));
  hub.upload(REPO, ['tokenizer.json', 'tokenizer_config.json'].map((f) => [f, readFileSync(`public/demo/tokenizer/${f}`)] as [string, Uint8Array]));
  hub.gate(REPO, TOKEN);
});
afterAll(() => hub.stop());
beforeEach(() => hub.clearLog());

const client = (token?: string) => new HubClient({ endpoint: hub.endpoint, retryDelayMs: 1, retries: 1, token });
const load = (token?: string) => loadModel({ files: hubFileSet(client(token), REPO), quant: DEFAULT_QUANT, cacheId: { repo: REPO, revision: 'main' }, keep: false });

describe('a gated model on the mock hub', () => {
  it('answers 401 without a token, with what to do and the model page', async () => {
    const err = await load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).status).toBe(401);
    expect((err as Error).message).toMatch(/HTTP 401: the repo is gated or private: log in on the hub, accept the license on http:\/\/127\.0\.0\.1:\d+\/test-org\/gated-llama, and paste an access token/);
    expect((err as Error).message).toContain('Access token field of the Model section');
    const info = errorInfo(err);
    expect(info.code).toBe('hub-access');
    expect(info.section).toBe('model');
    expect(info.hint).toContain('Access token field of the Model section');
    expect(info.hint).toContain(`${hub.endpoint}/${REPO}`);
    // Nothing was downloaded.
    expect(hub.requests.filter((r) => r.server === 'cdn')).toEqual([]);
  });

  it('a refused token says so, and the token appears in no message', async () => {
    const wrong = 'hf_wrongToken456';
    const err = await load(wrong).catch((e: unknown) => e);
    expect((err as HubError).status).toBe(401);
    expect((err as Error).message).toMatch(/the access token was refused: accept the license on http:\/\/127\.0\.0\.1:\d+\/test-org\/gated-llama/);
    const info = errorInfo(err);
    expect(info.code).toBe('hub-access');
    expect(JSON.stringify(info)).not.toContain(wrong);
    expect((err as Error).stack ?? '').not.toContain(wrong);
  });

  it('loads with the token; the CDN on another origin never sees the Authorization header', async () => {
    const loaded = await load(TOKEN);
    expect(loaded.arch.hidden).toBe(config.hidden_size);
    expect(loaded.stats!.quantized).toBeGreaterThan(0);
    const atHub = hub.requests.filter((r) => r.server === 'hub' && !r.path.startsWith('/api/'));
    const atCdn = hub.requests.filter((r) => r.server === 'cdn');
    // The shards came from the CDN by redirected Range requests.
    expect(atCdn.length).toBeGreaterThan(0);
    expect(atCdn.every((r) => r.path.endsWith('.safetensors') && r.status === 206)).toBe(true);
    expect(atCdn.filter((r) => r.authorized)).toEqual([]);
    // Every request to the hub's own origin carried it, the same-host redirect of small files included.
    expect(atHub.some((r) => r.path.startsWith('/cdn/') && r.path.endsWith('config.json'))).toBe(true);
    expect(atHub.every((r) => r.authorized)).toBe(true);
    expect(atHub.filter((r) => r.status === 401)).toEqual([]);
  });

  it("the gated model's tokenizer loads through the hub client with the token", async () => {
    const tokenizer = await new Tokenizers('http://unused.invalid', () => client(TOKEN)).of({ kind: 'hub', id: REPO });
    expect(tokenizer.decode(tokenizer.encode('hello world'))).toContain('hello world');
    const paths = hub.requests.filter((r) => r.path.includes('tokenizer'));
    expect(paths.length).toBeGreaterThanOrEqual(2);
    expect(paths.every((r) => r.authorized && r.server === 'hub')).toBe(true);
  });

  it('a hub tokenizer read by the client gets the class tokenizer_config.json names; an unknown or inherited name gets the base class', () => {
    const json = readFileSync('public/demo/tokenizer/tokenizer.json', 'utf8');
    const config = JSON.parse(readFileSync('public/demo/tokenizer/tokenizer_config.json', 'utf8')) as Record<string, unknown>;
    const text = 'def f(x):\n    return x  # héllo';
    const reference = tokenizerFromFiles(json, JSON.stringify(config)).encode(text);
    for (const name of [config.tokenizer_class, 'NoSuchTokenizer', 'constructor', '__proto__', 'env']) {
      expect(tokenizerFromHubFiles(json, JSON.stringify({ ...config, tokenizer_class: name })).encode(text)).toEqual(reference);
    }
  });

  it('a direct request for another host does not get the token either', async () => {
    const seen: { url: string; auth: string | null }[] = [];
    const recording: typeof fetch = (input, init) => {
      seen.push({ url: String(input), auth: new Headers(init?.headers).get('Authorization') });
      return fetch(input, init);
    };
    const f = fetchWithHubToken(recording, hub.endpoint, TOKEN);
    await (await f(`${hub.cdnOrigin}/nothing`, { headers: { Authorization: 'Bearer smuggled' } })).body?.cancel();
    await (await f(`${hub.endpoint}/api/models/${REPO}/revision/main`)).json();
    expect(seen).toEqual([
      { url: `${hub.cdnOrigin}/nothing`, auth: null },
      { url: `${hub.endpoint}/api/models/${REPO}/revision/main`, auth: `Bearer ${TOKEN}` },
    ]);
  });
});

describe('which hosts get the token', () => {
  const HF = 'https://huggingface.co';
  it('the endpoint origin and, for the public hub, its https subdomains', () => {
    expect(sendsTokenTo(HF, 'https://huggingface.co/meta-llama/Llama-3.2-1B/resolve/main/config.json')).toBe(true);
    expect(sendsTokenTo(HF, 'https://cdn-lfs.huggingface.co/repos/ab/cd/x')).toBe(true);
    expect(sendsTokenTo(HF, 'https://cdn-lfs-us-1.huggingface.co/x')).toBe(true);
    expect(sendsTokenTo(HF, 'https://datasets-server.huggingface.co/parquet?dataset=x')).toBe(true);
    expect(sendsTokenTo('http://127.0.0.1:4000', 'http://127.0.0.1:4000/a/b/resolve/main/x')).toBe(true);
  });

  it('nothing else: other hosts, look-alikes, other ports, plain http, signed CDN hosts', () => {
    expect(sendsTokenTo(HF, 'https://cas-bridge.xethub.hf.co/xet-bridge/x')).toBe(false);
    expect(sendsTokenTo(HF, 'https://cdn-lfs-us-1.hf.co/x')).toBe(false);
    expect(sendsTokenTo(HF, 'https://huggingface.co.evil.example/x')).toBe(false);
    expect(sendsTokenTo(HF, 'https://evilhuggingface.co/x')).toBe(false);
    expect(sendsTokenTo(HF, 'http://huggingface.co/x')).toBe(false);
    expect(sendsTokenTo(HF, 'http://cdn-lfs.huggingface.co/x')).toBe(false);
    expect(sendsTokenTo(HF, 'https://cdn-lfs.huggingface.co:8443/x')).toBe(false);
    expect(sendsTokenTo(HF, 'https://s3.amazonaws.com/x')).toBe(false);
    expect(sendsTokenTo('http://127.0.0.1:4000', 'http://127.0.0.1:4001/x')).toBe(false);
    expect(sendsTokenTo('http://127.0.0.1:4000', 'https://huggingface.co/x')).toBe(false);
    expect(sendsTokenTo('http://127.0.0.1:4000', 'http://localhost:4000/x')).toBe(false);
    expect(sendsTokenTo(HF, 'not a url')).toBe(false);
  });

  it('where the platform hides redirects (opaqueredirect), it repeats with the native redirect once, then always', async () => {
    const calls: { url: string; redirect: RequestRedirect | undefined; auth: string | null }[] = [];
    const browserLike = (async (input: RequestInfo | URL, init?: RequestInit) => {
      calls.push({ url: String(input), redirect: init?.redirect, auth: new Headers(init?.headers).get('Authorization') });
      if (init?.redirect === 'manual') return { type: 'opaqueredirect', status: 0, ok: false, headers: new Headers(), body: null } as unknown as Response;
      return new Response('ok');
    }) as typeof fetch;
    const f = fetchWithHubToken(browserLike, HF, 'hf_x');
    const url = 'https://huggingface.co/a/b/resolve/main/model.safetensors';
    expect(await (await f(url, { redirect: 'follow' })).text()).toBe('ok');
    expect(await (await f(url)).text()).toBe('ok');
    expect(calls).toEqual([
      { url, redirect: 'manual', auth: 'Bearer hf_x' },
      { url, redirect: 'follow', auth: 'Bearer hf_x' },
      { url, redirect: undefined, auth: 'Bearer hf_x' },
    ]);
  });
});
