/**
 * A local stand-in for the Hugging Face hub, on 127.0.0.1: `/<repo>/resolve/<revision>/<file>`
 * answers 302 to a CDN-like path on the same server (as the hub does), which serves the bytes
 * with Range (206 + Content-Range), ETag and CORS headers. It can cut one response mid-file,
 * fail requests with a status, and require a token; it logs every request.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface LoggedRequest {
  method: string;
  path: string;
  range: string | null;
  status: number;
}

export interface CutPlan {
  /** File path inside the repo. */
  file: string;
  /** Absolute byte offset after which the connection is destroyed (once). */
  atByte: number;
}

export class MockHub {
  readonly requests: LoggedRequest[] = [];
  /** repo → revision → path → bytes. */
  private readonly repos = new Map<string, Map<string, Map<string, Uint8Array>>>();
  private readonly gated = new Map<string, string>();
  private cut: CutPlan | null = null;
  private failures: { status: number; remaining: number; file: string } | null = null;
  private server: Server | null = null;
  endpoint = '';

  addFile(repo: string, path: string, data: Uint8Array | string, revision = 'main'): void {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    let revs = this.repos.get(repo);
    if (!revs) this.repos.set(repo, (revs = new Map()));
    let files = revs.get(revision);
    if (!files) revs.set(revision, (files = new Map()));
    files.set(path, bytes);
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
  failNext(file: string, status: number, count = 1): void {
    this.failures = { file, status, remaining: count };
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

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  private log(req: IncomingMessage, status: number): void {
    this.requests.push({ method: req.method ?? 'GET', path: decodeURIComponent((req.url ?? '').split('?')[0]), range: req.headers.range ?? null, status });
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

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.cors(res);
    if (req.method === 'OPTIONS') return this.end(req, res, 204);
    const path = decodeURIComponent((req.url ?? '').split('?')[0]);
    const resolve = path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const cdn = path.match(/^\/cdn\/([^/]+\/[^/]+)\/([^/]+)\/(.+)$/);
    const m = resolve ?? cdn;
    if (!m) return this.end(req, res, 404, 'Not found');
    const [, repo, revision, file] = m;
    const token = this.gated.get(repo);
    if (resolve && token && req.headers.authorization !== `Bearer ${token}`) return this.end(req, res, 401, 'gated');
    if (this.failures && this.failures.file === file && this.failures.remaining > 0) {
      this.failures.remaining--;
      return this.end(req, res, this.failures.status, 'injected failure');
    }
    const bytes = this.repos.get(repo)?.get(revision)?.get(file);
    if (!bytes) {
      res.setHeader('X-Error-Code', 'EntryNotFound');
      return this.end(req, res, 404, 'Entry not found');
    }
    const etag = `"${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}"`;
    res.setHeader('ETag', etag);
    res.setHeader('X-Repo-Commit', 'c0ffee' + revision);
    if (resolve) {
      // The hub's resolve endpoint redirects large files to its CDN.
      res.setHeader('X-Linked-Size', String(bytes.byteLength));
      res.setHeader('Location', `/cdn/${repo}/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`);
      return this.end(req, res, 302);
    }
    this.serveBytes(req, res, file, bytes);
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
    this.log(req, status);
    const cut = this.cut;
    if (cut && cut.file === file && start <= cut.atByte && cut.atByte < end) {
      this.cut = null;
      // Send the bytes up to the cut, let them reach the client, then drop the connection.
      res.flushHeaders();
      res.write(bytes.subarray(start, cut.atByte), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(bytes.subarray(start, end + 1));
  }
}
