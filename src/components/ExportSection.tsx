import { useStudio } from '../store';
import { downloadAdapter, importAdapter } from '../actions';
import { Section } from './Section';

/** The trained adapter as PEFT files (one zip), and importing an existing PEFT adapter. */
export function ExportSection() {
  const hasAdapter = useStudio((s) => s.train.step > 0 || !!s.imported);
  const active = useStudio((s) => ['loading', 'running', 'pausing', 'stopping'].includes(s.train.state));
  const imported = useStudio((s) => s.imported);
  return (
    <Section id="export" lead="Take the adapter to Python: PeftModel.from_pretrained(base, folder) loads the unzipped folder as it is.">
      <div className="row">
        <button type="button" className="primary" onClick={() => void downloadAdapter()} disabled={!hasAdapter || active}>Download adapter</button>
        <span className="muted">adapter_model.safetensors, adapter_config.json and a README model card, in one zip.</span>
      </div>
      {active && <p className="muted">Pause or stop training to download the adapter as it stands.</p>}
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
      {imported && (
        <p data-testid="imported-adapter">
          Imported an adapter for {imported.baseModel}: r {imported.rank}, alpha {imported.alpha}, {imported.tensors} tensors on {imported.targetModules.join(', ')}.
          Train continues from it; Chat uses it.
        </p>
      )}
    </Section>
  );
}
