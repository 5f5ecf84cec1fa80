/**
 * An Ollama Modelfile for the exported GGUF adapter: `FROM` the base model's GGUF (a placeholder
 * path, with the llama.cpp commands that make it), `ADAPTER` the LoRA GGUF, a `TEMPLATE` that lays
 * a prompt out exactly as training did (workers/data/templates.ts), and `PARAMETER stop` for the
 * end-of-sequence text training appended, so generation stops where training taught it to.
 *
 * Ollama templates are Go templates: `{{ .System }}`, `{{ .Prompt }}` and `{{ .Response }}` are
 * the slots; a reply is generated where `{{ .Response }}` stands, and the text after it closes a
 * past turn in the history. Literal `{{` is written as
 * `{{ "{{" }}`.
 */
import type { PresetName } from '../data/types';
import type { ChatMessage } from '../tokenizer';

export type PromptFormat =
  /** A dataset preset (ds1000, counseling). */
  | { kind: 'preset'; preset: PresetName }
  /** A prompt/response column mapping (`### Instruction:` layout). */
  | { kind: 'instruction' }
  /** A text column: the whole text learned, no prompt layout. */
  | { kind: 'text' }
  /** A messages column rendered with the tokenizer's chat template. */
  | {
      kind: 'chat';
      tokenizer: { applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string };
      /** The BOS text, when the chat template writes it: llama.cpp adds BOS itself (add_bos_token). */
      bosToken?: string;
    };

export interface OllamaTemplate {
  template: string;
  /** A default SYSTEM text, where the format has a slot that training always filled. */
  system?: string;
  stops: string[];
  /** Why the template is less than exact, when it is. */
  notes: string[];
}

/** Literal text inside a Go template. */
function literal(text: string): string {
  return text.replace(/\{\{/g, '{{ "{{" }}');
}

const PROMPT = '{{ .Prompt }}';
const RESPONSE = '{{ .Response }}';
const SYSTEM = '{{ .System }}';

/** Sentinels that no chat template produces by itself. */
const S = '\u0001SYSTEM\u0001';
const U = '\u0001PROMPT\u0001';
const R = '\u0001RESPONSE\u0001';

/**
 * A chat template's layout, found by rendering sentinel messages: what comes before the user's
 * text, between it and the answer (the generation prompt), after the answer, and the system block.
 */
function chatTemplate(format: Extract<PromptFormat, { kind: 'chat' }>, eos: string): OllamaTemplate {
  const notes: string[] = [];
  const bos = format.bosToken;
  const render = (messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }) => {
    const text = format.tokenizer.applyChatTemplate(messages, options);
    return bos && text.startsWith(bos) ? text.slice(bos.length) : text;
  };
  const withGen = render([{ role: 'user', content: U }], { addGenerationPrompt: true });
  if (bos && format.tokenizer.applyChatTemplate([{ role: 'user', content: U }], { addGenerationPrompt: true }).startsWith(bos)) {
    notes.push(`the chat template's leading ${bos} is left out: llama.cpp adds BOS itself`);
  }
  const withAnswer = render([
    { role: 'user', content: U },
    { role: 'assistant', content: R },
  ]);
  const u = withGen.indexOf(U);
  const r = withAnswer.indexOf(R);
  if (u < 0 || r < 0 || !withAnswer.slice(0, r).startsWith(withGen)) {
    // The answer does not simply follow the generation prompt: the prompt text alone is sent.
    return { template: `${PROMPT}${RESPONSE}`, stops: [eos], notes: ['the chat template does not render a reply after its generation prompt; the prompt is sent as it is'] };
  }
  const before = withGen.slice(0, u);
  const genPrompt = withGen.slice(u + U.length);
  const afterAnswer = withAnswer.slice(r + R.length);
  // Text a template puts between the generation prompt and a finished answer (Llama-2's space
  // after [/INST]) was learned as part of the answer: it is written only around a past answer.
  const lead = withAnswer.slice(withGen.length, r);
  const answer = `${lead ? `{{ if .Response }}${literal(lead)}{{ end }}` : ''}${RESPONSE}${literal(afterAnswer)}`;
  // The system block: what a system message adds in front of the user turn.
  try {
    const withSystem = render(
      [
        { role: 'system', content: S },
        { role: 'user', content: U },
      ],
      { addGenerationPrompt: true },
    );
    const s = withSystem.indexOf(S);
    const uu = withSystem.indexOf(U);
    if (s >= 0 && uu > s && withSystem.endsWith(withGen.slice(u))) {
      // A common start (a BOS), then the system block, then the user turn as it is without one.
      let common = 0;
      while (common < before.length && common < s && withSystem[common] === before[common]) common++;
      const restOfUser = before.slice(common);
      const block = withSystem.slice(common, uu - restOfUser.length);
      if (withSystem.slice(0, uu).endsWith(restOfUser) && block.includes(S)) {
        const at = block.indexOf(S);
        const systemBlock = `{{ if .System }}${literal(block.slice(0, at))}${SYSTEM}${literal(block.slice(at + S.length))}{{ end }}`;
        return {
          template: `${literal(before.slice(0, common))}${systemBlock}${literal(restOfUser)}${PROMPT}${literal(genPrompt)}${answer}`,
          stops: chatStops(afterAnswer, eos),
          notes,
        };
      }
    }
    notes.push('the chat template places a system message in a way the Modelfile cannot follow; SYSTEM is ignored');
  } catch {
    notes.push('the chat template has no system role; SYSTEM is ignored');
  }
  return { template: `${literal(before)}${PROMPT}${literal(genPrompt)}${answer}`, stops: chatStops(afterAnswer, eos), notes };
}

/** EOS, and the marker that closes an assistant turn when the template has one (`<|im_end|>`). */
function chatStops(afterAnswer: string, eos: string): string[] {
  const marker = afterAnswer.trim();
  return [...new Set([eos, ...(marker && !marker.includes('\n') ? [marker] : [])])];
}

/**
 * The Ollama TEMPLATE (and stops) of a training prompt format. Training text is the prompt
 * segment, the learned response, then EOS (workers/data/prepare.ts), so the template closes each
 * answer with the EOS text.
 */
export function ollamaTemplate(format: PromptFormat, eosToken: string, options: { library?: string } = {}): OllamaTemplate {
  if (!eosToken) throw new Error('Modelfile: the tokenizer has no EOS text; generation would not stop');
  const eos = literal(eosToken);
  switch (format.kind) {
    case 'preset':
      if (format.preset === 'ds1000') {
        // templates.ts: `### Library: <library>\n<prompt>` then `<code>\n</code>`: the library goes in SYSTEM.
        return {
          template: `### Library: ${SYSTEM}\n${PROMPT}${RESPONSE}${eos}`,
          system: options.library ?? 'Pandas',
          stops: [eosToken, '</code>'],
          notes: ['SYSTEM holds the DS-1000 library name (Pandas, Numpy, Matplotlib, …) that heads every training prompt'],
        };
      }
      if (format.preset === 'counseling') {
        return { template: `### Context:\n${PROMPT}\n### Response:\n${RESPONSE}${eos}`, stops: [eosToken, '### Context:'], notes: [] };
      }
      throw new Error(`Modelfile: unknown preset ${JSON.stringify(format.preset)}`);
    case 'instruction':
      return { template: `### Instruction:\n${PROMPT}\n### Response:\n${RESPONSE}${eos}`, stops: [eosToken, '### Instruction:'], notes: [] };
    case 'text':
      return { template: `${PROMPT}${RESPONSE}${eos}`, stops: [eosToken], notes: ['trained on plain text: the prompt is continued as it is'] };
    case 'chat':
      return chatTemplate(format, eosToken);
    default:
      throw new Error(`Modelfile: unknown prompt format ${JSON.stringify((format as { kind: unknown }).kind)}`);
  }
}

export interface ModelfileOptions {
  format: PromptFormat;
  eosToken: string;
  /** The base model: a hub id, or a local folder's name. */
  baseModel: string;
  /** The commit the run was trained on, when known. */
  revision?: string | null;
  /** Whether `baseModel` names a local folder rather than a hub id. */
  baseIsLocal?: boolean;
  /** The adapter GGUF, relative to the Modelfile. */
  adapterFile?: string;
  /** Where the base model's GGUF is expected (a placeholder the user may change). */
  baseGguf?: string;
  /** DS-1000: the library in SYSTEM by default. */
  library?: string;
}

function quoted(value: string, what: string): string {
  if (/["\n\r]/.test(value)) throw new Error(`Modelfile: ${what} ${JSON.stringify(value)} cannot be written as a quoted value (it holds a quote or a line break)`);
  return `"${value}"`;
}

/** The Modelfile text. */
export function modelfile(options: ModelfileOptions): string {
  const t = ollamaTemplate(options.format, options.eosToken, { library: options.library });
  if (t.template.includes('"""')) throw new Error('Modelfile: the template holds """, which ends a Modelfile block');
  const baseGguf = options.baseGguf ?? './base-model-f16.gguf';
  const adapter = options.adapterFile ?? './adapter.gguf';
  const folder = options.baseIsLocal ? options.baseModel : options.baseModel.split('/').pop()!;
  const lines = [
    `# Ollama Modelfile for a LoRA adapter of ${options.baseModel}${options.revision ? ` (commit ${options.revision})` : ''}.`,
    '# FROM needs the base model as a 16-bit GGUF, made once with llama.cpp:',
    ...(options.baseIsLocal
      ? [`#   (the base is the local folder "${options.baseModel}")`]
      : [`#   huggingface-cli download ${options.baseModel}${options.revision ? ` --revision ${options.revision}` : ''} --local-dir ${folder}`]),
    `#   python llama.cpp/convert_hf_to_gguf.py ${folder} --outtype f16 --outfile ${baseGguf.replace(/^\.\//, '')}`,
    '# then: ollama create my-adapter -f Modelfile && ollama run my-adapter',
    `FROM ${baseGguf}`,
    `ADAPTER ${adapter}`,
    '',
    ...t.notes.map((n) => `# ${n}`),
    `TEMPLATE """${t.template}"""`,
    ...(t.system !== undefined ? [`SYSTEM ${quoted(t.system, 'SYSTEM')}`] : []),
    ...t.stops.map((s) => `PARAMETER stop ${quoted(s, 'stop')}`),
    '',
  ];
  return lines.join('\n');
}
