import type { TaskProgress } from '../store';
import { formatBytes, formatDuration } from '../format';

const TASK_NAMES: Record<string, string> = {
  download: 'Download',
  quantize: 'Quantize to NF4',
  tokenize: 'Tokenize',
  checkpoint: 'Checkpoint',
  cache: 'Save to cache',
  export: 'Export',
};

/** A long task: how far, how fast, how long still. */
export function ProgressBar({ p }: { p: TaskProgress }) {
  const fraction = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
  const amount = (n: number) => (p.unit === 'bytes' ? formatBytes(n) : `${Math.round(n)}${p.unit ? ` ${p.unit}` : ''}`);
  const rate = p.unit === 'bytes' ? `${formatBytes(p.rate)}/s` : `${p.rate.toFixed(1)}${p.unit ? ` ${p.unit}` : ''}/s`;
  const finished = p.done >= p.total && p.total > 0;
  return (
    <div className="progress" data-testid={`progress-${p.task}`}>
      <label>
        {TASK_NAMES[p.task] ?? p.task}
        {p.detail ? ` · ${p.detail}` : ''}
        <progress value={fraction} max={1} aria-label={TASK_NAMES[p.task] ?? p.task} />
      </label>
      <span className="progress-facts">
        {amount(p.done)} of {amount(p.total)}
        {!finished && p.rate > 0 && ` · ${rate} · ${formatDuration(p.eta)} left`}
        {finished && ' · done'}
      </span>
    </div>
  );
}
