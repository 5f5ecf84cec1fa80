/**
 * Learning-rate schedules with transformers' semantics (optimization.py): the lr used by
 * optimizer step s (0-based, the scheduler is stepped after each optimizer step) is
 * baseLr · λ(s). λ is computed in f64 like the Python it mirrors.
 */

export type ScheduleName = 'constant' | 'constant_with_warmup' | 'linear' | 'cosine';
export const SCHEDULE_NAMES: readonly ScheduleName[] = ['constant', 'constant_with_warmup', 'linear', 'cosine'];

export interface ScheduleSettings {
  name: ScheduleName;
  /** Warmup in optimizer steps; wins over warmupRatio when > 0 (as in TrainingArguments). */
  warmupSteps?: number;
  /** Fraction of the total steps: warmup = ceil(ratio · total). */
  warmupRatio?: number;
  /** Cosine only: number of half-waves (transformers' default 0.5 = one half cosine). */
  numCycles?: number;
}

/** TrainingArguments.get_warmup_steps: warmup_steps if > 0 else ceil(total · warmup_ratio). */
export function warmupStepsFor(s: ScheduleSettings, totalSteps: number): number {
  if (s.warmupSteps && s.warmupSteps > 0) return s.warmupSteps;
  return Math.ceil(totalSteps * (s.warmupRatio ?? 0));
}

/** λ(step) for a run of `totalSteps` optimizer steps. */
export function lrLambda(s: ScheduleSettings, step: number, totalSteps: number): number {
  const warmup = warmupStepsFor(s, totalSteps);
  const warming = step < warmup;
  const warm = step / Math.max(1, warmup);
  switch (s.name) {
    case 'constant':
      return 1;
    case 'constant_with_warmup':
      return warming ? warm : 1;
    case 'linear':
      return warming ? warm : Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmup));
    case 'cosine': {
      if (warming) return warm;
      const progress = (step - warmup) / Math.max(1, totalSteps - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * (s.numCycles ?? 0.5) * 2 * progress)));
    }
    default:
      throw new RangeError(`unknown lr schedule "${(s as { name: string }).name}"; known: ${SCHEDULE_NAMES.join(', ')}`);
  }
}

/** The learning rate optimizer step `step` (0-based) runs with. */
export function scheduledLr(baseLr: number, s: ScheduleSettings, step: number, totalSteps: number): number {
  return baseLr * lrLambda(s, step, totalSteps);
}
