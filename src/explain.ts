/** Turns engine failures into words a person understands, with what to do about them. */
import type { SectionProblem } from './store';

export function explain(err: unknown): SectionProblem {
  const message = err instanceof Error ? err.message : String(err);
  const name = err instanceof Error ? err.name : '';
  if (/QuotaExceeded/i.test(name) || /quota/i.test(message)) {
    return { message: `The browser ran out of storage space: ${message}`, hint: 'Delete cached models you no longer need (Model section), or free disk space, then try again.' };
  }
  if (/out of memory|OOM|allocation failed|Failed to allocate/i.test(message)) {
    return { message: `The GPU ran out of memory: ${message}`, hint: 'Lower the sequence length or batch size, or the LoRA rank, and try again. The memory gauge in the Model section predicts what fits.' };
  }
  if (/device.*lost|lost.*device/i.test(message)) {
    return { message: `The GPU stopped responding: ${message}`, hint: 'Reload the page. Training continues from its last checkpoint.' };
  }
  if (/Failed to fetch|NetworkError|network/i.test(message)) {
    return { message: `A download failed: ${message}`, hint: 'Check the connection and try again; finished files are kept.' };
  }
  return { message };
}
