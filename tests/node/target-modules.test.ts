import { describe, expect, it } from 'vitest';
import { compileTargetPattern, isTargetModule, MAX_NFA_STATES, MAX_PATTERN_LENGTH, TargetModulesError } from '../../workers/model/target-modules';

const PATHS = [
  'model.layers.0.self_attn.q_proj',
  'model.layers.0.self_attn.k_proj',
  'model.layers.11.self_attn.v_proj',
  'model.layers.3.self_attn.dense',
  'model.layers.23.mlp.fc1',
  'model.layers.7.mlp.fc2',
  'transformer.h.0.self_attention.query_key_value',
  'transformer.h.31.self_attention.dense',
  'transformer.h.5.mlp.dense_h_to_4h',
  'transformer.h.12.mlp.dense_4h_to_h',
  'lm_head',
  'q_proj',
  '',
  'model.layers.0.self_attn.q_proj.lora_A',
  'x\ny',
  'A-b c\tQ',
];

// Patterns of the kind PEFT users write, each compared with the platform's RegExp as a full match.
const PATTERNS = [
  '.*\\.(q_proj|v_proj)',
  '.*(q_proj|k_proj|v_proj)$',
  '^model\\.layers\\.\\d+\\.self_attn\\.(q|k|v)_proj$',
  'model\\.layers\\.(1[0-9]|2[0-3])\\.mlp\\.fc[12]',
  '.*\\.layers\\.[0-9]{1,2}\\.(self_attn|mlp)\\..*',
  '.*\\.h\\.\\d+\\..*dense.*',
  'transformer\\.h\\.(?:[0-9]|1[0-5])\\.self_attention\\.query_key_value',
  '.*(?:dense_h_to_4h|dense_4h_to_h)',
  '[a-z_.0-9]+',
  '[^.]+',
  '\\w+',
  '(\\w+\\.)*\\w+',
  '\\S+',
  '.*\\s.*',
  '.*\\bq_proj',
  '.*\\Bproj',
  'lm_head|q_proj',
  'a*|b+',
  '(a|)*',
  '()',
  '.*fc\\d?',
  '.*fc\\d{2,}',
  '.*\\.\\d{0,1}\\..*',
  '.+?\\.v_proj',
  '.*[\\d_]proj',
  '.*[^a-z]proj',
  '.*[-.]dense',
  'x.y',
  '[\\s\\S]*',
  '.*\\x2ev_proj',
  'model\\.layers\\.0\\.self_attn\\.q_proj\\.lora_A',
  '(model|transformer)\\.(layers|h)\\.\\d+\\.(self_attn|self_attention|mlp)\\.(q_proj|k_proj|v_proj|dense|fc1|fc2|query_key_value|dense_h_to_4h|dense_4h_to_h)',
];

describe('target_modules as PEFT matches them, in linear time', () => {
  it.each(PATTERNS)('matches as a full-match RegExp does: %s', (pattern) => {
    const ours = compileTargetPattern(pattern);
    const js = new RegExp(`^(?:${pattern})$`);
    for (const path of PATHS) expect([path, ours.test(path)]).toEqual([path, js.test(path)]);
  });

  it('lists match a module by its whole path or a dotted suffix', () => {
    expect(isTargetModule('model.layers.0.self_attn.q_proj', ['q_proj'])).toBe(true);
    expect(isTargetModule('model.layers.0.self_attn.q_proj', ['self_attn.q_proj'])).toBe(true);
    expect(isTargetModule('model.layers.0.self_attn.xq_proj', ['q_proj'])).toBe(false);
    expect(isTargetModule('q_proj', ['q_proj'])).toBe(true);
    expect(isTargetModule('model.layers.0.self_attn.q_proj', [])).toBe(false);
    // A string is a pattern over the whole path, not a name.
    expect(isTargetModule('model.layers.0.self_attn.q_proj', 'q_proj')).toBe(false);
    expect(isTargetModule('model.layers.0.self_attn.q_proj', '.*q_proj')).toBe(true);
  });

  it('refuses a catastrophic-backtracking pattern on no path: it finishes in milliseconds', () => {
    const path = `model.layers.0.${'a'.repeat(5000)}!`;
    // A backtracking engine takes exponential time on each of these.
    for (const pattern of ['(a+)+$', '.*(a+)+b', '(a|a)*c', '(a*)*b', '((a+)+)+x', '(.*a){12}z', '.*.*.*.*.*.*.*.*=']) {
      const start = performance.now();
      expect(isTargetModule(path, pattern)).toBe(false);
      expect(performance.now() - start, pattern).toBeLessThan(1000);
    }
    const start = performance.now();
    expect(isTargetModule('a'.repeat(5000), '(a+)+$')).toBe(true);
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it.each([
    ['(q)\\1', /target_modules: backreferences are not supported at position 3/],
    ['(?P<m>q)(?P=m)', /backreferences are not supported/],
    ['(?<m>q)\\k<m>', /backreferences are not supported/],
    ['.*(?=q_proj)q_proj', /target_modules: lookaround assertions are not supported at position 2/],
    ['.*(?<!k)_proj', /lookaround/],
    ['(?i)Q_PROJ', /inline flags/],
    ['\\p{L}+', /the escape \\p is not supported/],
    ['(q_proj', /missing "\)"/],
    ['q_proj)', /unbalanced "\)"/],
    ['*q', /nothing to repeat at position 0/],
    ['q**', /multiple repeat/],
    ['q{5,2}', /wrong order/],
    ['q{1001}', /above 1000/],
    ['[z-a]', /bad character range/],
    ['[abc', /unterminated character class/],
    ['q\\', /ends with a backslash/],
    ['a'.repeat(MAX_PATTERN_LENGTH + 1), /at most 1000/],
    ['((a{100}){100}){100}', new RegExp(`more than ${MAX_NFA_STATES} states`)],
  ])('refuses %s with an error naming target_modules', (pattern, message) => {
    const start = performance.now();
    expect(() => compileTargetPattern(pattern)).toThrow(TargetModulesError);
    expect(() => compileTargetPattern(pattern)).toThrow(message);
    expect(() => isTargetModule('q_proj', pattern)).toThrow(/^target_modules: /);
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it('names the file when told where the pattern comes from', () => {
    expect(() => compileTargetPattern('(?=x)', 'adapter_config.json: "target_modules"')).toThrow('adapter_config.json: "target_modules": lookaround assertions are not supported at position 0 of "(?=x)"');
  });

  it('accepts Python-only syntax PEFT configs carry', () => {
    expect(compileTargetPattern('(?P<mod>q|v)_proj').test('q_proj')).toBe(true);
    expect(compileTargetPattern('\\Amodel\\..*\\Z').test('model.x')).toBe(true);
    expect(compileTargetPattern('fc{,2}').test('fcc')).toBe(true);
    expect(compileTargetPattern('fc{,2}').test('fccc')).toBe(false);
    expect(compileTargetPattern('[]x]+').test(']x]')).toBe(true);
    expect(compileTargetPattern('a{}').test('a{}')).toBe(true);
  });
});
