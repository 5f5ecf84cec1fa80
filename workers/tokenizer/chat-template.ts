/**
 * Chat templates (Jinja, from tokenizer_config.json) rendered with limits on time, work and
 * output. A template comes with whatever repository the user loads, and a loop such as
 * `{% for i in range(10**9) %}` would otherwise block the worker (and the tab waiting on it)
 * for as long as it runs.
 *
 * How it is bounded: @huggingface/jinja offers no time, iteration or output limit of its own,
 * but its `Interpreter.evaluate` is public and every statement and expression goes through it.
 * A subclass counts evaluations (a deterministic work limit), checks the clock every 256 of
 * them (a time limit for work that is slow per step), and measures every string, list and
 * mapping a step returns (an output limit that also stops a value from doubling itself in a
 * loop). `range()` is replaced by one that refuses a huge count before building the list,
 * since that list is made inside a single step. A worker cannot be interrupted from outside
 * without terminating it, so checking from inside the interpreter is the way to stop early.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';

export interface TemplateLimits {
  /** Wall-clock time for one rendering. */
  maxMs: number;
  /** Evaluations (statements and expressions) for one rendering. */
  maxSteps: number;
  /** Length of any string a step produces, the rendered text included. */
  maxOutputChars: number;
  /** Elements of a list or mapping a step produces, and of a `range()`. */
  maxItems: number;
  /** Length of the template's source. */
  maxTemplateChars: number;
}

/**
 * Generous for real templates (a few hundred steps per message, output the size of the
 * conversation) and small enough that a hostile one fails within about a second.
 */
export const DEFAULT_TEMPLATE_LIMITS: TemplateLimits = {
  maxMs: 750,
  maxSteps: 2_000_000,
  maxOutputChars: 4_000_000,
  maxItems: 100_000,
  maxTemplateChars: 200_000,
};

export class ChatTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChatTemplateError';
  }
}

type Statement = Parameters<Interpreter['evaluate']>[0];
type RuntimeValue = ReturnType<Interpreter['evaluate']>;

class BoundedInterpreter extends Interpreter {
  private steps = 0;

  constructor(
    env: Environment,
    private readonly limits: TemplateLimits,
    private readonly deadline: number,
    private readonly fail: (why: string) => never,
  ) {
    super(env);
  }

  override evaluate(statement: Statement, environment: Environment): RuntimeValue {
    if (++this.steps > this.limits.maxSteps) this.fail(`stopped after ${this.limits.maxSteps} steps (a loop too long for a chat template?)`);
    if ((this.steps & 255) === 0 && performance.now() > this.deadline) this.fail(`stopped after ${this.limits.maxMs} ms (a loop too long for a chat template?)`);
    const value = super.evaluate(statement, environment);
    const v = value.value as unknown;
    if (typeof v === 'string' && v.length > this.limits.maxOutputChars) this.fail(`produced more than ${this.limits.maxOutputChars} characters`);
    if (Array.isArray(v) && v.length > this.limits.maxItems) this.fail(`built a list of more than ${this.limits.maxItems} items`);
    if (v instanceof Map && v.size > this.limits.maxItems) this.fail(`built a mapping of more than ${this.limits.maxItems} entries`);
    return value;
  }
}

/** `strftime_now` as @huggingface/jinja defines it (%Y %m %d %b %B %H %M %%). */
function strftimeNow(format: unknown): string {
  const date = new Date();
  const pad2 = (n: number) => String(n).padStart(2, '0');
  return String(format).replace(/%[YmdbBHM%]/g, (token) => {
    switch (token) {
      case '%Y':
        return String(date.getFullYear());
      case '%m':
        return pad2(date.getMonth() + 1);
      case '%d':
        return pad2(date.getDate());
      case '%b':
        return new Intl.DateTimeFormat(undefined, { month: 'short' }).format(date);
      case '%B':
        return new Intl.DateTimeFormat(undefined, { month: 'long' }).format(date);
      case '%H':
        return pad2(date.getHours());
      case '%M':
        return pad2(date.getMinutes());
      default:
        return '%';
    }
  });
}

/** A compiled template that renders under limits; errors start with `label`. */
export class BoundedTemplate {
  private readonly template: Template;

  constructor(
    source: string,
    /** Names the template in errors, e.g. `tokenizer_config.json: "chat_template"`. */
    readonly label: string,
    private readonly limits: TemplateLimits = DEFAULT_TEMPLATE_LIMITS,
  ) {
    if (source.length > limits.maxTemplateChars) throw new ChatTemplateError(`${label}: the template is ${source.length} characters long; at most ${limits.maxTemplateChars} are accepted`);
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ChatTemplateError(`${label}: ${(err as Error).message}`);
    }
  }

  render(context: Record<string, unknown>): string {
    const { label, limits } = this;
    const fail = (why: string): never => {
      throw new ChatTemplateError(`${label}: ${why}`);
    };
    const env = new Environment();
    // The globals @huggingface/jinja's own render sets, with a bounded range().
    const globals: Record<string, unknown> = {
      false: false,
      true: true,
      none: null,
      False: false,
      True: true,
      None: null,
      raise_exception: (message: unknown) => fail(`raise_exception: ${String(message)}`),
      range: (start: unknown, stop?: unknown, step: unknown = 1) => {
        const [from, to] = stop === undefined ? [0, start] : [start, stop];
        if (![from, to, step].every((n) => Number.isSafeInteger(n))) fail('range() takes integers');
        const [a, b, s] = [from, to, step] as number[];
        if (s === 0) fail('range() step must not be zero');
        const count = Math.max(0, Math.ceil((b - a) / s));
        if (count > limits.maxItems) fail(`range() of ${count} items; at most ${limits.maxItems}`);
        return Array.from({ length: count }, (_, i) => a + i * s);
      },
      strftime_now: strftimeNow,
    };
    for (const [key, value] of Object.entries(globals)) env.set(key, value);
    for (const [key, value] of Object.entries(context)) env.set(key, value);
    const interpreter = new BoundedInterpreter(env, limits, performance.now() + limits.maxMs, fail);
    let out: unknown;
    try {
      out = interpreter.run(this.template.parsed).value;
    } catch (err) {
      if (err instanceof ChatTemplateError) throw err;
      // The template's own errors (unknown filter, a call on undefined, deep recursion).
      throw new ChatTemplateError(`${label}: ${(err as Error).message}`);
    }
    if (typeof out !== 'string') fail('did not render to text');
    return out as string;
  }
}
