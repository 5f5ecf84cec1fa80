import { useState } from 'react';
import { useStudio } from '../store';
import { chooseModel, deleteCached, forgetHubToken, loadModel, setHubToken, setQuantizeBase, setRememberToken } from '../actions';
import { formatBytes } from '../format';
import { Section } from './Section';
import { droppedFiles } from '../dropped-files';
import { MemoryBars } from './MemoryBars';
import { ProgressBar } from './ProgressBar';

const VERDICTS = { fits: 'Fits on this GPU', 'does-not-fit': 'Does not fit on this GPU', 'fits-shorter': 'Fits only with a shorter sequence or smaller batch' } as const;
const MODEL_TASKS = ['download', 'quantize', 'cache'];

export function ModelSection() {
  const model = useStudio((s) => s.model);
  const presets = useStudio((s) => s.presets);
  const modelInfo = useStudio((s) => s.modelInfo);
  const progress = useStudio((s) => s.progress);
  const busy = useStudio((s) => s.train.state === 'loading');
  // The engine refused the load as too big for this GPU: offered to try regardless.
  const loadAnyway = useStudio((s) => !!s.errors.model?.anyway);
  const [hubId, setHubId] = useState('');
  const [over, setOver] = useState(false);
  const preset = model.kind === 'preset' ? presets.find((p) => p.name === model.name) : undefined;

  return (
    <Section id="model" lead="Choose the model to fine-tune. The memory gauge says whether it fits before anything downloads.">
      <div className="row">
        <label>
          Preset{' '}
          <select
            aria-label="Preset"
            value={model.kind === 'preset' ? model.name : ''}
            onChange={(e) => void chooseModel({ kind: 'preset', name: e.target.value })}
          >
            {model.kind !== 'preset' && <option value="">(custom model)</option>}
            {/* The engine's presets, the offline demo first. */}
            {[...presets].sort((a, b) => Number(b.name === 'demo') - Number(a.name === 'demo')).map(({ name }) => (
              <option key={name} value={name}>{name}</option>
            ))}
          </select>
        </label>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (hubId.trim()) void chooseModel({ kind: 'hub', id: hubId.trim() });
          }}
        >
          <label>
            or a model on the Hugging Face hub{' '}
            <input value={hubId} onChange={(e) => setHubId(e.target.value)} placeholder="owner/name" aria-label="Hub model id" />
          </label>
          <button type="submit" disabled={!hubId.trim()}>Use</button>
        </form>
        <label
          className={`file-button model-drop ${over ? 'over' : ''}`}
          onDragEnter={(e) => { e.preventDefault(); setOver(true); }}
          onDragOver={(e) => e.preventDefault()}
          onDragLeave={() => setOver(false)}
          onDrop={(e) => {
            e.preventDefault();
            setOver(false);
            void droppedFiles(e.dataTransfer).then((files) => (files.length ? chooseModel({ kind: 'local', files }) : undefined));
          }}
        >
          or a model folder on this computer (choose or drop it here: config.json, *.safetensors, tokenizer files)
          <input
            type="file"
            multiple
            aria-label="Model folder"
            {...{ webkitdirectory: '' }}
            onChange={(e) => {
              const files = [...(e.target.files ?? [])];
              if (files.length) void chooseModel({ kind: 'local', files });
            }}
          />
        </label>
      </div>
      <AccessToken />
      <BaseStorage />
      {preset && <p className="preset-description">{preset.description} <small>({preset.model}, {preset.architecture})</small></p>}
      {model.kind === 'hub' && <p>Hub model <code>{model.id}</code></p>}
      {model.kind === 'local' && <p>Local model: {model.files.length} files</p>}
      <MemoryGauge />
      <div className="row">
        <button type="button" onClick={() => void loadModel()} disabled={busy}>Load model</button>
        {loadAnyway && <button type="button" onClick={() => void loadModel(true)} disabled={busy} data-testid="load-anyway">Load anyway</button>}
        {modelInfo && (
          <span data-testid="model-loaded">
            Loaded {modelInfo.id}: {modelInfo.architecture}, {modelInfo.layers} layers, {(modelInfo.parameters / 1e6).toFixed(2)} M parameters
            {modelInfo.quantization === 'none' ? ', unquantized base (f32)' : ', NF4 base'}
            {modelInfo.fromCache ? ' (from this browser’s cache)' : ''}
          </span>
        )}
      </div>
      {MODEL_TASKS.map((t) => progress[t] && <ProgressBar key={t} p={progress[t]} />)}
      <CachedModels />
    </Section>
  );
}

/** How the base is held: NF4 (QLoRA) or unquantized in f32 (plain LoRA); the gauge follows the choice. */
function BaseStorage() {
  const quantize = useStudio((s) => s.quantizeBase);
  const busy = useStudio((s) => s.train.state === 'loading');
  return (
    <div className="row base-storage">
      <label>
        <input type="checkbox" checked={quantize} disabled={busy} onChange={(e) => void setQuantizeBase(e.target.checked)} aria-label="Quantize the base to 4-bit (QLoRA)" data-testid="quantize-base" />{' '}
        Quantize the base to 4-bit (QLoRA)
      </label>
      <small className="muted">
        {quantize
          ? 'On: the base’s linear layers are stored in NF4 with double quantization, about 0.56 bytes per parameter on the GPU.'
          : 'Off: plain LoRA on the unquantized base, held in float32 on the GPU: 4 bytes per parameter (about 7× the NF4 base). For GPUs with room, and so that a run can be continued exactly on a CPU, where bitsandbytes does not run.'}
      </small>
    </div>
  );
}

/** The hub access token for gated or private models (Llama 3.2 and the like). */
function AccessToken() {
  const token = useStudio((s) => s.hubToken);
  const remember = useStudio((s) => s.rememberToken);
  return (
    <div className="row access-token">
      <label>
        Access token{' '}
        <input
          type="password"
          value={token}
          onChange={(e) => void setHubToken(e.target.value)}
          placeholder="hf_… (for gated or private models)"
          aria-label="Access token"
          autoComplete="off"
          spellCheck={false}
        />
      </label>
      <label>
        <input type="checkbox" checked={remember} onChange={(e) => setRememberToken(e.target.checked)} aria-label="Remember the access token in this browser" />{' '}
        Remember in this browser
      </label>
      <button type="button" onClick={() => void forgetHubToken()} disabled={!token && !remember}>Forget token</button>
      <small className="muted">
        Gated models (Llama 3.2…) need a token with read access from huggingface.co/settings/tokens, and their license accepted on the model page.
        It is sent only to huggingface.co and kept only in this tab unless you tick Remember.
      </small>
    </div>
  );
}

function MemoryGauge() {
  const plan = useStudio((s) => s.plan);
  const failed = useStudio((s) => !!s.errors.model);
  if (!plan) return failed ? null : <p className="muted">Working out the memory this run needs…</p>;
  return (
    <div className={`gauge verdict-${plan.verdict}`} data-testid="memory-gauge">
      <p className="verdict">
        <strong data-testid="verdict">{VERDICTS[plan.verdict]}</strong>: training needs about {formatBytes(plan.peakBytes)} of GPU memory at its peak
        {plan.suggestion && plan.verdict === 'fits-shorter' && <> (try sequence length {plan.suggestion.seq} and batch {plan.suggestion.batch})</>}.
      </p>
      <p className="muted">
        Planned against a {formatBytes(plan.gpuMemoryBytes)} GPU (browsers do not reveal how much memory the GPU has): {plan.reason}.{' '}
        {plan.checkpointing ? 'Gradient checkpointing on: each layer is computed again in backward instead of keeping its activations.' : 'No gradient checkpointing: the activations are small enough to keep.'}
      </p>
      <MemoryBars bytes={plan.byCategory} limit={plan.gpuMemoryBytes} label="Predicted memory" />
      <p className="muted">
        Largest single buffer {formatBytes(plan.largestBuffer)} (this GPU binds at most {formatBytes(plan.maxBindingSize)}, allocates at most{' '}
        {formatBytes(plan.maxBufferSize)} per buffer). Download {formatBytes(plan.downloadBytes)}; {formatBytes(plan.storageBytes)} kept in this browser’s storage.
      </p>
    </div>
  );
}

function CachedModels() {
  const cached = useStudio((s) => s.cached);
  const storage = useStudio((s) => s.storage);
  return (
    <details className="cache">
      <summary>
        Models stored in this browser ({cached.length})
        {storage && ` · ${formatBytes(storage.usage)} used of ${formatBytes(storage.quota)}`}
      </summary>
      {cached.length === 0 && <p className="muted">None yet. A loaded model is kept here so the next visit needs no download.</p>}
      <ul>
        {cached.map((m) => (
          <li key={m.key}>
            {m.id} · {formatBytes(m.bytes)} · {new Date(m.savedAt).toLocaleString()}{' '}
            <button type="button" onClick={() => void deleteCached(m.key)} aria-label={`Delete ${m.id}`}>Delete</button>
          </li>
        ))}
      </ul>
    </details>
  );
}
