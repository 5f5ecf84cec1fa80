import { useEffect, useState } from 'react';
import { useStudio, type MetricPoint } from '../store';
import { control, discardRun, resumeRun, startTraining } from '../actions';
import { validateSettings } from '../settings';
import { formatBytes, formatDuration, formatNumber } from '../format';
import { Section } from './Section';
import { LossChart } from './LossChart';
import { MemoryBars } from './MemoryBars';
import { ProgressBar } from './ProgressBar';
import { useTargetModules } from './SettingsSection';

const STATE_WORDS: Record<string, string> = {
  idle: 'Not started',
  loading: 'Loading the model and data…',
  running: 'Training',
  pausing: 'Pausing after this step…',
  paused: 'Paused (checkpoint saved)',
  stopping: 'Stopping after this step…',
  stopped: 'Stopped (checkpoint saved)',
  done: 'Finished',
  failed: 'Failed',
};

export function TrainSection() {
  const train = useStudio((s) => s.train);
  const hasData = useStudio((s) => !!s.dataset);
  const resumable = useStudio((s) => s.resumable);
  const settings = useStudio((s) => s.settings);
  const progress = useStudio((s) => s.progress);
  const modules = useTargetModules();
  const valid = !!settings && Object.keys(validateSettings(settings, modules)).length === 0;
  const active = ['loading', 'running', 'pausing', 'stopping'].includes(train.state);
  const tooBig = useStudio((s) => s.plan?.verdict === 'does-not-fit');
  const canTrain = hasData && valid && !tooBig && !active && train.state !== 'paused';
  // The gauge (or the engine, refusing the load) says it does not fit: offered to try regardless.
  const refused = useStudio((s) => !!s.errors.train?.anyway);
  const canTrainAnyway = (tooBig || refused) && hasData && valid && !active && train.state !== 'paused';
  const why = !hasData
    ? 'Load a dataset first (step 2).'
    : !valid
      ? 'Fix the settings marked in step 3.'
      : tooBig
        ? 'This run does not fit in GPU memory (see the gauge in step 1): lower the sequence length, the batch size or the rank.'
        : null;

  return (
    <Section id="train" lead="Train, watch the loss fall and the samples change. Pausing or closing the tab keeps a checkpoint in this browser.">
      <div className="row controls">
        <button type="button" className="primary" onClick={() => void startTraining()} disabled={!canTrain}>Train</button>
        {canTrainAnyway && <button type="button" onClick={() => void startTraining(true)} data-testid="train-anyway">Train anyway</button>}
        <button type="button" onClick={() => void control('pause')} disabled={train.state !== 'running'}>Pause</button>
        <button
          type="button"
          onClick={() => void (train.state === 'paused' ? control('resume') : resumeRun())}
          disabled={!(train.state === 'paused' || (!!resumable && !resumable.openElsewhere && !active))}
        >
          Resume
        </button>
        <button type="button" onClick={() => void control('stop')} disabled={!(train.state === 'running' || train.state === 'paused')}>Stop</button>
        <span className={`train-state state-${train.state}`} data-testid="train-state" role="status">
          {STATE_WORDS[train.state] ?? train.state}
          {train.message ? `: ${train.message}` : ''}
        </span>
      </div>
      {train.state === 'idle' && why && <p className="muted">{why}</p>}
      {['tokenize', 'checkpoint'].map((t) => progress[t] && <ProgressBar key={t} p={progress[t]} />)}
      <RunFacts />
      <LossChart />
      <LiveMemory />
      <Samples />
    </Section>
  );
}

function RunFacts() {
  const train = useStudio((s) => s.train);
  const metrics = useStudio((s) => s.metrics);
  const latest = (key: keyof MetricPoint) => metrics.findLast((m) => m[key] !== undefined)?.[key];
  const [loss, valLoss, tokensPerS, lr, epoch] = (['loss', 'valLoss', 'tokensPerS', 'lr', 'epoch'] as const).map(latest);
  const [now, setNow] = useState(() => performance.now());
  useEffect(() => {
    if (train.state !== 'running') return;
    const t = setInterval(() => setNow(performance.now()), 1000);
    return () => clearInterval(t);
  }, [train.state]);
  const stepsDone = train.step - train.startStep;
  const secondsPerStep = stepsDone > 0 ? (now - train.startedAt) / 1000 / stepsDone : NaN;
  const eta = train.state === 'running' ? (train.totalSteps - train.step) * secondsPerStep : NaN;
  return (
    <dl className="facts run-facts">
      <dt>Step</dt>
      <dd data-testid="train-step">{train.step} of {train.totalSteps || '–'}</dd>
      <dt>Epoch</dt>
      <dd>{formatNumber(epoch, 3)}</dd>
      <dt>Train loss</dt>
      <dd data-testid="train-loss">{formatNumber(loss)}</dd>
      <dt>Validation loss</dt>
      <dd data-testid="val-loss">{formatNumber(valLoss)}</dd>
      <dt>Tokens/s</dt>
      <dd>{formatNumber(tokensPerS, 3)}</dd>
      <dt>Learning rate</dt>
      <dd>{formatNumber(lr, 3)}</dd>
      <dt>Time left</dt>
      <dd>{formatDuration(eta)}</dd>
      {latest('gradNorm') !== undefined && (
        <>
          <dt>Gradient norm</dt>
          <dd>{formatNumber(latest('gradNorm'))}</dd>
        </>
      )}
    </dl>
  );
}

function LiveMemory() {
  const memory = useStudio((s) => s.memory);
  const predicted = useStudio((s) => s.plan?.peakBytes);
  if (!memory) return null;
  return (
    <div className="live-memory">
      <h3>GPU memory now</h3>
      <MemoryBars bytes={memory.live} label="GPU memory" />
      <p className="muted">
        Peak so far <span data-testid="measured-peak">{formatBytes(memory.peakTotal)}</span>
        {predicted !== undefined && <> (the planner predicted {formatBytes(predicted)})</>}; {formatBytes(memory.cachedBytes)} kept for reuse.
      </p>
    </div>
  );
}

function Samples() {
  const samples = useStudio((s) => s.samples);
  if (!samples.length) return null;
  return (
    <div className="samples">
      <h3>Samples</h3>
      <ol aria-label="Samples" reversed>
        {[...samples].reverse().map((s, i) => (
          <li key={`${s.step}-${i}`} data-testid="sample">
            <span className="sample-step">step {s.step}</span>
            <pre>
              <span className="sample-prompt">{s.prompt}</span>
              {s.text}
            </pre>
          </li>
        ))}
      </ol>
    </div>
  );
}

/** Shown after a reload or a crash when an interrupted run has a checkpoint. */
export function ResumeBanner() {
  const run = useStudio((s) => s.resumable);
  const active = useStudio((s) => ['loading', 'running', 'pausing', 'stopping', 'paused'].includes(s.train.state));
  if (!run || active) return null;
  if (run.openElsewhere) {
    return (
      <div className="banner" role="region" aria-label="Interrupted run" data-testid="resume-banner">
        <p data-testid="run-elsewhere">
          This run is open in another tab ({run.model} on {run.dataset}, step <b>{run.step}</b> of {run.totalSteps}): continue it there. It can be resumed
          here once that tab stops it or closes.
        </p>
      </div>
    );
  }
  return (
    <div className="banner" role="region" aria-label="Interrupted run" data-testid="resume-banner">
      <p>
        A training run was interrupted at step <b>{run.step}</b> of {run.totalSteps} ({run.model}{run.quantization === 'none' ? ', unquantized base' : ''} on {run.dataset}, saved{' '}
        {new Date(run.savedAt).toLocaleString()}). It can continue from that checkpoint.
      </p>
      <button type="button" className="primary" onClick={() => void resumeRun()}>Resume training from step {run.step}</button>{' '}
      <button type="button" onClick={() => void discardRun()}>Discard</button>
    </div>
  );
}
