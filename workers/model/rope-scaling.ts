/**
 * A config.json's `rope_scaling` read into the rotary table builder's `RopeScaling`: null (or
 * rope_type "default") for plain frequencies, "linear" and "llama3" with their fields; any other
 * type (dynamic, yarn, longrope, su, ...) is refused by name, as is a missing or non-numeric field.
 * transformers accepts `type` as the older spelling of `rope_type`, so this does too.
 */
import type { RopeScaling } from '../kernels/rotary';
import { ConfigError } from './config-fields';

export const SUPPORTED_ROPE_SCALING = ['linear', 'llama3'] as const;

export function ropeScalingFromConfig(raw: unknown, file = 'config.json'): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(file, 'rope_scaling', `must be an object or null, found ${JSON.stringify(raw)}`);
  const cfg = raw as Record<string, unknown>;
  const key = 'rope_type' in cfg ? 'rope_type' : 'type';
  const type = cfg[key];
  if (type === 'default') return null;
  const positive = (field: string): number => {
    const v = cfg[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ConfigError(file, `rope_scaling.${field}`, v === undefined ? `is missing (rope_type ${type})` : `must be a positive number, found ${JSON.stringify(v)}`);
    }
    return v;
  };
  if (type === 'linear') return { type, factor: positive('factor') };
  if (type === 'llama3') {
    const s: RopeScaling = {
      type,
      factor: positive('factor'),
      lowFreqFactor: positive('low_freq_factor'),
      highFreqFactor: positive('high_freq_factor'),
      originalMaxPositionEmbeddings: positive('original_max_position_embeddings'),
    };
    if (!(s.highFreqFactor > s.lowFreqFactor)) {
      throw new ConfigError(file, 'rope_scaling.high_freq_factor', `(${s.highFreqFactor}) must be above low_freq_factor (${s.lowFreqFactor})`);
    }
    return s;
  }
  throw new ConfigError(file, `rope_scaling.${key}`, `= ${JSON.stringify(type)} is not supported (supported: ${SUPPORTED_ROPE_SCALING.join(', ')}, or null)`);
}
