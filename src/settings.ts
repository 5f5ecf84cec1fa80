/**
 * The settings form's view of the run contract (workers/run/settings.ts): the same limits the
 * engine enforces, keyed by field so each message shows next to its input. The engine checks
 * again whatever it receives; the page checks early only to explain inline.
 */
import { validateRunSettings, type RunSettings } from '../workers/run/settings';

export type SettingsErrors = Partial<Record<keyof RunSettings, string>>;

/** Every problem with `s`, keyed by field; empty when the settings can start a run. */
export function validateSettings(s: RunSettings, availableModules: string[]): SettingsErrors {
  const e: SettingsErrors = {};
  for (const p of validateRunSettings(s, availableModules)) e[p.setting] ??= p.message;
  return e;
}

export const SCHEDULES = [
  { value: 'constant', label: 'constant' },
  { value: 'constant_with_warmup', label: 'constant with warmup' },
  { value: 'linear', label: 'linear decay' },
  { value: 'cosine', label: 'cosine decay' },
] as const;
