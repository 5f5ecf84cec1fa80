import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { asResult } from '../../workers/data/errors';
import { collectRows, hubRows, listHubParquetFiles } from '../../workers/data';

const PARQUET = readFileSync('tests/fixtures/data/nested.parquet');

/**
 * A stand-in for the hub and its dataset viewer on 127.0.0.1: `org/viewer` is listed by the
 * viewer, `org/hubonly` only by the hub's own parquet endpoint, `org/gated` needs a token.
 * Parquet files are served with HTTP range support, as the hub's CDN does.
 */
let server: Server;
let base = '';
const requests: { url: string; range?: string; auth?: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ url: req.url ?? '', range: req.headers.range, auth: req.headers.authorization });
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/viewer/parquet') {
      const id = url.searchParams.get('dataset');
      if (id === 'org/viewer') {
        return json(200, {
          parquet_files: [
            { dataset: id, config: 'default', split: 'train', url: `${base}/files/train-0.parquet`, filename: 'train-0.parquet', size: PARQUET.length },
            { dataset: id, config: 'default', split: 'test', url: `${base}/files/test-0.parquet`, filename: 'test-0.parquet', size: PARQUET.length },
            { dataset: id, config: 'other', split: 'train', url: `${base}/files/other.parquet`, filename: 'other.parquet', size: PARQUET.length },
          ],
        });
      }
      if (id === 'org/gated') return json(401, { error: 'gated' });
      return json(404, { error: 'not found' });
    }
    if (url.pathname === '/hub/api/datasets/org/hubonly/parquet') return json(200, { default: { train: [`${base}/files/a.parquet`, `${base}/files/b.parquet`] } });
    if (url.pathname === '/hub/api/datasets/org/gated/parquet') return req.headers.authorization === 'Bearer secret' ? json(200, { default: { train: [`${base}/files/g.parquet`] } }) : json(401, {});
    if (url.pathname.startsWith('/hub/api/datasets/')) return json(404, {});
    if (url.pathname.startsWith('/files/')) {
      const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '');
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-length': PARQUET.length, 'accept-ranges': 'bytes' });
        return res.end();
      }
      if (!m) {
        res.writeHead(200, { 'content-length': PARQUET.length });
        return res.end(PARQUET);
      }
      const start = Number(m[1]);
      const end = m[2] ? Number(m[2]) : PARQUET.length - 1;
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${PARQUET.length}`, 'content-length': end - start + 1 });
      return res.end(PARQUET.subarray(start, end + 1));
    }
    json(404, {});
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((ok) => server.close(ok));
});

const options = () => ({ endpoint: `${base}/hub`, viewerEndpoint: `${base}/viewer` });

describe('hub datasets', () => {
  it('lists Parquet files through the dataset viewer, filtered by config and split', async () => {
    const all = await listHubParquetFiles('org/viewer', options());
    expect(all.map((f) => `${f.config}/${f.split}`)).toEqual(['default/train', 'default/test']);
    const train = await listHubParquetFiles('org/viewer', { ...options(), split: 'train' });
    expect(train).toEqual([{ config: 'default', split: 'train', url: `${base}/files/train-0.parquet`, filename: 'train-0.parquet', size: PARQUET.length }]);
    expect((await listHubParquetFiles('org/viewer', { ...options(), config: 'other' })).map((f) => f.filename)).toEqual(['other.parquet']);
  });

  it('streams rows by range requests, nested columns included', async () => {
    requests.length = 0;
    const rows = await collectRows(hubRows('org/viewer', { ...options(), split: 'train' }));
    expect(rows).toHaveLength(5);
    expect(rows[1]).toMatchObject({ prompt: 'Problem 2: add 1 and 2 in numpy.', metadata: { library: 'Numpy', problem_id: 1 } });
    const fileRequests = requests.filter((r) => r.url.startsWith('/files/'));
    expect(fileRequests.length).toBeGreaterThan(1);
    expect(fileRequests.every((r) => r.range?.startsWith('bytes='))).toBe(true);
  });

  it('falls back to the hub parquet endpoint and reads every file', async () => {
    const rows = await collectRows(hubRows('org/hubonly', options()));
    expect(rows).toHaveLength(10);
  });

  it('reports a missing dataset, a gated one, and a bad id as values', async () => {
    const missing = await asResult('org/nope', () => collectRows(hubRows('org/nope', options())));
    expect(missing).toMatchObject({ ok: false, error: { file: 'org/nope', line: null, column: null } });
    expect(!missing.ok && missing.error.message).toMatch(/no dataset org\/nope/);
    const gated = await asResult('org/gated', () => listHubParquetFiles('org/gated', options()));
    expect(!gated.ok && gated.error.message).toMatch(/gated or private/);
    const withToken = await listHubParquetFiles('org/gated', { ...options(), token: 'secret' });
    expect(withToken.map((f) => f.filename)).toEqual(['g.parquet']);
    const bad = await asResult('x', () => listHubParquetFiles('not a/valid/id', options()));
    expect(!bad.ok && bad.error.message).toMatch(/not a hub dataset id/);
  });
});
