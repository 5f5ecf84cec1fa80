import { useStudio } from '../store';
import { resumeLoad } from '../actions';
import { formatBytes } from '../format';

/** Shown when a model download stopped for want of a connection: what was kept, and Resume (also automatic once back online). */
export function InterruptedLoad() {
  const interrupted = useStudio((s) => s.interruptedLoad);
  const loading = useStudio((s) => s.loadingFor !== null);
  if (!interrupted || loading) return null;
  return (
    <div className="banner" role="region" aria-label="Interrupted download" data-testid="load-interrupted">
      <p>
        The model download stopped: {interrupted.message} {formatBytes(interrupted.done)} of {formatBytes(interrupted.total)} arrived; the tensors that finished
        are kept in this browser. It resumes by itself when the connection returns.
      </p>
      <button type="button" className="primary" onClick={() => void resumeLoad()}>
        Resume download
      </button>
    </div>
  );
}
