/**
 * Hugging Face hub client: `resolve` URLs for a repo and revision, Range requests that follow
 * the hub's redirect to its CDN, retries with exponential backoff, and resume of an
 * interrupted body from the last byte received (the same ETag is required, so a file that
 * changed mid-download is never stitched together). The access token stays in this object and
 * goes only to the hub's own hosts, never across a redirect to another one (`hub-auth.ts`).
 */
import { rechunk, type RangeFile } from './byte-source';
import { fetchWithHubToken } from './hub-auth';

export const HF_ENDPOINT = 'https://huggingface.co';

export interface HubOptions {
  /** Hub root, e.g. `https://huggingface.co` (tests point it at a local mock). */
  endpoint?: string;
  /** Access token for gated or private repos (sent to the hub's own hosts only: `hub-auth.ts`). */
  token?: string;
  /** Attempts per request after the first (network errors, 429, 5xx, cut bodies). */
  retries?: number;
  /** First backoff delay; doubles per attempt. */
  retryDelayMs?: number;
  fetch?: typeof fetch;
  /** Called with every body piece's byte count (for progress). */
  onBytes?: (file: string, bytes: number) => void;
  /** Called before a retry, with why. */
  onRetry?: (file: string, attempt: number, reason: string) => void;
  /** The longest wait a `Retry-After` header may ask for (default 60 s); longer asks wait this long. */
  maxRetryAfterMs?: number;
}

/**
 * Milliseconds a `Retry-After` value asks to wait: delay-seconds or an HTTP date (RFC 9110
 * 10.2.3), at most `maxMs`; null when absent or unreadable (the backoff applies).
 */
export function retryAfterMs(value: string | null, maxMs: number, now = Date.now()): number | null {
  if (value === null) return null;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const at = Date.parse(text);
    if (!Number.isFinite(at)) return null;
    ms = at - now;
  }
  return Math.min(Math.max(0, ms), maxMs);
}

export class HubError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly file: string,
    readonly url: string,
    /** The repo's page on the hub, where a gated model's license is accepted (401/403 only). */
    readonly page?: string,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
const COMMIT = /^[0-9a-f]{40}$/;

/** The hub gave no answer (no network, or it is down): a cached copy may stand in. */
export function isUnreachable(err: unknown): boolean {
  return err instanceof HubError && (err.status === null || RETRYABLE_STATUS.has(err.status));
}

/** A repo id is owner/name (or name) without path tricks; a bad one is the caller's input, not a hub answer. */
function checkRepoId(repo: string): void {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repo) || repo.split('/').some((part) => /^\.+$/.test(part))) throw new RangeError(`"${repo}" is not a hub repo id (owner/name)`);
}

/**
 * A file path inside a repo, or a revision: folders are allowed in paths, but no empty, `.` or
 * `..` segment (the URL would be normalised into another repo or revision) and no backslash.
 */
function checkRepoPath(what: string, value: string, repo: string): void {
  if (value === '' || value.includes('\\') || value.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new RangeError(`${repo}: ${what} ${JSON.stringify(value)} is not a plain path inside the repository`);
  }
}

export class HubClient {
  readonly endpoint: string;
  private readonly token: string | undefined;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: HubOptions = {}) {
    this.endpoint = (options.endpoint ?? HF_ENDPOINT).replace(/\/+$/, '');
    this.token = options.token;
    this.retries = options.retries ?? 5;
    this.retryDelayMs = options.retryDelayMs ?? 500;
    this.fetchImpl = fetchWithHubToken(options.fetch ?? ((input, init) => fetch(input, init)), this.endpoint, options.token);
  }

  resolveUrl(repo: string, revision: string, path: string): string {
    checkRepoId(repo);
    checkRepoPath('revision', revision, repo);
    checkRepoPath('file', path, repo);
    const file = path.split('/').map(encodeURIComponent).join('/');
    return `${this.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`;
  }

  /** A hub file read by Range requests. */
  file(repo: string, revision: string, path: string): HttpFile {
    return new HttpFile(path, this.resolveUrl(repo, revision, path), this);
  }

  /** A small text file (config.json, the shard index); `null` when the repo has no such file. */
  async text(repo: string, revision: string, path: string, signal?: AbortSignal): Promise<string | null> {
    const url = this.resolveUrl(repo, revision, path);
    const res = await this.request(path, url, {}, signal, true);
    if (!res) return null;
    const body = new Uint8Array(await res.arrayBuffer());
    this.options.onBytes?.(path, body.byteLength);
    return new TextDecoder().decode(body);
  }

  /**
   * The commit `revision` (a branch, tag or commit) of `repo` points at now, as the hub's
   * revision endpoint (`/api/models/<repo>/revision/<revision>`, field `sha`) reports it. A
   * full 40-hex commit is its own answer. One retry only: without network the caller falls
   * back to what it cached, and should not wait through the download backoff first.
   */
  async resolveCommit(repo: string, revision: string, signal?: AbortSignal): Promise<string> {
    if (COMMIT.test(revision)) return revision;
    const file = `${repo}@${revision}`;
    const url = this.revisionUrl(repo, revision);
    const res = (await this.request(file, url, {}, signal, false, Math.min(1, this.retries)))!;
    let sha: unknown;
    try {
      sha = ((await res.json()) as { sha?: unknown }).sha;
    } catch (err) {
      throw new HubError(`${file}: the hub's revision answer is not JSON (${(err as Error).message})`, res.status, file, url);
    }
    if (typeof sha !== 'string' || !COMMIT.test(sha)) throw new HubError(`${file}: the hub's revision answer has no commit ("sha" is ${JSON.stringify(sha)})`, res.status, file, url);
    return sha;
  }

  revisionUrl(repo: string, revision: string): string {
    checkRepoId(repo);
    checkRepoPath('revision', revision, repo);
    return `${this.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
  }

  /**
   * One GET with retries for network errors and retryable statuses. Returns `null` on 404
   * when `allowMissing`, otherwise throws a HubError that says what went wrong.
   */
  async request(file: string, url: string, headers: Record<string, string>, signal?: AbortSignal, allowMissing = false, retries = this.retries): Promise<Response | null> {
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      let res: Response;
      try {
        res = await this.fetchImpl(url, { headers, signal, redirect: 'follow' });
      } catch (err) {
        if (isAbort(err) || attempt >= retries) throw networkError(err, file, url, attempt);
        await this.backoff(file, attempt, `network error: ${(err as Error).message}`, signal);
        continue;
      }
      if (res.ok) return res;
      if (res.status === 404 && allowMissing) return null;
      if (RETRYABLE_STATUS.has(res.status) && attempt < retries) {
        await res.body?.cancel();
        const asked = retryAfterMs(res.headers.get('Retry-After'), this.options.maxRetryAfterMs ?? 60_000);
        await this.backoff(file, attempt, asked === null ? `HTTP ${res.status}` : `HTTP ${res.status}, the hub asks to retry after ${Math.round(asked / 1000)} s`, signal, asked);
        continue;
      }
      await res.body?.cancel();
      throw statusError(res.status, file, url, Boolean(this.token), this.endpoint);
    }
  }

  /** Waits before retry `attempt + 1`: the doubling backoff, or longer when the server asked for it. */
  async backoff(file: string, attempt: number, reason: string, signal?: AbortSignal, atLeastMs: number | null = null): Promise<void> {
    this.options.onRetry?.(file, attempt + 1, reason);
    const ms = Math.max(this.retryDelayMs * 2 ** attempt, atLeastMs ?? 0);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  }

  /** Whether requests carry an access token (the token itself never leaves this object but to the hub). */
  get hasToken(): boolean {
    return Boolean(this.token);
  }

  get maxRetries(): number {
    return this.retries;
  }

  reportBytes(file: string, bytes: number): void {
    this.options.onBytes?.(file, bytes);
  }
}

function isAbort(err: unknown): boolean {
  return (err as Error)?.name === 'AbortError';
}

function networkError(err: unknown, file: string, url: string, attempt: number): Error {
  if (isAbort(err)) return err as Error;
  return new HubError(`${file}: network error after ${attempt + 1} attempts (${(err as Error).message}); check the connection and try again`, null, file, url);
}

function statusError(status: number, file: string, url: string, hadToken: boolean, endpoint: string): HubError {
  if (status === 401 || status === 403) {
    const repo = repoOf(url, endpoint);
    const page = repo ? modelPage(endpoint, repo) : endpoint;
    const why = hadToken
      ? `the access token was refused: accept the license on ${page} while logged in with the account that made the token, and check that the token has read access`
      : `the repo is gated or private: log in on the hub, accept the license on ${page}, and paste an access token (read access) into the Access token field of the Model section`;
    return new HubError(`${file}: HTTP ${status}: ${why}`, status, file, url, page);
  }
  if (status === 404) return new HubError(`${file}: not found on the hub (HTTP 404) at ${url}`, status, file, url);
  if (status === 416) return new HubError(`${file}: requested bytes lie beyond the end of the file (HTTP 416)`, status, file, url);
  return new HubError(`${file}: HTTP ${status} from ${url}`, status, file, url);
}

/** `owner/name` from a resolve or revision URL of this endpoint. */
function repoOf(url: string, endpoint: string): string | null {
  const rest = url.startsWith(`${endpoint}/`) ? url.slice(endpoint.length + 1) : null;
  const m = rest?.match(/^(?:api\/models\/)?([\w.-]+(?:\/[\w.-]+)?)\/(?:resolve|revision)\//);
  return m ? m[1] : null;
}

/** Where a person opens the repo (and accepts a gated model's license). */
export function modelPage(endpoint: string, repo: string): string {
  return `${endpoint.replace(/\/+$/, '')}/${repo}`;
}

/** Total size from `Content-Range: bytes a-b/total`. */
function totalFromContentRange(header: string | null): number | null {
  const m = header?.match(/^bytes \d+-\d+\/(\d+)$/);
  return m ? Number(m[1]) : null;
}

function sha256Of(etag: string | null): string | null {
  const m = etag?.trim().match(/^(?:W\/)?"?([0-9a-f]{64})"?$/i);
  return m ? m[1].toLowerCase() : null;
}

function startFromContentRange(header: string | null): number | null {
  const m = header?.match(/^bytes (\d+)-\d+\//);
  return m ? Number(m[1]) : null;
}

/** A hub file: every read is a Range request; an interrupted body resumes where it stopped. */
export class HttpFile implements RangeFile {
  private knownSize: number | null = null;
  private etag: string | null = null;
  private linkedSha256: string | null = null;

  constructor(
    readonly name: string,
    readonly url: string,
    private readonly hub: HubClient,
  ) {}

  async size(): Promise<number> {
    if (this.knownSize === null) {
      const res = (await this.hub.request(this.name, this.url, { Range: 'bytes=0-0' }))!;
      this.observe(res);
      await res.body?.cancel();
      if (this.knownSize === null) {
        const length = Number(res.headers.get('Content-Length'));
        if (res.status === 200 && Number.isFinite(length)) this.knownSize = length;
        else throw new HubError(`${this.name}: the server did not report the file size`, res.status, this.name, this.url);
      }
    }
    return this.knownSize;
  }

  stream(begin: number, end: number, chunkBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    return rechunk(this.pieces(begin, end, signal), chunkBytes, end - begin);
  }

  /** Body pieces of [begin, end) as they arrive, re-requesting from the last byte after a cut. */
  private async *pieces(begin: number, end: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    let pos = begin;
    let failures = 0;
    while (pos < end) {
      const res = (await this.hub.request(this.name, this.url, { Range: `bytes=${pos}-${end - 1}` }, signal))!;
      this.observe(res);
      // A server that ignores Range answers 200 with the whole file: skip to where we are.
      let skip = res.status === 200 ? pos : 0;
      if (res.status === 206 && startFromContentRange(res.headers.get('Content-Range')) !== pos) {
        await res.body?.cancel();
        throw new HubError(`${this.name}: asked for bytes from ${pos}, the server answered ${res.headers.get('Content-Range')}`, 206, this.name, this.url);
      }
      if (!res.body) throw new HubError(`${this.name}: empty response body`, res.status, this.name, this.url);
      const reader = res.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          let piece = value;
          if (skip > 0) {
            const drop = Math.min(skip, piece.byteLength);
            skip -= drop;
            piece = piece.subarray(drop);
          }
          if (pos + piece.byteLength > end) piece = piece.subarray(0, end - pos);
          if (piece.byteLength === 0) continue;
          pos += piece.byteLength;
          this.hub.reportBytes(this.name, piece.byteLength);
          yield piece;
          if (pos >= end) break;
        }
      } catch (err) {
        if (isAbort(err) || err instanceof HubError) throw err;
        if (++failures > this.hub.maxRetries) throw networkError(err, this.name, this.url, failures - 1);
        await this.hub.backoff(this.name, failures - 1, `connection cut at byte ${pos}: resuming`, signal);
        continue;
      } finally {
        await reader.cancel().catch(() => {});
      }
      if (pos < end) {
        // The body ended early without an error (a proxy closed it): resume from here.
        if (++failures > this.hub.maxRetries) throw new HubError(`${this.name}: the body ended at byte ${pos} of ${end}`, res.status, this.name, this.url);
        await this.hub.backoff(this.name, failures - 1, `body ended at byte ${pos}: resuming`, signal);
      }
    }
  }

  /**
   * The file's sha256 as the hub reports it: for LFS files the oid, in `X-Linked-Etag` on the
   * resolve answer and as the `ETag` of the bytes; null when no header carries 64 hex digits
   * (a small git file's ETag is its git blob hash, not a sha256).
   */
  sha256(): string | null {
    return this.linkedSha256;
  }

  /** Records the file size and ETag; a different ETag mid-download means the file changed. */
  private observe(res: Response): void {
    const sha = sha256Of(res.headers.get('X-Linked-Etag')) ?? sha256Of(res.headers.get('ETag'));
    if (sha) this.linkedSha256 = sha;
    const total = totalFromContentRange(res.headers.get('Content-Range'));
    if (total !== null) this.knownSize = total;
    const etag = res.headers.get('ETag');
    if (etag) {
      if (this.etag !== null && this.etag !== etag) {
        throw new HubError(`${this.name}: the file changed on the hub during the download (ETag ${this.etag} → ${etag}); start again`, res.status, this.name, this.url);
      }
      this.etag = etag;
    }
  }
}
