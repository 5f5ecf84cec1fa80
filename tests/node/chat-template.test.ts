import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';
import { PreTrainedTokenizer } from '@huggingface/transformers';
import { BoundedTemplate, ChatTemplateError, DEFAULT_TEMPLATE_LIMITS } from '../../workers/tokenizer/chat-template';
import { tokenizerFromJson } from '../../workers/tokenizer';
import { formatRow } from '../../workers/data/templates';

const DIR = 'public/demo/tokenizer';
const tokenizerJson = JSON.parse(readFileSync(`${DIR}/tokenizer.json`, 'utf8')) as unknown;
const demoConfig = JSON.parse(readFileSync(`${DIR}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
const withTemplate = (chat_template: string) => tokenizerFromJson(tokenizerJson, { ...demoConfig, chat_template });

const CONVERSATION = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'hi' },
  { role: 'assistant', content: 'hello' },
  { role: 'user', content: 'and "quotes" & <tags>?' },
];

// Templates of the kind models ship: ChatML, Llama-2 style (bos/eos, raise_exception), loops, macros, filters.
const REAL_TEMPLATES = [
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
  "{% macro turn(m) %}<|{{ m.role | upper }}|>{{ m.content | trim }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{% if not loop.last %}\\n{% endif %}{% endfor %}{% for i in range(3) %}{{ i }}{% endfor %}{{ messages | length }}{{ messages | map(attribute='role') | join(',') }}",
  "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m.content | length %}{% endfor %}{{ ns.n }}{{ messages[-1].content | tojson }}",
];

describe('chat templates render like transformers does', () => {
  it.each(REAL_TEMPLATES)('same text as transformers: %s', (template) => {
    const config = { ...demoConfig, chat_template: template };
    const reference = new PreTrainedTokenizer(tokenizerJson as object, config);
    const ours = tokenizerFromJson(tokenizerJson, config);
    for (const addGenerationPrompt of [false, true]) {
      const want = reference.apply_chat_template(CONVERSATION, { tokenize: false, add_generation_prompt: addGenerationPrompt }) as string;
      expect(ours.applyChatTemplate(CONVERSATION, { addGenerationPrompt })).toBe(want);
    }
  });

  it('the demo template and the library render the same', () => {
    const src = demoConfig.chat_template as string;
    const ctx = { messages: CONVERSATION, add_generation_prompt: true };
    expect(new BoundedTemplate(src, 't').render(ctx)).toBe(new Template(src).render(ctx));
  });
});

// Each hostile template and what its refusal says after `tokenizer_config.json: "chat_template": `.
const HOSTILE: [string, string, RegExp][] = [
  ['a loop of 10^10 iterations', '{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}', /stopped after/],
  ['range(10**9)', '{% for i in range(1000000000) %}x{% endfor %}', /range\(\) of 1000000000 items; at most 100000/],
  ['a string doubled in a loop', "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}", /produced more than 4000000 characters/],
  ['a list doubled in a loop', '{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}', /built a list of more than 100000 items/],
  ['endless recursion', '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}', /./],
  ['raise_exception', "{{ raise_exception('no system role') }}", /raise_exception: no system role/],
  ['a syntax error', '{% for m in messages %}', /./],
];

describe('chat templates with limits on time and size', () => {
  it.each(HOSTILE)('%s fails within about a second, naming chat_template', (_, template, why) => {
    const tok = withTemplate(template);
    const start = performance.now();
    let error: unknown;
    try {
      tok.applyChatTemplate(CONVERSATION);
    } catch (err) {
      error = err;
    }
    expect(performance.now() - start).toBeLessThan(1500);
    expect(error).toBeInstanceOf(ChatTemplateError);
    expect((error as Error).message).toMatch(/^tokenizer_config\.json: "chat_template": /);
    expect((error as Error).message).toMatch(why);
  });

  it('the clock stops work that the step count allows', () => {
    const slow = new BoundedTemplate('{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}', 'tpl', {
      ...DEFAULT_TEMPLATE_LIMITS,
      maxSteps: Number.MAX_SAFE_INTEGER,
      maxMs: 300,
    });
    const start = performance.now();
    expect(() => slow.render({})).toThrow('tpl: stopped after 300 ms');
    // Wall time on a shared machine: the budget plus scheduling and collection pauses.
    expect(performance.now() - start).toBeLessThan(1500);
  });

  it('a template too long to be real is refused before it is parsed', () => {
    expect(() => withTemplate(`${'x'.repeat(200_001)}`).applyChatTemplate(CONVERSATION)).toThrow('tokenizer_config.json: "chat_template": the template is 200001 characters long; at most 200000 are accepted');
  });

  it('a dataset row rendered with a hostile template is refused naming the file, the row and the template', () => {
    const tok = withTemplate('{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}');
    const start = performance.now();
    expect(() => formatRow({ messages: CONVERSATION.slice(1, 3) }, 4, { kind: 'messages', messages: 'messages' }, undefined, tok, 'chats.jsonl')).toThrow(
      /^chats\.jsonl: row 5: tokenizer_config\.json: "chat_template": stopped after/,
    );
    expect(performance.now() - start).toBeLessThan(1500);
  });
});
