import { useState } from 'react';
import { useStudio } from '../store';
import { generate } from '../actions';
import { Section } from './Section';

/** The same prompt through the base model and through the adapter, side by side, streaming. */
export function ChatSection() {
  const chat = useStudio((s) => s.chat);
  const hasAdapter = useStudio((s) => s.train.step > 0 || !!s.imported);
  const training = useStudio((s) => ['loading', 'running', 'pausing', 'stopping'].includes(s.train.state));
  const [prompt, setPrompt] = useState('');
  const [temperature, setTemperature] = useState(0.7);
  const [topP, setTopP] = useState(0.9);
  const [maxTokens, setMaxTokens] = useState(64);
  const invalid = !(temperature >= 0 && temperature <= 2) ? 'Temperature goes from 0 (always the likeliest token) to 2.'
    : !(topP > 0 && topP <= 1) ? 'Top-p is a probability mass above 0 and at most 1.'
    : !(Number.isInteger(maxTokens) && maxTokens >= 1 && maxTokens <= 2048) ? 'Max tokens is a whole number from 1 to 2048.' : null;

  return (
    <Section id="chat" lead="Ask the base model and your adapter the same thing and compare.">
      <form
        className="chat-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (prompt.trim() && !invalid) void generate(prompt, temperature, topP, maxTokens);
        }}
      >
        <label className="wide">
          Prompt
          <textarea value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={3} />
        </label>
        <div className="row">
          <label>Temperature <input type="number" step={0.05} min={0} max={2} value={temperature} onChange={(e) => setTemperature(e.target.valueAsNumber)} /></label>
          <label>Top-p <input type="number" step={0.05} min={0} max={1} value={topP} onChange={(e) => setTopP(e.target.valueAsNumber)} /></label>
          <label>Max tokens <input type="number" step={1} min={1} max={2048} value={maxTokens} onChange={(e) => setMaxTokens(e.target.valueAsNumber)} /></label>
          <button type="submit" disabled={!prompt.trim() || !!invalid || chat.running || training}>Generate</button>
        </div>
        {invalid && <p className="field-error" role="alert">{invalid}</p>}
        {!hasAdapter && <p className="muted">Train (or import) an adapter to compare it with the base model.</p>}
        {training && <p className="muted">The GPU is busy training; pause or wait to chat.</p>}
      </form>
      <div className="chat-columns">
        <figure>
          <figcaption>Base model</figcaption>
          <pre data-testid="chat-base" aria-live="polite">{chat.base}</pre>
        </figure>
        <figure>
          <figcaption>With the adapter</figcaption>
          <pre data-testid="chat-adapter" aria-live="polite">{chat.adapter}</pre>
        </figure>
      </div>
    </Section>
  );
}
