/**
 * PEFT's `target_modules` without backtracking: a list matches a module whose path equals an
 * entry or ends with `.<entry>`; a single string is a regular expression that must match the
 * whole module path (Python's `re.fullmatch`).
 *
 * An adapter_config.json comes from anywhere, so its pattern never reaches the platform's
 * backtracking RegExp (where `(a+)+$` takes exponential time). It is compiled here to a
 * Thompson NFA and run as a state-set simulation: time is O(path length × NFA states), and
 * both the pattern length and the NFA size are bounded. Supported: literals, `.`, classes
 * (`[a-z_]`, `[^.]`, `\d \w \s \D \W \S`), groups (`(…)`, `(?:…)`, `(?P<n>…)`, `(?<n>…)`),
 * alternation, `* + ?`, bounded `{m}`, `{m,}`, `{m,n}` (lazy forms too: the answer is the
 * same for a full match), anchors `^ $ \A \Z \b \B`. Backreferences, lookaround, inline flags
 * and Unicode properties are refused with an error naming `target_modules`.
 */

/** Longer patterns are refused: real ones are a few dozen characters. */
export const MAX_PATTERN_LENGTH = 1000;
/** NFA states after expanding bounded repeats (`(x{100}){100}` would be 10 000 copies). */
export const MAX_NFA_STATES = 10_000;
/** The largest count a `{m,n}` may name. */
export const MAX_REPEAT = 1000;

export class TargetModulesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetModulesError';
  }
}

/** Sorted, merged inclusive UTF-16 code unit ranges: [lo0, hi0, lo1, hi1, …]. */
type Ranges = number[];

type Node =
  | { t: 'char'; ranges: Ranges }
  | { t: 'seq'; items: Node[] }
  | { t: 'alt'; options: Node[] }
  | { t: 'repeat'; node: Node; min: number; max: number }
  | { t: 'assert'; kind: AssertKind };

type AssertKind = 'start' | 'end' | 'word' | 'nonword';

const MAX_UNIT = 0xffff;

function normalize(ranges: Ranges): Ranges {
  const pairs: [number, number][] = [];
  for (let i = 0; i < ranges.length; i += 2) pairs.push([ranges[i], ranges[i + 1]]);
  pairs.sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [lo, hi] of pairs) {
    const n = out.length;
    if (n && lo <= out[n - 1] + 1) out[n - 1] = Math.max(out[n - 1], hi);
    else out.push(lo, hi);
  }
  return out;
}

function complement(ranges: Ranges): Ranges {
  const r = normalize(ranges);
  const out: Ranges = [];
  let next = 0;
  for (let i = 0; i < r.length; i += 2) {
    if (r[i] > next) out.push(next, r[i] - 1);
    next = r[i + 1] + 1;
  }
  if (next <= MAX_UNIT) out.push(next, MAX_UNIT);
  return out;
}

const DIGIT: Ranges = [0x30, 0x39];
const WORD: Ranges = normalize([0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a]);
// JavaScript's \s: ASCII white space, NBSP, the Unicode space separators, line terminators, BOM.
const SPACE: Ranges = normalize([0x09, 0x0d, 0x20, 0x20, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a, 0x2028, 0x2029, 0x202f, 0x202f, 0x205f, 0x205f, 0x3000, 0x3000, 0xfeff, 0xfeff]);
const LINE_TERMINATORS: Ranges = normalize([0x0a, 0x0a, 0x0d, 0x0d, 0x2028, 0x2029]);
const CLASS_ESCAPES: Record<string, Ranges> = {
  d: DIGIT,
  D: complement(DIGIT),
  w: WORD,
  W: complement(WORD),
  s: SPACE,
  S: complement(SPACE),
};
const CONTROL_ESCAPES: Record<string, number> = { t: 0x09, n: 0x0a, r: 0x0d, f: 0x0c, v: 0x0b, '0': 0 };
const own = (table: object, key: string): boolean => Object.prototype.hasOwnProperty.call(table, key);

function inRanges(r: Ranges, c: number): boolean {
  for (let i = 0; i < r.length; i += 2) {
    if (c < r[i]) return false;
    if (c <= r[i + 1]) return true;
  }
  return false;
}

const isWordUnit = (s: string, i: number): boolean => i >= 0 && i < s.length && inRanges(WORD, s.charCodeAt(i));

class Parser {
  private pos = 0;

  constructor(
    private readonly src: string,
    private readonly where: string,
  ) {}

  fail(why: string, at = this.pos): never {
    throw new TargetModulesError(`${this.where}: ${why} at position ${at} of ${JSON.stringify(this.src)}`);
  }

  parse(): Node {
    const node = this.alternation();
    if (this.pos < this.src.length) this.fail('unbalanced ")"');
    return node;
  }

  private peek(offset = 0): string {
    return this.src[this.pos + offset] ?? '';
  }

  private alternation(): Node {
    const options = [this.sequence()];
    while (this.peek() === '|') {
      this.pos++;
      options.push(this.sequence());
    }
    return options.length === 1 ? options[0] : { t: 'alt', options };
  }

  private sequence(): Node {
    const items: Node[] = [];
    while (this.pos < this.src.length && this.peek() !== '|' && this.peek() !== ')') items.push(this.term());
    return items.length === 1 ? items[0] : { t: 'seq', items };
  }

  /** `{m}`, `{m,}`, `{m,n}`, `{,n}` at the current position, or null when `{` is a literal there. */
  private braces(): { min: number; max: number; length: number } | null {
    const re = /\{(\d*)(?:(,)(\d*))?\}/y;
    re.lastIndex = this.pos;
    const m = re.exec(this.src);
    // `{}`, `{,}` and a `{` that opens no count are literal characters; `{,n}` is `{0,n}` as in Python.
    if (!m || (m[1] === '' && (m[2] === undefined || m[3] === ''))) return null;
    const min = m[1] === '' ? 0 : Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
    if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) this.fail(`a repeat count above ${MAX_REPEAT}`);
    if (max < min) this.fail(`the repeat ${m[0]} has its bounds in the wrong order`);
    return { min, max, length: m[0].length };
  }

  private quantifier(): { min: number; max: number } | null {
    const c = this.peek();
    let q: { min: number; max: number } | null = null;
    if (c === '*') q = { min: 0, max: Infinity };
    else if (c === '+') q = { min: 1, max: Infinity };
    else if (c === '?') q = { min: 0, max: 1 };
    if (q) {
      this.pos++;
      return q;
    }
    if (c === '{') {
      const b = this.braces();
      if (b) {
        this.pos += b.length;
        return { min: b.min, max: b.max };
      }
    }
    return null;
  }

  private term(): Node {
    const start = this.pos;
    const atom = this.atom();
    const q = this.quantifier();
    if (!q) return atom;
    if (atom.t === 'assert') this.fail('nothing to repeat', start);
    if (this.peek() === '?') this.pos++; // lazy: same full-match answer
    else if (this.peek() === '+') this.fail('possessive quantifiers are not supported');
    const at = this.pos;
    if (this.quantifier()) this.fail('multiple repeat', at);
    return { t: 'repeat', node: atom, min: q.min, max: q.max };
  }

  private atom(): Node {
    const c = this.peek();
    const at = this.pos;
    switch (c) {
      case '(':
        return this.group();
      case '[':
        return this.charClass();
      case '.':
        this.pos++;
        return { t: 'char', ranges: complement(LINE_TERMINATORS) };
      case '^':
        this.pos++;
        return { t: 'assert', kind: 'start' };
      case '$':
        this.pos++;
        return { t: 'assert', kind: 'end' };
      case '\\':
        return this.escape();
      case '*':
      case '+':
      case '?':
        return this.fail('nothing to repeat', at);
      case '{':
        if (this.braces()) this.fail('nothing to repeat', at);
        break;
    }
    this.pos++;
    const code = c.charCodeAt(0);
    return { t: 'char', ranges: [code, code] };
  }

  private group(): Node {
    const open = this.pos;
    this.pos++;
    if (this.peek() === '?') {
      const rest = this.src.slice(this.pos + 1);
      if (rest.startsWith(':')) this.pos += 2;
      else if (rest.startsWith('=') || rest.startsWith('!') || rest.startsWith('<=') || rest.startsWith('<!')) this.fail('lookaround assertions are not supported', open);
      else if (rest.startsWith('P=')) this.fail('backreferences are not supported', open);
      else if (rest.startsWith('P<') || rest.startsWith('<')) {
        const m = /^P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest);
        if (!m) this.fail('malformed group name', open);
        this.pos += 1 + m[0].length;
      } else this.fail('inline flags and other (?…) groups are not supported', open);
    }
    const inner = this.alternation();
    if (this.peek() !== ')') this.fail('missing ")"', open);
    this.pos++;
    return inner;
  }

  /** After a backslash: a class escape's ranges, an assertion, or one code unit. */
  private escapeBody(inClass: boolean): Ranges | AssertKind {
    const at = this.pos - 1;
    const c = this.peek();
    if (c === '') this.fail('pattern ends with a backslash', at);
    this.pos++;
    if (own(CLASS_ESCAPES, c)) return CLASS_ESCAPES[c];
    if (own(CONTROL_ESCAPES, c)) return [CONTROL_ESCAPES[c], CONTROL_ESCAPES[c]];
    if (c === 'b') return inClass ? [0x08, 0x08] : 'word';
    if (!inClass && c === 'B') return 'nonword';
    if (!inClass && c === 'A') return 'start';
    if (!inClass && c === 'Z') return 'end';
    if (/[1-9]/.test(c) || c === 'k') this.fail('backreferences are not supported', at);
    if (c === 'x' || c === 'u') {
      const n = c === 'x' ? 2 : 4;
      const hex = this.src.slice(this.pos, this.pos + n);
      if (!new RegExp(`^[0-9A-Fa-f]{${n}}$`).test(hex)) this.fail(`\\${c} needs ${n} hex digits`, at);
      this.pos += n;
      const code = parseInt(hex, 16);
      return [code, code];
    }
    if (/[A-Za-z0-9]/.test(c)) this.fail(`the escape \\${c} is not supported`, at);
    const code = c.charCodeAt(0);
    return [code, code];
  }

  private escape(): Node {
    this.pos++;
    const r = this.escapeBody(false);
    return typeof r === 'string' ? { t: 'assert', kind: r } : { t: 'char', ranges: r };
  }

  private charClass(): Node {
    const open = this.pos;
    this.pos++;
    let negated = false;
    if (this.peek() === '^') {
      negated = true;
      this.pos++;
    }
    const ranges: Ranges = [];
    let first = true;
    // One class member: a code unit (returned) or a class escape (added, returns null).
    const member = (): number | null => {
      const c = this.peek();
      if (c === '') this.fail('unterminated character class', open);
      if (c === '\\') {
        this.pos++;
        const r = this.escapeBody(true);
        if (typeof r === 'string') return this.fail('assertion inside a character class');
        if (r.length === 2 && r[0] === r[1]) return r[0];
        ranges.push(...r);
        return null;
      }
      this.pos++;
      return c.charCodeAt(0);
    };
    // A `]` right after `[` or `[^` is a literal, as in Python.
    while (first || this.peek() !== ']') {
      first = false;
      const at = this.pos;
      const lo = member();
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== '') {
        this.pos++;
        const hi = member();
        if (lo === null || hi === null) this.fail('a class escape cannot bound a range', at);
        if (hi < lo) this.fail('bad character range', at);
        ranges.push(lo, hi);
      } else if (lo !== null) ranges.push(lo, lo);
    }
    this.pos++;
    return { t: 'char', ranges: negated ? complement(ranges) : normalize(ranges) };
  }
}

const enum Op {
  Char,
  Split,
  Assert,
  Match,
}

type State =
  | { op: Op.Char; ranges: Ranges; next: number }
  | { op: Op.Split; a: number; b: number }
  | { op: Op.Assert; kind: AssertKind; next: number }
  | { op: Op.Match };

class Compiler {
  readonly states: State[] = [{ op: Op.Match }];

  constructor(
    private readonly where: string,
    private readonly src: string,
  ) {}

  private push(s: State): number {
    if (this.states.length >= MAX_NFA_STATES) {
      throw new TargetModulesError(`${this.where}: the pattern expands to more than ${MAX_NFA_STATES} states (repeats of repeats?): ${JSON.stringify(this.src)}`);
    }
    this.states.push(s);
    return this.states.length - 1;
  }

  /** Compiles `node` so that it continues at state `next`; returns its first state. */
  compile(node: Node, next: number): number {
    switch (node.t) {
      case 'char':
        return this.push({ op: Op.Char, ranges: node.ranges, next });
      case 'assert':
        return this.push({ op: Op.Assert, kind: node.kind, next });
      case 'seq': {
        let cur = next;
        for (let i = node.items.length - 1; i >= 0; i--) cur = this.compile(node.items[i], cur);
        return cur;
      }
      case 'alt': {
        let cur = this.compile(node.options[node.options.length - 1], next);
        for (let i = node.options.length - 2; i >= 0; i--) cur = this.push({ op: Op.Split, a: this.compile(node.options[i], next), b: cur });
        return cur;
      }
      case 'repeat': {
        let cur = next;
        if (node.max === Infinity) {
          const split: State & { op: Op.Split } = { op: Op.Split, a: -1, b: next };
          cur = this.push(split);
          split.a = this.compile(node.node, cur);
        } else {
          for (let k = node.min; k < node.max; k++) cur = this.push({ op: Op.Split, a: this.compile(node.node, cur), b: next });
        }
        for (let k = 0; k < node.min; k++) cur = this.compile(node.node, cur);
        return cur;
      }
    }
  }
}

/** A compiled `target_modules` pattern: `test(path)` is PEFT's `re.fullmatch(pattern, path)`. */
export interface TargetPattern {
  readonly source: string;
  test(path: string): boolean;
}

/**
 * Compiles PEFT's string form of `target_modules`. `where` starts every error message
 * (e.g. `adapter_config.json: "target_modules"`).
 */
export function compileTargetPattern(pattern: string, where = 'target_modules'): TargetPattern {
  if (pattern.length > MAX_PATTERN_LENGTH) {
    throw new TargetModulesError(`${where}: the pattern is ${pattern.length} characters long; at most ${MAX_PATTERN_LENGTH} are accepted`);
  }
  const ast = new Parser(pattern, where).parse();
  const compiler = new Compiler(where, pattern);
  const start = compiler.compile(ast, 0);
  const states = compiler.states;
  const mark = new Int32Array(states.length);
  let generation = 0;
  const stack: number[] = [];

  // Adds `first` and every state reachable from it without reading a unit at position `pos`.
  const close = (list: number[], first: number, s: string, pos: number) => {
    stack.push(first);
    while (stack.length) {
      const i = stack.pop()!;
      if (mark[i] === generation) continue;
      mark[i] = generation;
      const st = states[i];
      if (st.op === Op.Split) stack.push(st.b, st.a);
      else if (st.op === Op.Assert) {
        const ok =
          st.kind === 'start' ? pos === 0 : st.kind === 'end' ? pos === s.length : (isWordUnit(s, pos - 1) !== isWordUnit(s, pos)) === (st.kind === 'word');
        if (ok) stack.push(st.next);
      } else list.push(i);
    }
  };

  return {
    source: pattern,
    test(path: string): boolean {
      generation++;
      let current: number[] = [];
      close(current, start, path, 0);
      for (let pos = 0; pos < path.length && current.length; pos++) {
        const unit = path.charCodeAt(pos);
        const next: number[] = [];
        generation++;
        for (const i of current) {
          const st = states[i];
          if (st.op === Op.Char && inRanges(st.ranges, unit)) close(next, st.next, path, pos + 1);
        }
        current = next;
      }
      return current.some((i) => states[i].op === Op.Match);
    },
  };
}

// A few patterns in use at once at most (the studio's settings, an imported adapter).
const compiled = new Map<string, TargetPattern>();
const CACHE_SIZE = 16;

function cachedPattern(pattern: string): TargetPattern {
  let p = compiled.get(pattern);
  if (!p) {
    p = compileTargetPattern(pattern);
    if (compiled.size >= CACHE_SIZE) compiled.delete(compiled.keys().next().value!);
    compiled.set(pattern, p);
  }
  return p;
}

/**
 * PEFT's matching: a list matches a module whose path equals an entry or ends with `.<entry>`;
 * a single string is a regular expression that must match the whole path (linear time here).
 */
export function isTargetModule(path: string, targets: string[] | string): boolean {
  if (typeof targets === 'string') return cachedPattern(targets).test(path);
  return targets.some((t) => path === t || path.endsWith(`.${t}`));
}
