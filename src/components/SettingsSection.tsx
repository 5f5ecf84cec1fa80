import { useStudio } from '../store';
import { updateSettings } from '../actions';
import { SCHEDULES, validateSettings } from '../settings';
import { Section } from './Section';
import type { Schedule, RunSettings } from '../../workers/protocol';

type NumericKey = { [K in keyof RunSettings]: RunSettings[K] extends number ? K : never }[keyof RunSettings];

export function useTargetModules(): string[] {
  return useStudio((s) => {
    if (s.modelInfo) return s.modelInfo.targetModules;
    const model = s.model;
    const preset = model.kind === 'preset' ? s.presets.find((p) => p.name === model.name) : undefined;
    return preset?.targetModules ?? EMPTY;
  });
}
const EMPTY: string[] = [];

export function SettingsSection() {
  const settings = useStudio((s) => s.settings);
  const modules = useTargetModules();
  const locked = useStudio((s) => ['loading', 'running', 'pausing', 'paused'].includes(s.train.state));
  if (!settings) return <Section id="settings" lead="How the adapter is trained."><p className="muted">Waiting for the engine…</p></Section>;
  const errors = validateSettings(settings, modules);

  const num = (key: NumericKey, label: string, help: string, attrs: { step?: number | 'any'; min?: number; max?: number } = {}) => (
    <div className={`field ${errors[key] ? 'invalid' : ''}`}>
      <label htmlFor={`s-${key}`}>{label}</label>
      <input
        id={`s-${key}`}
        type="number"
        step={attrs.step ?? 1}
        min={attrs.min}
        max={attrs.max}
        value={Number.isNaN(settings[key]) ? '' : settings[key]}
        aria-invalid={!!errors[key]}
        aria-describedby={`s-${key}-help`}
        onChange={(e) => updateSettings({ [key]: e.target.value === '' ? NaN : Number(e.target.value) } as Partial<RunSettings>)}
      />
      <small id={`s-${key}-help`} className={errors[key] ? 'field-error' : 'help'} role={errors[key] ? 'alert' : undefined}>
        {errors[key] ?? help}
      </small>
    </div>
  );

  return (
    <Section id="settings" lead="How the adapter is trained. The preset's values are a good start; invalid values are explained next to the field.">
      <fieldset disabled={locked} className="settings">
        <legend>LoRA</legend>
        {num('rank', 'Rank (r)', 'Size of the low-rank update; 8–64 is typical.', { min: 1 })}
        {num('alpha', 'Alpha', 'The update is scaled by alpha ÷ rank.', { step: 'any', min: 0 })}
        {num('dropout', 'Dropout', 'Dropout on the LoRA input, 0 to turn off.', { step: 0.01, min: 0, max: 0.99 })}
        <div className={`field wide ${errors.targetModules ? 'invalid' : ''}`} role="group" aria-label="Target modules">
          <span className="label">Target modules</span>
          <span className="checks">
            {modules.map((m) => (
              <label key={m}>
                <input
                  type="checkbox"
                  checked={settings.targetModules.includes(m)}
                  onChange={(e) =>
                    updateSettings({ targetModules: e.target.checked ? [...settings.targetModules, m] : settings.targetModules.filter((x) => x !== m) })
                  }
                />{' '}
                {m}
              </label>
            ))}
          </span>
          <small className={errors.targetModules ? 'field-error' : 'help'} role={errors.targetModules ? 'alert' : undefined}>
            {errors.targetModules ?? 'The linear layers of this architecture that get a LoRA adapter.'}
          </small>
        </div>
      </fieldset>
      <fieldset disabled={locked} className="settings">
        <legend>Optimizer</legend>
        {num('learningRate', 'Learning rate', 'AdamW step size; 2e-4 suits most LoRA runs.', { step: 'any', min: 0 })}
        <div className="field">
          <label htmlFor="s-schedule">Schedule</label>
          <select id="s-schedule" value={settings.schedule} onChange={(e) => updateSettings({ schedule: e.target.value as Schedule })}>
            {SCHEDULES.map((s) => (
              <option key={s.value} value={s.value}>{s.label}</option>
            ))}
          </select>
          <small className="help">How the learning rate changes over the run (Hugging Face's schedules).</small>
        </div>
        {num('warmupRatio', 'Warmup ratio', 'Fraction of the steps spent ramping the learning rate up.', { step: 0.01, min: 0, max: 0.99 })}
        {num('warmupSteps', 'Warmup steps', 'Overrides the ratio when above 0.', { min: 0 })}
      </fieldset>
      <fieldset disabled={locked} className="settings">
        <legend>Length and batches</legend>
        {num('epochs', 'Epochs', 'Passes over the training split.', { step: 'any', min: 0 })}
        {num('maxSteps', 'Max steps', 'Optimizer steps; 0 means "use the epochs".', { min: 0 })}
        {num('batchSize', 'Batch size', 'Sequences per micro-batch on the GPU.', { min: 1 })}
        {num('gradAccum', 'Gradient accumulation', 'Micro-batches per optimizer step.', { min: 1 })}
        {num('seqLength', 'Sequence length', 'Tokens per example; longer ones are cut.', { min: 8 })}
        {num('seed', 'Seed', 'Same seed, data and settings give the same run.', { min: 0 })}
        <p className="help wide" data-testid="accumulation-help">
          Gradient accumulation sums the per-token losses of all micro-batches of a step and divides by their total number of learned (label) tokens,
          so a step with accumulation gives the same gradient as one big batch, however the tokens fall into micro-batches.
        </p>
      </fieldset>
      <fieldset disabled={locked} className="settings">
        <legend>During the run</legend>
        {num('evalEvery', 'Evaluate every', 'Steps between validation losses; 0 turns it off.', { min: 0 })}
        {num('sampleEvery', 'Sample every', 'Steps between sample generations; 0 turns it off.', { min: 0 })}
        {num('checkpointEvery', 'Checkpoint every', 'Steps between checkpoints saved in this browser.', { min: 0 })}
      </fieldset>
    </Section>
  );
}
