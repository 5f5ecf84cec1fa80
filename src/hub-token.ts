/**
 * Where the page keeps the hub access token: in memory (the store) by default; in this
 * browser's localStorage only when the person ticks "Remember in this browser", and removed
 * from there when they untick it or press Forget. Storage that is unavailable (private
 * windows, blocked storage) just means nothing is remembered.
 */
const KEY = 'qlora-studio:hub-token';

export function rememberedToken(): string | null {
  try {
    return globalThis.localStorage?.getItem(KEY) || null;
  } catch {
    return null;
  }
}

/** Keeps `token` in this browser; an empty token removes what was kept. */
export function rememberToken(token: string): void {
  try {
    if (token) globalThis.localStorage?.setItem(KEY, token);
    else globalThis.localStorage?.removeItem(KEY);
  } catch {
    // Nothing is remembered where storage is blocked; the token still works for this visit.
  }
}

export function forgetRememberedToken(): void {
  try {
    globalThis.localStorage?.removeItem(KEY);
  } catch {
    // Nothing was kept.
  }
}
