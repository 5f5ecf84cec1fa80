import { useStudio } from '../store';
import { downloadAdapter, importAdapter, importRun, planExport, writeExport } from '../actions';
import { canWriteFolders } from '../export-writer';
import { formatBytes } from '../format';
import { ProgressBar } from './ProgressBar';
import { Section } from './Section';
import type { ExportFormat } from '../../workers/protocol';

const FORMATS: { format: ExportFormat; label: string; what: string }[] = [
  { format: 'peft', label: 'PEFT adapter', what: 'adapter_config.json, adapter_model.safetensors and a model card: PeftModel.from_pretrained(base, folder).' },
  { format: 'gguf', label: 'GGUF LoRA adapter', what: 'adapter.gguf for llama.cpp and LM Studio, an Ollama Modelfile that stops where training taught it to, and the card.' },
  { format: 'merged', label: 'Merged 16-bit model', what: "The base with the adapter merged in, in the hub's layout (config, sharded safetensors, tokenizer): transformers, vLLM, llama.cpp's converter." },
  { format: 'run', label: 'Run (to continue elsewhere)', what: 'The run at its newest checkpoint: adapter, AdamW moments, the examples as trained, the order of the remaining steps and run.json; continue it with PyTorch and accelerate, or import it back here.' },
];

/** The trained adapter as PEFT files, a GGUF adapter or a merged model; importing a PEFT adapter. */
export function ExportSection() {
  const hasAdapter = useStudio((s) => s.train.step > 0 || !!s.imported);
  const active = useStudio((s) => ['loading', 'running', 'pausing', 'stopping'].includes(s.train.state));
  const imported = useStudio((s) => s.imported);
  const exporting = useStudio((s) => s.exporting);
  const progress = useStudio((s) => s.progress.export);
  const { plan } = exporting;
  const busy = exporting.planning || exporting.writing;
  const blocked = !hasAdapter || active || busy;
  return (
    <Section id="export" lead="Take the adapter to Python, llama.cpp, Ollama or LM Studio, or merge it into the base.">
      <div className="row">
        <button type="button" className="primary" onClick={() => void downloadAdapter()} disabled={!hasAdapter || active}>Download adapter</button>
        <span className="muted">adapter_model.safetensors, adapter_config.json and a README model card, in one zip.</span>
      </div>
      {active && <p className="muted">Pause or stop training to export the adapter as it stands.</p>}

      <fieldset className="export-formats" disabled={blocked}>
        <legend>Other formats</legend>
        {FORMATS.map((f) => (
          <label key={f.format} className="row">
            <input type="radio" name="export-format" value={f.format} checked={exporting.format === f.format} onChange={() => void planExport(f.format)} />
            <span><strong>{f.label}</strong> <span className="muted">{f.what}</span></span>
          </label>
        ))}
        <button type="button" onClick={() => void planExport()}>{plan ? 'Check again' : 'Show the files'}</button>
      </fieldset>
      {exporting.planning && <p className="muted">Reading the adapter back and sizing the files…</p>}

      {plan && plan.format === exporting.format && (
        <div data-testid="export-plan">
          <p className="muted">
            Base model named in the files: <code>{plan.baseModel}</code>
            {plan.revision ? <> at commit <code>{plan.revision.slice(0, 12)}</code></> : ' (no hub commit known)'}
            {plan.mergedInto === 'original' && '; merged into the original 16-bit weights, read again from where the model came from'}.
          </p>
          {plan.refusals.length > 0 ? (
            <div role="alert" data-testid="export-refusals">
              <p>llama.cpp cannot load this adapter, so no GGUF is written:</p>
              <ul>{plan.refusals.map((r) => <li key={r}>{r}</li>)}</ul>
              <p className="muted">The PEFT adapter and the merged model carry it as it is.</p>
            </div>
          ) : (
            <>
              <table className="export-files">
                <thead><tr><th>file</th><th>size</th></tr></thead>
                <tbody>
                  {plan.files.map((f) => <tr key={f.name}><td><code>{f.name}</code></td><td>{formatBytes(f.bytes)}</td></tr>)}
                  <tr><td>total</td><td>{formatBytes(plan.totalBytes)}</td></tr>
                </tbody>
              </table>
              <div className="row">
                {canWriteFolders() && <button type="button" className="primary" disabled={blocked} onClick={() => void writeExport('folder')}>Write to a folder…</button>}
                <button type="button" disabled={blocked} onClick={() => void writeExport('zip')}>Download as zip</button>
                {!canWriteFolders() && <span className="muted">This browser cannot write into a folder: the files come as one zip (at most 4 GB).</span>}
              </div>
            </>
          )}
        </div>
      )}
      {progress && (exporting.writing || exporting.written) && <ProgressBar p={progress} />}
      {exporting.written && <p data-testid="export-written">{exporting.written}.</p>}

      <label className="file-button">
        Import a PEFT adapter (adapter_config.json + adapter_model.safetensors)
        <input
          type="file"
          multiple
          accept=".json,.safetensors"
          aria-label="Import adapter"
          onChange={(e) => {
            const files = [...(e.target.files ?? [])];
            if (files.length) void importAdapter(files);
            e.target.value = '';
          }}
        />
      </label>
      <label className="file-button">
        Import a run (the folder an exported run unpacks to)
        <input
          type="file"
          multiple
          aria-label="Import run folder"
          {...{ webkitdirectory: '' }}
          onChange={(e) => {
            const files = [...(e.target.files ?? [])];
            if (files.length) void importRun(files);
            e.target.value = '';
          }}
        />
      </label>
      <label className="file-button">
        Import a run (zip)
        <input
          type="file"
          accept=".zip"
          aria-label="Import run zip"
          onChange={(e) => {
            const files = [...(e.target.files ?? [])];
            if (files.length) void importRun(files);
            e.target.value = '';
          }}
        />
      </label>
      {imported && (
        <p data-testid="imported-adapter">
          Imported an adapter for {imported.baseModel}: r {imported.rank}, alpha {imported.alpha}, {imported.tensors} tensors on {imported.targetModules.join(', ')}.
          Train continues from it; Chat uses it.
        </p>
      )}
    </Section>
  );
}
