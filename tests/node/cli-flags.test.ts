/**
 * Every command refuses what it does not understand, before any GPU or file work: the io here
 * fails on any use and no GPU exists under Node, so a command that got past its check fails with
 * another error than the one expected.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { COMMANDS } from '../../workers/cli/registry';
import { checkArgs } from '../../workers/cli/flags';
import { CliInputError, type CliArgs, type CliIo } from '../../workers/cli/io';

const untouchable = (): never => {
  throw new Error('this io holds no files');
};
const io: CliIo = { log: () => {}, line: () => {}, readFile: untouchable, readText: untouchable, listDir: untouchable, exists: untouchable, writeFile: untouchable };

/** Arguments each command accepts, to which each case adds one mistake; a switch and a value flag where it has them. */
const CASES: Record<string, { args: CliArgs; switch?: string; value?: string }> = {
  bench: { args: { positional: ['matmul'], flags: { size: 'smoke' } }, value: 'runs' },
  'data-check': { args: { positional: ['rows.jsonl'], flags: { preset: 'ds1000' } }, switch: 'packing', value: 'max-length' },
  export: { args: { positional: [], flags: { format: 'peft', out: 'o', model: 'demo', profile: 'p' } }, switch: 'no-quantize', value: 'alpha' },
  'export-run': { args: { positional: [], flags: { profile: 'p', out: 'o' } }, value: 'run' },
  'golden-check': { args: { positional: ['golden'], flags: {} }, switch: 'nf4' },
  'gpu-info': { args: { positional: [], flags: {} } },
  'nf4-check': { args: { positional: ['cases'], flags: {} }, switch: 'cpu-only', value: 'seed' },
  plan: { args: { positional: ['demo'], flags: { seq: '64' } }, switch: 'no-quantize', value: 'gpu-memory' },
  'safetensors-info': { args: { positional: ['m.safetensors'], flags: {} } },
  train: { args: { positional: [], flags: { model: 'demo', data: 'rows.jsonl' } }, switch: 'resume', value: 'steps' },
  'train-check': { args: { positional: ['folder'], flags: {} } },
};

const withFlags = (args: CliArgs, flags: CliArgs['flags']): CliArgs => ({ positional: args.positional, flags: { ...args.flags, ...flags } });

async function refusal(name: string, args: CliArgs): Promise<CliInputError> {
  const err = await COMMANDS[name](args, io).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, name).toBeInstanceOf(CliInputError);
  return err as CliInputError;
}

describe('every command refuses arguments it does not understand', () => {
  it('covers every command of the runner', () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(COMMANDS).sort());
  });

  for (const [name, c] of Object.entries(CASES)) {
    it(`${name}: unknown flags, named, with the usage line`, async () => {
      const one = await refusal(name, withFlags(c.args, { bogus: true }));
      expect(one.message).toMatch(/^unknown flag --bogus\nusage: /);
      const two = await refusal(name, withFlags(c.args, { bogus: '1', 'no-such': true }));
      expect(two.message).toMatch(/^unknown flags --bogus, --no-such\nusage: /);
    });

    it(`${name}: a switch given a value, a value flag given none, a stray argument`, async () => {
      if (c.switch) expect((await refusal(name, withFlags(c.args, { [c.switch]: 'yes' }))).message).toMatch(new RegExp(`^--${c.switch} takes no value, got "yes"\n`));
      if (c.value) expect((await refusal(name, withFlags(c.args, { [c.value]: true }))).message).toMatch(new RegExp(`^--${c.value} needs `));
      const stray = { positional: [...c.args.positional, 'extra'], flags: c.args.flags };
      expect((await refusal(name, stray)).message).toMatch(/^unexpected argument "extra"\nusage: /);
    });
  }
});

/** Each command with every flag it documents (README.md, docs/, bench/README.md): all get past the check. */
const DOCUMENTED: [string, CliArgs][] = [
  ['bench', { positional: ['matmul'], flags: { size: 'smoke', runs: '3', layers: '2', 'peak-tflops': '60', 'peak-gbs': '3350', results: 'r' } }],
  ['data-check', { positional: ['rows.jsonl'], flags: { preset: 'ds1000', tokenizer: 'tok', 'max-length': '128', seed: '1', validation: '0.1', packing: true } }],
  ['data-check', { positional: ['rows.csv'], flags: { map: 'prompt=a,response=b' } }],
  ['export', { positional: [], flags: { format: 'gguf', model: 'demo', profile: 'p', run: 'r', out: 'o', alpha: '16', dropout: '0.05', revision: 'c', data: 'd', template: 'ds1000', tokenizer: 't', outtype: 'f16', dtype: 'bf16', 'no-quantize': true } }],
  ['export', { positional: [], flags: { format: 'peft', model: 'demo', adapter: 'a', out: 'o', map: 'text=t' } }],
  ['export-run', { positional: [], flags: { profile: 'p', out: 'o', run: 'r' } }],
  ['golden-check', { positional: ['g'], flags: { nf4: true } }],
  ['gpu-info', { positional: [], flags: {} }],
  ['nf4-check', { positional: ['c'], flags: { 'cpu-only': true, generate: true, seed: '3' } }],
  ['plan', { positional: [], flags: { preset: 'demo', seq: '64', batch: '1', rank: '4', targets: 'q_proj', config: 'c.json', 'no-checkpointing': true, 'no-quantize': true, 'gpu-memory': '8', 'adapter-limits': true } }],
  ['plan', { positional: ['demo'], flags: { checkpointing: true, config: 'c.json' } }],
  ['safetensors-info', { positional: ['m.safetensors'], flags: {} }],
  ['train', { positional: [], flags: { model: 'demo', data: 'd', template: 'ds1000', steps: '6', 'checkpoint-every': '2', 'stop-after': '3', profile: 'p', resume: true, 'no-quantize': true, token: 'hf_x', revision: 'main', out: 'o', lr: '1e-4', r: '8', alpha: '16', targets: 'q_proj' } }],
  ['train', { positional: [], flags: { 'from-run': 'run', model: 'm', profile: 'p', out: 'o' } }],
  ['train-check', { positional: ['f'], flags: {} }],
];

describe('what the commands document is accepted', () => {
  it.each(DOCUMENTED)('%s %j', async (name, args) => {
    const err = await COMMANDS[name](args, io).then(
      () => null,
      (e: unknown) => e,
    );
    // Past the check, each fails on the io or the missing GPU, or refuses the input for another reason.
    if (err instanceof CliInputError) expect(err.message).not.toMatch(/^(unknown flags? |unexpected arguments? |--\S+ (takes no value|needs ))/);
  });
});

describe('checkArgs', () => {
  const spec = { usage: 'usage: x <file> [--n N] [--on]', values: ['n'], switches: ['on'], positional: 1 };

  it('accepts what the command takes', () => {
    expect(() => checkArgs({ positional: ['f'], flags: { n: '3', on: true } }, spec)).not.toThrow();
    expect(() => checkArgs({ positional: [], flags: {} }, spec)).not.toThrow();
  });

  it('names inherited names as unknown, not as known', () => {
    expect(() => checkArgs({ positional: [], flags: Object.fromEntries<string | true>([['constructor', true], ['toString', '1']]) }, spec)).toThrow(/^unknown flags --constructor, --toString\n/);
  });

  it('a switch read with the next word as its value says where the word belongs', () => {
    // `x --on f`: the runner reads "f" as the value of --on.
    expect(() => checkArgs({ positional: [], flags: { on: 'f' } }, spec)).toThrow(/^--on takes no value, got "f" \(an argument goes before the switch/);
    expect(() => checkArgs({ positional: ['f'], flags: { on: 'g' } }, spec)).toThrow(/^--on takes no value, got "g"\nusage: x/);
  });

  it('names every stray argument, and a value flag says what it needs', () => {
    expect(() => checkArgs({ positional: ['f', 'g', 'h'], flags: {} }, spec)).toThrow(/^unexpected arguments "g", "h"\n/);
    expect(() => checkArgs({ positional: [], flags: { n: true } }, { ...spec, needs: { n: 'a count' } })).toThrow(/^--n needs a count\n/);
  });
});

// The real runner (Vite + headless Chromium), as users run it.
describe('npm run cli -- plan demo --bogus', () => {
  it('exits 2 naming the flag, on stderr and in the JSON line', () => {
    const run = spawnSync(process.execPath, ['scripts/cli.mjs', 'plan', 'demo', '--bogus'], { encoding: 'utf8', timeout: 240_000 });
    expect(run.status, run.stderr).toBe(2);
    const last = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { ok: boolean; error: string };
    expect(last).toEqual({ ok: false, error: expect.stringMatching(/^unknown flag --bogus\nusage: plan /) });
    expect(run.stderr).toMatch(/invalid input: unknown flag --bogus/);
    expect(run.stderr).not.toMatch(/verdict/);
  }, 300_000);
});
