import { MEMORY_CATEGORIES, type ByCategory } from '../../workers/util/memory-categories';
import { formatBytes } from '../format';

const DESCRIPTIONS: Record<string, string> = {
  weights: 'frozen base model (NF4 + 16-bit)',
  lora: 'LoRA A/B and their gradients',
  optimizer: 'AdamW moments',
  activations: 'kept for the backward pass',
  scratch: 'temporaries',
};

/** GPU bytes by category as one stacked bar plus a legend, against a limit when one is given. */
export function MemoryBars({ bytes, limit, label }: { bytes: ByCategory; limit?: number; label: string }) {
  const total = MEMORY_CATEGORIES.reduce((sum, c) => sum + bytes[c], 0);
  const scale = Math.max(total, limit ?? 0) || 1;
  return (
    <figure className="memory" aria-label={label}>
      <div className="memory-bar">
        {MEMORY_CATEGORIES.map((c) => (
          <span key={c} className={`mem-${c}`} style={{ width: `${(100 * bytes[c]) / scale}%` }} title={`${c}: ${formatBytes(bytes[c])}`} />
        ))}
        {limit !== undefined && <span className="memory-limit" style={{ left: `${(100 * limit) / scale}%` }} />}
      </div>
      <figcaption>
        <ul className="legend">
          {MEMORY_CATEGORIES.map((c) => (
            <li key={c}>
              <i className={`swatch mem-${c}`} /> {c} <b>{formatBytes(bytes[c])}</b> <small>{DESCRIPTIONS[c]}</small>
            </li>
          ))}
          <li>
            total <b data-testid={`${label.replace(/\s+/g, '-').toLowerCase()}-total`}>{formatBytes(total)}</b>
            {limit !== undefined && <> of {formatBytes(limit)}</>}
          </li>
        </ul>
      </figcaption>
    </figure>
  );
}
