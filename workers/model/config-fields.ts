/**
 * Reading config.json fields with errors that name the file and the key: what every family's
 * config parser is written with.
 */
import { MAX_HEAD_DIM } from '../kernels/attention';
import type { ModelConfig } from './config';

export class ConfigError extends Error {
  constructor(file: string, key: string, message: string) {
    super(`${file}: "${key}" ${message}`);
    this.name = 'ConfigError';
  }
}

export type Json = Record<string, unknown>;

/** The first of `keys` that is set, as a finite number (or `fallback`; missing without one is an error). */
export function num(cfg: Json, file: string, keys: string[], fallback?: number): number {
  for (const k of keys) {
    if (!Object.hasOwn(cfg, k)) continue;
    const v = cfg[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(file, k, `must be a number, found ${JSON.stringify(v)}`);
    return v;
  }
  if (fallback !== undefined) return fallback;
  throw new ConfigError(file, keys[0], 'is missing');
}

/** Like `num`, and a positive integer. */
export function int(cfg: Json, file: string, keys: string[], fallback?: number): number {
  const v = num(cfg, file, keys, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(file, keys[0], `must be a positive integer, found ${v}`);
  return v;
}

/** A token id, or the first of a list of them; null when absent. */
export function optionalId(cfg: Json, key: string): number | null {
  const v = Object.hasOwn(cfg, key) ? cfg[key] : undefined;
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return null;
}

/** Refuses a key whose value (or `fallback` when absent) is not one of `allowed`; `why` says what the value would need. */
export function requireValue(cfg: Json, file: string, key: string, allowed: unknown[], fallback: unknown, why: string): void {
  const v = Object.hasOwn(cfg, key) ? cfg[key] : fallback;
  if (!allowed.some((a) => a === v)) throw new ConfigError(file, key, `= ${JSON.stringify(v)} is not supported (${why})`);
}

/** Dropout probabilities the engine does not apply must be 0. */
export function zeroDropout(cfg: Json, file: string, keys: string[]): void {
  for (const k of keys) {
    const v = Object.hasOwn(cfg, k) ? cfg[k] : undefined;
    if (v !== undefined && v !== null && v !== 0) throw new ConfigError(file, k, `= ${JSON.stringify(v)} is not supported (only 0: the engine applies no dropout there)`);
  }
}

/** Head counts and widths the attention and rotary kernels can run. */
export function checkHeads(c: ModelConfig, file: string): ModelConfig {
  if (c.hidden % c.heads !== 0 && !c.explicitHeadDim) throw new ConfigError(file, 'num_attention_heads', `(${c.heads}) does not divide hidden_size (${c.hidden})`);
  if (c.headDim > MAX_HEAD_DIM) throw new ConfigError(file, 'num_attention_heads', `gives head_dim ${c.headDim}; at most ${MAX_HEAD_DIM} is supported`);
  if (c.heads % c.kvHeads !== 0) throw new ConfigError(file, 'num_key_value_heads', `(${c.kvHeads}) does not divide num_attention_heads (${c.heads})`);
  if (c.rotaryDim % 2 !== 0 || c.rotaryDim > c.headDim) throw new ConfigError(file, 'partial_rotary_factor', `gives rotary_dim ${c.rotaryDim}; it must be even and at most head_dim ${c.headDim}`);
  return c;
}
