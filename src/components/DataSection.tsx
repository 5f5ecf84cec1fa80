import { useState, type DragEvent } from 'react';
import { useStudio } from '../store';
import { loadDataset, remapDataset, updateSettings } from '../actions';
import { Section } from './Section';
import type { ColumnMapping, DataError, DatasetSummary } from '../../workers/protocol';

const ACCEPT = '.jsonl,.json,.csv,.tsv,.parquet,.txt';

export function DataSection() {
  const file = useStudio((s) => s.datasetFile);
  const summary = useStudio((s) => s.dataset);
  const error = useStudio((s) => s.dataError);
  const busy = useStudio((s) => s.dataBusy);
  const ready = useStudio((s) => !!s.settings);
  const [over, setOver] = useState(false);
  const [hubId, setHubId] = useState('');

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    const dropped = e.dataTransfer.files[0];
    if (dropped) void loadDataset({ file: dropped });
  };

  return (
    <Section id="data" lead="Drag in the examples to learn from: JSONL, JSON, CSV, TSV or Parquet. Nothing leaves this computer.">
      <div
        role="region"
        aria-label="Dataset"
        className={`dropzone ${over ? 'over' : ''}`}
        onDragEnter={(e) => { e.preventDefault(); setOver(true); }}
        onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; }}
        onDragLeave={() => setOver(false)}
        onDrop={onDrop}
      >
        <p>{busy ? `Reading ${file}…` : file ? `Drop another file to replace ${file}` : 'Drop a dataset file here'}</p>
        <label className="file-button">
          Choose a file
          <input
            type="file"
            accept={ACCEPT}
            disabled={!ready}
            onChange={(e) => {
              const chosen = e.target.files?.[0];
              if (chosen) void loadDataset({ file: chosen });
              e.target.value = '';
            }}
          />
        </label>
      </div>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (hubId.trim()) void loadDataset({ hubId: hubId.trim() });
        }}
      >
        <label>
          or a dataset on the Hugging Face hub{' '}
          <input value={hubId} onChange={(e) => setHubId(e.target.value)} placeholder="owner/name" aria-label="Hub dataset id" />
        </label>
        <button type="submit" disabled={!hubId.trim() || !ready}>Load</button>
      </form>
      {error && <DataErrorView error={error} />}
      {summary && <DatasetView summary={summary} />}
    </Section>
  );
}

function DataErrorView({ error }: { error: DataError }) {
  // Parser messages may start with "file:line:column:"; the location is already spelled out.
  const escaped = error.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const message = error.message.replace(new RegExp(`^${escaped}(:\\d+){0,2}:\\s*`), '');
  const where = [error.file, error.line !== null ? `line ${error.line}` : null, error.column !== null ? `column ${error.column}` : null].filter(Boolean).join(', ');
  return (
    <div role="alert" className="problem" data-testid="data-error">
      <strong>{where}: {message}</strong>
      <p>Fix the file and drop it again. Nothing else was changed.</p>
    </div>
  );
}

function DatasetView({ summary }: { summary: DatasetSummary }) {
  const fraction = useStudio((s) => s.settings?.validationFraction ?? 0.1);
  return (
    <div className="dataset" data-testid="dataset-summary">
      <p>
        <strong>{summary.file}</strong>: {summary.rows} rows · <span data-testid="split">{summary.train} for training, {summary.validation} held out for validation</span>
        {summary.template ? ` · template ${summary.template}` : ''}
      </p>
      {summary.template === 'ds1000' && (
        <p className="warning">DS-1000 has only a test split: after training on it, scoring the model on DS-1000 is contaminated.</p>
      )}
      {summary.warnings.map((w) => (
        <p key={w} className="warning">{w}</p>
      ))}
      <label>
        Validation fraction{' '}
        <input type="number" min={0} max={0.5} step={0.05} value={fraction} onChange={(e) => updateSettings({ validationFraction: e.target.valueAsNumber })} />
      </label>{' '}
      <button type="button" onClick={() => summary.mapping && void remapDataset(summary.mapping, summary.template)} disabled={!summary.mapping}>Split again</button>
      <Mapping summary={summary} />
      {summary.preview && (
        <figure className="preview" aria-label="Example preview">
          <figcaption>One example as the model sees it. <mark className="masked">Shaded text</mark> is the prompt: no loss is taken on it. The rest is learned.</figcaption>
          <pre>
            {summary.preview.parts.map((part, i) =>
              part.learn ? (
                <span key={i} data-testid="preview-learned">{part.text}</span>
              ) : (
                <mark key={i} className="masked" data-testid="preview-masked">{part.text}</mark>
              ),
            )}
          </pre>
        </figure>
      )}
      {summary.tokens && <TokenHistogram tokens={summary.tokens} />}
    </div>
  );
}

function Mapping({ summary }: { summary: DatasetSummary }) {
  const [mapping, setMapping] = useState<ColumnMapping>(summary.mapping ?? { kind: 'prompt-response', prompt: summary.columns[0] ?? '', response: summary.columns[1] ?? '' });
  const column = (value: string, onChange: (v: string) => void, label: string) => (
    <label>
      {label}{' '}
      <select value={value} onChange={(e) => onChange(e.target.value)} aria-label={`${label} column`}>
        {summary.columns.map((c) => (
          <option key={c} value={c}>{c}</option>
        ))}
      </select>
    </label>
  );
  return (
    <fieldset className="mapping">
      <legend>Columns</legend>
      <label>
        Learn from{' '}
        <select
          value={mapping.kind}
          onChange={(e) => {
            const [a = '', b = ''] = summary.columns;
            const kind = e.target.value as ColumnMapping['kind'];
            setMapping(kind === 'prompt-response' ? { kind, prompt: a, response: b } : kind === 'text' ? { kind, text: a } : { kind, messages: a });
          }}
        >
          <option value="prompt-response">a prompt and a response</option>
          <option value="text">one text column</option>
          <option value="messages">a chat (messages column)</option>
        </select>
      </label>
      {mapping.kind === 'prompt-response' && (
        <>
          {column(mapping.prompt, (prompt) => setMapping({ ...mapping, prompt }), 'Prompt')}
          {column(mapping.response, (response) => setMapping({ ...mapping, response }), 'Response')}
        </>
      )}
      {mapping.kind === 'text' && column(mapping.text, (text) => setMapping({ ...mapping, text }), 'Text')}
      {mapping.kind === 'messages' && column(mapping.messages, (messages) => setMapping({ ...mapping, messages }), 'Messages')}
      <button type="button" onClick={() => void remapDataset(mapping)}>Apply mapping</button>
    </fieldset>
  );
}

function TokenHistogram({ tokens }: { tokens: NonNullable<DatasetSummary['tokens']> }) {
  const { edges, counts } = tokens.histogram;
  const top = Math.max(1, ...counts);
  return (
    <figure className="histogram" aria-label="Token lengths">
      <figcaption>
        Tokens per example: mean {tokens.mean.toFixed(1)}, 95% below {tokens.p95}, longest {tokens.max}
        {tokens.truncated > 0 ? ` · ${tokens.truncated} examples cut to the sequence length` : ''} · {tokens.labelTokens} learned tokens
      </figcaption>
      <div className="bars">
        {counts.map((c, i) => (
          <span key={i} style={{ height: `${(100 * c) / top}%` }} title={`${edges[i]}–${edges[i + 1]} tokens: ${c}`} />
        ))}
      </div>
      <div className="axis"><span>{edges[0]}</span><span>{edges[edges.length - 1]} tokens</span></div>
    </figure>
  );
}
