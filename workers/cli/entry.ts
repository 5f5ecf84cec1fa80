/**
 * Loaded by cli.html in the runner's headless Chromium: runs one command with the same
 * engine code the studio's worker uses, and reports back through functions the Node side
 * exposed on `window`.
 */
import { COMMANDS } from './registry';
import { ownEntry } from '../util/own';
import { CliInputError, httpIo, type CliArgs } from './io';
import { errorInfo, type ErrorCode } from '../errors';

/** Failures that mean the input was wrong (exit 2) rather than the run (exit 1). */
const INVALID_INPUT: ErrorCode[] = ['invalid-setting', 'invalid-data', 'invalid-model', 'invalid-adapter'];

declare global {
  interface Window {
    __cliEmit?: (stream: 'stderr' | 'stdout', text: string) => void;
    __runCli?: (name: string, args: CliArgs) => Promise<{ result: Record<string, unknown>; exitCode: number }>;
  }
}

window.__runCli = async (name, args) => {
  const io = httpIo((stream, text) => window.__cliEmit?.(stream, text));
  const command = ownEntry(COMMANDS, name);
  if (!command) {
    return { exitCode: 2, result: { ok: false, error: `unknown command "${name}"; known: ${Object.keys(COMMANDS).sort().join(', ')}` } };
  }
  try {
    return await command(args, io);
  } catch (err) {
    const e = err as Error;
    const info = errorInfo(err);
    const invalid = err instanceof CliInputError || INVALID_INPUT.includes(info.code);
    io.log(`${invalid ? 'invalid input' : 'error'}: ${e.message}`);
    if (!invalid && e.stack) io.log(e.stack);
    // The error's code and the fields that locate it, as the page receives them.
    const { message: _message, section: _section, ...located } = info;
    // On the command line the token comes from the environment or a flag, not the page's field.
    if (info.code === 'hub-access') located.hint = 'Set HF_TOKEN to an access token with read access (or pass --token); for a gated model, log in on the hub and accept its license on the model page first.';
    return { exitCode: invalid ? 2 : 1, result: { ok: false, error: e.message, ...(err instanceof CliInputError ? {} : located) } };
  }
};
