/**
 * Where the hub access token may go. The token is sent as `Authorization: Bearer` only to the
 * hub's own hosts:
 * - the endpoint's origin (scheme, host and port: `https://huggingface.co`, or a local mock);
 * - for the public hub (endpoint host `huggingface.co`), also `https://<sub>.huggingface.co`
 *   (the dataset viewer `datasets-server.huggingface.co`, `cdn-lfs*.huggingface.co`).
 * Nothing else receives it: not `*.hf.co` or xethub CDN hosts (their redirect URLs are signed
 * and need no token), not look-alikes (`huggingface.co.evil.example`), not plain http.
 *
 * Redirects are followed deliberately, hop by hop (`redirect: 'manual'`), so each hop gets the
 * header only if its own host is in scope: the hub's 302 to its CDN never carries the token.
 * Browsers hide a redirect from scripts (an `opaqueredirect` answer without Location); there the
 * request is repeated with `redirect: 'follow'`, and the browser itself removes Authorization
 * on a hop to another origin (Fetch standard, HTTP-redirect fetch; Chrome, Firefox and Safari
 * do). Without a token, requests follow redirects as usual: there is nothing to keep back.
 */

export const PUBLIC_HUB_HOST = 'huggingface.co';
const MAX_REDIRECTS = 10;
const REDIRECT = new Set([301, 302, 303, 307, 308]);

/** Whether `url` is one of the hub's own hosts for a client of `endpoint` (see above). */
export function sendsTokenTo(endpoint: string, url: string): boolean {
  let target: URL;
  let hub: URL;
  try {
    target = new URL(url);
    hub = new URL(endpoint);
  } catch {
    return false;
  }
  if (target.origin === hub.origin) return true;
  return hub.hostname === PUBLIC_HUB_HOST && target.protocol === 'https:' && target.port === '' && target.hostname.endsWith(`.${PUBLIC_HUB_HOST}`);
}

/**
 * A fetch that adds `Authorization: Bearer <token>` to requests for the hub's own hosts and
 * to no other, on every redirect hop. Any Authorization the caller set is dropped too (the
 * token lives here only). Without a token it is `fetchImpl` as it is.
 */
export function fetchWithHubToken(fetchImpl: typeof fetch, endpoint: string, token: string | undefined): typeof fetch {
  if (!token) return fetchImpl;
  // Once a redirect came back opaque, this platform hides redirects: follow them natively from then on.
  let opaqueRedirects = false;
  return async (input, init = {}) => {
    let url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    let method = init.method ?? (input instanceof Request ? input.method : 'GET');
    const base = new Headers(input instanceof Request ? input.headers : undefined);
    new Headers(init.headers).forEach((value, key) => base.set(key, value));
    base.delete('Authorization');
    const headersFor = (target: string) => {
      const h = new Headers(base);
      if (sendsTokenTo(endpoint, target)) h.set('Authorization', `Bearer ${token}`);
      return h;
    };
    const follow = init.redirect === undefined || init.redirect === 'follow';
    if (!follow || opaqueRedirects) return fetchImpl(url, { ...init, method, headers: headersFor(url) });
    for (let hop = 0; ; hop++) {
      const res = await fetchImpl(url, { ...init, method, headers: headersFor(url), redirect: 'manual' });
      if (res.type === 'opaqueredirect') {
        opaqueRedirects = true;
        return fetchImpl(url, { ...init, method, headers: headersFor(url), redirect: 'follow' });
      }
      const location = REDIRECT.has(res.status) ? res.headers.get('Location') : null;
      if (location === null) return res;
      await res.body?.cancel();
      if (hop >= MAX_REDIRECTS) throw new TypeError(`more than ${MAX_REDIRECTS} redirects from ${url}`);
      const next = new URL(location, url);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new TypeError(`redirect from ${url} to a ${next.protocol} URL`);
      url = next.href;
      if (res.status === 303 && method !== 'HEAD') method = 'GET';
    }
  };
}
