/**
 * Turns engine failures into words a person understands, with what to do about them. The engine
 * sends a code and the fields that locate the problem (workers/errors.ts); this reads those,
 * never the message. Every hint names something this page offers.
 */
import { errorInfo, type ErrorInfo } from '../workers/errors';
import type { SectionProblem } from './store';

/** What kind of problem each code is, as the first words of the explanation. */
const LEADS: Partial<Record<ErrorInfo['code'], string>> = {
  'storage-full': 'The browser ran out of storage space',
  'out-of-memory': 'The GPU ran out of memory',
  'device-lost': 'The GPU stopped responding',
  network: 'A download failed',
  hub: 'The hub did not give the file',
  'hub-access': 'The hub refused access',
  diverged: 'Training diverged',
  'invalid-model': 'This model cannot be used',
  'invalid-adapter': 'This adapter cannot be used',
  'does-not-fit': 'Not loaded: the memory planner predicts it does not fit',
};

function where(info: ErrorInfo): string {
  const place = [info.file, info.line !== undefined ? `line ${info.line}` : '', info.column !== undefined ? `column ${info.column}` : ''].filter(Boolean).join(', ');
  const what = [info.field ? `field "${info.field}"` : '', info.tensor ? `tensor "${info.tensor}"` : ''].filter(Boolean).join(', ');
  return [place, what].filter(Boolean).join(': ');
}

export function errorInfoOf(err: unknown): ErrorInfo | null {
  const info = (err as { info?: unknown })?.info ?? err;
  if (info && typeof info === 'object' && typeof (info as ErrorInfo).code === 'string' && typeof (info as ErrorInfo).message === 'string') return info as ErrorInfo;
  return null;
}

export function explain(err: unknown): SectionProblem {
  // An engine call's error carries its ErrorInfo; one raised on the page (storage, a fetch) is classified by its class.
  const info = errorInfoOf(err) ?? errorInfo(err);
  const lead = LEADS[info.code];
  const located = where(info);
  // The message usually names the file already; a location it does not mention is added.
  const extra = located && !info.message.includes(info.file ?? '\u0000') ? ` (${located})` : '';
  return { message: `${lead ? `${lead}: ` : ''}${info.message}${extra}`, hint: info.hint, ...(info.code === 'does-not-fit' ? { anyway: true } : {}) };
}
