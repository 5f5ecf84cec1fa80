import { useStudio } from '../store';

const SHOWN_LIMITS = ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupsPerDimension'];

function bytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MiB` : `${n}`;
}

/** What GPU the engine got: vendor, architecture, limits, features. */
export function AdapterPanel() {
  const adapter = useStudio((s) => s.adapter);
  const status = useStudio((s) => s.status);
  if (!adapter) return <section aria-label="GPU"><h2>GPU</h2><p>Engine: {status}</p></section>;
  return (
    <section aria-label="GPU" className="panel">
      <h2>GPU</h2>
      <dl className="facts">
        <dt>Adapter</dt>
        <dd data-testid="adapter-name">
          {adapter.vendor || 'unknown vendor'} · {adapter.architecture || 'unknown architecture'}
          {adapter.isFallbackAdapter ? ' (software emulation: correct but slow)' : ''}
        </dd>
        <dt>Engine</dt>
        <dd data-testid="engine-status">{status}</dd>
        <dt>16-bit floats</dt>
        <dd>{adapter.f16Native ? 'native (shader-f16)' : 'packed in 32-bit words (no shader-f16)'}</dd>
        <dt>Features</dt>
        <dd>{adapter.features.join(', ') || 'none'}</dd>
        {SHOWN_LIMITS.map((name) => (
          <div key={name} className="fact-row">
            <dt>{name}</dt>
            <dd>{name.includes('Size') ? bytes(adapter.limits[name] ?? 0) : adapter.limits[name]}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}
