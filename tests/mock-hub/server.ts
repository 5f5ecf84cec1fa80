/**
 * A local stand-in for the Hugging Face hub, on 127.0.0.1. Repos are versioned like git: every
 * upload is a commit (a 40-hex sha) and a revision name (`main`) points at the latest one.
 * `/<repo>/resolve/<revision or commit>/<file>` answers 302 to a CDN-like path on the same
 * server (as the hub does) with `X-Repo-Commit`, and the CDN serves the bytes with Range (206 +
 * Content-Range), ETag and CORS headers. `/api/models/<repo>/revision/<revision>` answers the
 * hub's JSON (`id`, `sha`, `siblings`). It can cut one response mid-file, fail requests with a
 * status, require a token, or drop every connection (offline); it logs every request.
 *
 * `startCdn()` adds a second server on another port standing for the hub's CDN (another
 * origin): from then on large files (`.safetensors`) redirect there, as the hub sends LFS
 * files to `cdn-lfs.huggingface.co`, and other files keep the same-host redirect. On the hub's
 * own server every path of a gated repo needs the token; the CDN serves its (signed) URLs
 * without one. The log says which server answered and whether an Authorization header came.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface LoggedRequest {
  method: string;
  path: string;
  range: string | null;
  status: number;
  /** Body bytes sent (file bytes from the CDN path; as far as they got before a cut). */
  bytes: number;
  /** Which server answered: the hub itself or the CDN started by `startCdn()`. */
  server: 'hub' | 'cdn';
  /** Whether the request carried an Authorization header (its value is never logged). */
  authorized: boolean;
}

export interface CutPlan {
  /** File path inside the repo. */
  file: string;
  /** Absolute byte offset after which the connection is destroyed (once). */
  atByte: number;
}

interface MockRepo {
  /** Revision name → commit sha. */
  refs: Map<string, string>;
  /** Commit sha → the repo's files at that commit. */
  commits: Map<string, Map<string, Uint8Array>>;
}

export class MockHub {
  readonly requests: LoggedRequest[] = [];
  private readonly repos = new Map<string, MockRepo>();
  private readonly gated = new Map<string, string>();
  private cut: CutPlan | null = null;
  private failures: { status: number; remaining: number; file: string; retryAfter?: string } | null = null;
  private corrupt: { file: string; remaining: number; fromByte: number } | null = null;
  private server: Server | null = null;
  private cdnServer: Server | null = null;
  /** The CDN's origin once `startCdn()` ran (another port: another origin). */
  cdnOrigin = '';
  /** Every connection is dropped before an answer (no network). */
  offline = false;
  endpoint = '';

  /** One commit on `revision` that adds or replaces these files; returns its sha. */
  upload(repo: string, files: Iterable<[string, Uint8Array | string]>, revision = 'main'): string {
    let r = this.repos.get(repo);
    if (!r) this.repos.set(repo, (r = { refs: new Map(), commits: new Map() }));
    const parent = r.refs.get(revision) ?? '';
    const tree = new Map(r.commits.get(parent) ?? []);
    const hash = createHash('sha1').update(`${repo}\0${revision}\0${parent}\0${r.commits.size}`);
    for (const [path, data] of files) {
      const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
      tree.set(path, bytes);
      hash.update(path).update(bytes);
    }
    const sha = hash.digest('hex');
    r.commits.set(sha, tree);
    r.refs.set(revision, sha);
    return sha;
  }

  addFile(repo: string, path: string, data: Uint8Array | string, revision = 'main'): string {
    return this.upload(repo, [[path, data]], revision);
  }

  /** Removes a branch (its commits stay reachable by sha). */
  deleteRef(repo: string, revision: string): void {
    this.repos.get(repo)?.refs.delete(revision);
  }

  /** The commit `revision` points at. */
  commit(repo: string, revision = 'main'): string | undefined {
    return this.repos.get(repo)?.refs.get(revision);
  }

  /** The files of `repo` at a revision name or a commit sha. */
  private tree(repo: string, revision: string): { sha: string; files: Map<string, Uint8Array> } | null {
    const r = this.repos.get(repo);
    if (!r) return null;
    const sha = r.commits.has(revision) ? revision : r.refs.get(revision);
    return sha ? { sha, files: r.commits.get(sha)! } : null;
  }

  /** Requests to this repo need `Authorization: Bearer <token>`. */
  gate(repo: string, token: string): void {
    this.gated.set(repo, token);
  }

  /** Destroy the connection after `atByte` the next time `file` is served past it. */
  cutOnce(plan: CutPlan): void {
    this.cut = plan;
  }

  /** The next `count` requests for `file` answer `status`. */
  failNext(file: string, status: number, count = 1, retryAfter?: string): void {
    this.failures = { file, status, remaining: count, retryAfter };
  }

  /** The next `count` serves of `file` that start at `fromByte` or later flip one byte in transit (headers still name the true sha256). */
  corruptNext(file: string, count = 1, fromByte = 1): void {
    this.corrupt = { file, remaining: count, fromByte };
  }

  /** File bytes served since the log was cleared. */
  bytesServed(file?: string): number {
    return this.requests.filter((r) => !file || r.path.endsWith(`/${file}`)).reduce((n, r) => n + r.bytes, 0);
  }

  clearLog(): void {
    this.requests.length = 0;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.endpoint = `http://127.0.0.1:${port}`;
    return this.endpoint;
  }

  /** A second server for large files (see the file comment); returns its origin. */
  async startCdn(): Promise<string> {
    this.cdnServer = createServer((req, res) => this.handle(req, res, 'cdn'));
    await new Promise<void>((resolve) => this.cdnServer!.listen(0, '127.0.0.1', resolve));
    const { port } = this.cdnServer.address() as AddressInfo;
    this.cdnOrigin = `http://127.0.0.1:${port}`;
    return this.cdnOrigin;
  }

  async stop(): Promise<void> {
    for (const server of [this.server, this.cdnServer]) {
      server?.closeAllConnections();
      await new Promise<void>((resolve) => server?.close(() => resolve()) ?? resolve());
    }
  }

  private log(req: IncomingMessage, status: number, bytes = 0): LoggedRequest {
    const server = (req.socket.localPort ?? 0) === (this.cdnServer?.address() as AddressInfo | null)?.port ? 'cdn' : 'hub';
    const entry = { method: req.method ?? 'GET', path: decodeURIComponent((req.url ?? '').split('?')[0]), range: req.headers.range ?? null, status, bytes, server, authorized: req.headers.authorization !== undefined } as LoggedRequest;
    this.requests.push(entry);
    return entry;
  }

  private cors(res: ServerResponse): void {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Range, Authorization, If-Range');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length, ETag, X-Repo-Commit, X-Linked-Size, X-Linked-Etag, Accept-Ranges');
  }

  private end(req: IncomingMessage, res: ServerResponse, status: number, body = ''): void {
    this.log(req, status);
    res.statusCode = status;
    res.end(body);
  }

  private handle(req: IncomingMessage, res: ServerResponse, server: 'hub' | 'cdn' = 'hub'): void {
    if (this.offline) {
      this.log(req, 0);
      req.socket.destroy();
      return;
    }
    this.cors(res);
    if (req.method === 'OPTIONS') return this.end(req, res, 204);
    const path = decodeURIComponent((req.url ?? '').split('?')[0]);
    const api = server === 'hub' ? path.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/) : null;
    // A gated repo's metadata is public on the hub; its files are not.
    if (api) return this.revisionInfo(req, res, api[1], api[2]);
    const resolve = server === 'hub' ? path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/) : null;
    const cdn = path.match(/^\/cdn\/([^/]+\/[^/]+)\/([^/]+)\/(.+)$/);
    const m = resolve ?? cdn;
    if (!m) return this.end(req, res, 404, 'Not found');
    const [, repo, revision, file] = m;
    const token = this.gated.get(repo);
    if (server === 'hub' && token && req.headers.authorization !== `Bearer ${token}`) return this.end(req, res, 401, 'gated');
    if (this.failures && this.failures.file === file && this.failures.remaining > 0) {
      this.failures.remaining--;
      if (this.failures.retryAfter !== undefined) res.setHeader('Retry-After', this.failures.retryAfter);
      return this.end(req, res, this.failures.status, 'injected failure');
    }
    const tree = this.tree(repo, revision);
    if (tree) res.setHeader('X-Repo-Commit', tree.sha);
    const bytes = tree?.files.get(file);
    if (!bytes) {
      res.setHeader('X-Error-Code', tree ? 'EntryNotFound' : 'RevisionNotFound');
      return this.end(req, res, 404, 'Entry not found');
    }
    // LFS files (the weights) are known by their sha256 (the LFS oid): the resolve answer names
    // it in X-Linked-Etag and the bytes carry it as their ETag. Small git files get a git-like one.
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const lfs = file.endsWith('.safetensors');
    res.setHeader('ETag', lfs ? `"${sha256}"` : `"${sha256.slice(0, 40)}"`);
    if (resolve) {
      // The hub's resolve endpoint redirects large files to its CDN (content at that commit).
      res.setHeader('X-Linked-Size', String(bytes.byteLength));
      if (lfs) res.setHeader('X-Linked-Etag', `"${sha256}"`);
      const cdnPath = `/cdn/${repo}/${tree!.sha}/${file.split('/').map(encodeURIComponent).join('/')}`;
      res.setHeader('Location', this.cdnOrigin && file.endsWith('.safetensors') ? `${this.cdnOrigin}${cdnPath}` : cdnPath);
      return this.end(req, res, 302);
    }
    this.serveBytes(req, res, file, bytes);
  }

  /** `GET /api/models/<repo>/revision/<revision>`: the commit a revision points at, as the hub answers it. */
  private revisionInfo(req: IncomingMessage, res: ServerResponse, repo: string, revision: string): void {
    const tree = this.tree(repo, revision);
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    if (!tree) {
      res.setHeader('X-Error-Code', this.repos.has(repo) ? 'RevisionNotFound' : 'RepoNotFound');
      return this.end(req, res, 404, JSON.stringify({ error: this.repos.has(repo) ? `Invalid rev id: ${revision}` : 'Repository not found' }));
    }
    const siblings = [...tree.files.keys()].sort().map((rfilename) => ({ rfilename }));
    this.end(req, res, 200, JSON.stringify({ _id: tree.sha.slice(0, 24), id: repo, modelId: repo, sha: tree.sha, private: false, gated: this.gated.has(repo) ? 'manual' : false, siblings }));
  }

  private serveBytes(req: IncomingMessage, res: ServerResponse, file: string, bytes: Uint8Array): void {
    res.setHeader('Accept-Ranges', 'bytes');
    let start = 0;
    let end = bytes.byteLength - 1;
    let status = 200;
    const range = req.headers.range;
    if (range) {
      const r = range.match(/^bytes=(\d+)-(\d*)$/);
      if (!r) return this.end(req, res, 416);
      start = Number(r[1]);
      end = r[2] === '' ? bytes.byteLength - 1 : Math.min(Number(r[2]), bytes.byteLength - 1);
      if (start >= bytes.byteLength || start > end) {
        res.setHeader('Content-Range', `bytes */${bytes.byteLength}`);
        return this.end(req, res, 416);
      }
      status = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${bytes.byteLength}`);
    }
    res.statusCode = status;
    res.setHeader('Content-Length', String(end - start + 1));
    res.setHeader('Content-Type', 'application/octet-stream');
    const entry = this.log(req, status);
    const cut = this.cut;
    if (cut && cut.file === file && start <= cut.atByte && cut.atByte < end) {
      this.cut = null;
      // Send the bytes up to the cut, let them reach the client, then drop the connection.
      entry.bytes = cut.atByte - start;
      res.flushHeaders();
      res.write(bytes.subarray(start, cut.atByte), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    let body = bytes.subarray(start, end + 1);
    if (this.corrupt && this.corrupt.file === file && this.corrupt.remaining > 0 && start >= this.corrupt.fromByte && body.byteLength > 0) {
      this.corrupt.remaining--;
      body = body.slice();
      body[body.byteLength >> 1] ^= 0x40;
    }
    entry.bytes = body.byteLength;
    res.end(body);
  }
}
