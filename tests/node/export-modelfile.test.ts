/**
 * The Ollama Modelfile: its TEMPLATE, rendered the way Ollama renders it (Go template slots),
 * gives exactly the text training saw, for the presets, the instruction mapping and chat
 * templates; its stops include the EOS text training appended.
 */
import { describe, expect, it } from 'vitest';
import { Template } from '@huggingface/jinja';
import { PRESETS } from '../../workers/data/templates';
import { DEFAULT_CHAT_TEMPLATE, type ChatMessage } from '../../workers/tokenizer';
import { modelfile, ollamaTemplate, type PromptFormat } from '../../workers/export/modelfile';

/** The subset of Go templates the generator writes: if/end on .System, the three slots, literal {{. */
function renderGo(template: string, vars: { System?: string; Prompt: string; Response: string }, untilResponse = false): string {
  let out = '';
  let at = 0;
  let skipping = false;
  const re = /\{\{ (if \.System|if \.Response|end|\.System|\.Prompt|\.Response|"\{\{") \}\}/g;
  for (let m = re.exec(template); m; m = re.exec(template)) {
    if (!skipping) out += template.slice(at, m.index);
    at = m.index + m[0].length;
    const action = m[1];
    if (action === 'if .System') skipping = !vars.System;
    else if (action === 'if .Response') skipping = !vars.Response;
    else if (action === 'end') skipping = false;
    else if (skipping) continue;
    else if (action === '.System') out += vars.System ?? '';
    else if (action === '.Prompt') out += vars.Prompt;
    else if (action === '.Response') {
      if (untilResponse) return out;
      out += vars.Response;
    }
    else out += '{{';
  }
  if (/\{\{(?! "\{\{" \}\})/.test(template.slice(at))) throw new Error('unexpected action');
  return out + template.slice(at);
}

/** Asking for a reply: the template with an empty Response, up to where the reply goes. */
const generationPrompt = (template: string, vars: { System?: string; Prompt: string }) => renderGo(template, { ...vars, Response: '' }, true);

const EOS = '<|endoftext|>';

describe('Ollama TEMPLATE equals the training prompt format', () => {
  it('ds1000: library in SYSTEM, prompt, code answer, EOS; stops at EOS and </code>', () => {
    const values = { library: 'Numpy', prompt: 'Problem:\nsum a\nA:\n<code>\n', response: 'result = a.sum()  \n' };
    const training = PRESETS.ds1000.format(values);
    const t = ollamaTemplate({ kind: 'preset', preset: 'ds1000' }, EOS, { library: 'Numpy' });
    expect(t.system).toBe('Numpy');
    expect(renderGo(t.template, { System: 'Numpy', Prompt: values.prompt, Response: training[1].text })).toBe(training.map((s) => s.text).join('') + EOS);
    expect(generationPrompt(t.template, { System: 'Numpy', Prompt: values.prompt })).toBe(training[0].text);
    expect(t.stops).toEqual([EOS, '</code>']);
  });

  it('counseling and the instruction mapping', () => {
    const values = { prompt: '  I feel stuck. ', response: ' Tell me more. ' };
    const training = PRESETS.counseling.format(values);
    const t = ollamaTemplate({ kind: 'preset', preset: 'counseling' }, EOS);
    expect(renderGo(t.template, { Prompt: values.prompt.trim(), Response: training[1].text })).toBe(training.map((s) => s.text).join('') + EOS);
    expect(generationPrompt(t.template, { Prompt: values.prompt.trim() })).toBe(training[0].text);
    expect(t.stops).toContain(EOS);
    const i = ollamaTemplate({ kind: 'instruction' }, EOS);
    expect(renderGo(i.template, { Prompt: 'Add 1 and 2', Response: '3' })).toBe(`### Instruction:\nAdd 1 and 2\n### Response:\n3${EOS}`);
    expect(i.stops).toEqual([EOS, '### Instruction:']);
  });

  const chat = (source: string, extra: Record<string, unknown> = {}): Extract<PromptFormat, { kind: 'chat' }> => {
    const template = new Template(source);
    return {
      kind: 'chat',
      tokenizer: {
        applyChatTemplate: (messages: ChatMessage[], options = {}) =>
          template.render({ messages, add_generation_prompt: options.addGenerationPrompt ?? false, bos_token: '<s>', eos_token: '</s>', ...extra }),
      },
    };
  };
  const CHATML = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const WITH_BOS =
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ '<<SYS>>' + m['content'] + '<</SYS>>' }}{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}";
  const NO_SYSTEM = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}{{ '<' + m['role'] + '>' + m['content'] + '</' + m['role'] + '>' }}{% endfor %}{% if add_generation_prompt %}{{ '<assistant>' }}{% endif %}";

  it.each([
    ['ChatML', CHATML, true],
    ['the studio default', DEFAULT_CHAT_TEMPLATE, true],
    ['a BOS-led template', WITH_BOS, true],
    ['a template without a system role', NO_SYSTEM, false],
  ])('chat: %s', (_, source, hasSystem) => {
    const format = chat(source);
    const t = ollamaTemplate(format, '</s>');
    const render = (m: ChatMessage[], gen = false) => format.tokenizer.applyChatTemplate(m, { addGenerationPrompt: gen });
    const user = { role: 'user', content: 'Hi {{there}}' };
    const answer = { role: 'assistant', content: 'Hello.' };
    expect(renderGo(t.template, { Prompt: user.content, Response: answer.content })).toBe(render([user, answer]));
    expect(generationPrompt(t.template, { Prompt: user.content })).toBe(render([user], true));
    if (hasSystem) {
      const system = { role: 'system', content: 'Be brief.' };
      expect(renderGo(t.template, { System: system.content, Prompt: user.content, Response: answer.content })).toBe(render([system, user, answer]));
    } else {
      expect(t.notes.join(' ')).toMatch(/no system role/);
    }
    expect(t.stops[0]).toBe('</s>');
  });

  it('leaves a leading BOS to llama.cpp', () => {
    const t = ollamaTemplate({ ...chat(WITH_BOS), bosToken: '<s>' }, '</s>');
    expect(t.template.startsWith('{{ if .System }}<<SYS>>')).toBe(true);
    expect(t.notes.join(' ')).toMatch(/leading <s> is left out/);
  });

  it('stops at the assistant-turn marker of ChatML', () => {
    expect(ollamaTemplate(chat(CHATML), EOS).stops).toEqual([EOS, '<|im_end|>']);
  });
});

describe('Modelfile', () => {
  it('names the base GGUF, the adapter, the template, SYSTEM and the stops', () => {
    const text = modelfile({ format: { kind: 'preset', preset: 'ds1000' }, eosToken: EOS, baseModel: 'microsoft/phi-1_5', revision: 'abc123', adapterFile: './phi-1_5-lora.gguf' });
    const lines = text.split('\n');
    expect(lines).toContain('FROM ./base-model-f16.gguf');
    expect(lines).toContain('ADAPTER ./phi-1_5-lora.gguf');
    expect(text).toContain('huggingface-cli download microsoft/phi-1_5 --revision abc123 --local-dir phi-1_5');
    expect(text).toContain('python llama.cpp/convert_hf_to_gguf.py phi-1_5 --outtype f16 --outfile base-model-f16.gguf');
    expect(text).toContain('TEMPLATE """### Library: {{ .System }}\n{{ .Prompt }}{{ .Response }}<|endoftext|>"""');
    expect(lines).toContain('SYSTEM "Pandas"');
    expect(lines).toContain('PARAMETER stop "<|endoftext|>"');
    expect(lines).toContain('PARAMETER stop "</code>"');
    // Every instruction line is one Ollama knows.
    const instructions = lines.filter((l) => l && !l.startsWith('#') && /^[A-Z]+ /.test(l)).map((l) => l.split(' ')[0]);
    expect(new Set(instructions)).toEqual(new Set(['FROM', 'ADAPTER', 'TEMPLATE', 'SYSTEM', 'PARAMETER']));
  });

  it('says when the base is a local folder', () => {
    const text = modelfile({ format: { kind: 'instruction' }, eosToken: '</s>', baseModel: 'my-model', baseIsLocal: true });
    expect(text).toContain('the base is the local folder "my-model"');
    expect(text).not.toContain('huggingface-cli');
  });

  it('refuses what it cannot write', () => {
    expect(() => ollamaTemplate({ kind: 'instruction' }, '')).toThrow(/no EOS/);
    expect(() => modelfile({ format: { kind: 'instruction' }, eosToken: 'a"b', baseModel: 'x' })).toThrow(/quote/);
    expect(() => ollamaTemplate({ kind: 'preset', preset: 'nope' as never }, EOS)).toThrow(/unknown preset/);
  });
});
