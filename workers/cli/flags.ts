/**
 * What a command accepts on its command line, and the check that refuses everything else before
 * the command does any work: a misspelt flag silently ignored would run something the user did
 * not ask for.
 */
import { CliInputError, type CliArgs } from './io';
import { ownEntry } from '../util/own';

export interface ArgSpec {
  /** The command's usage line, appended to every refusal. */
  usage: string;
  /** Flags that take a value (`--seq 256` or `--seq=256`). */
  values?: readonly string[];
  /** What a value flag needs, where saying so helps more than "a value" (`token`: "the access token"). */
  needs?: Readonly<Record<string, string>>;
  /** Flags that take none (`--resume`). */
  switches?: readonly string[];
  /** The most positional arguments the command takes (none when absent). */
  positional?: number;
}

const named = (keys: string[]) => keys.map((k) => `--${k}`).join(', ');

/**
 * Refuses, naming them: unknown flags, a switch given a value, a value flag given none, and
 * positional arguments past the command's count. The runner reads the word after a flag as its
 * value (`--no-quantize demo` is the switch with the value "demo"), so a refused switch value
 * says where that word belongs.
 */
export function checkArgs(args: CliArgs, spec: ArgSpec): void {
  const values = new Set(spec.values ?? []);
  const switches = new Set(spec.switches ?? []);
  const keys = Object.keys(args.flags);
  const unknown = keys.filter((k) => !values.has(k) && !switches.has(k));
  if (unknown.length) throw new CliInputError(`unknown flag${unknown.length > 1 ? 's' : ''} ${named(unknown)}\n${spec.usage}`);
  for (const k of keys) {
    const v = args.flags[k];
    if (switches.has(k) && v !== true) {
      const room = args.positional.length < (spec.positional ?? 0);
      throw new CliInputError(`--${k} takes no value, got ${JSON.stringify(v)}${room ? ` (an argument goes before the switch: the word after a switch is read as its value)` : ''}\n${spec.usage}`);
    }
    if (values.has(k) && v === true) throw new CliInputError(`--${k} needs ${ownEntry(spec.needs ?? {}, k) ?? 'a value'}\n${spec.usage}`);
  }
  const stray = args.positional.slice(spec.positional ?? 0);
  if (stray.length) throw new CliInputError(`unexpected argument${stray.length > 1 ? 's' : ''} ${stray.map((p) => JSON.stringify(p)).join(', ')}\n${spec.usage}`);
}
