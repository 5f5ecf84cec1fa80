/**
 * Loaded by cli.html in the runner's headless Chromium: runs one command with the same
 * engine code the studio's worker uses, and reports back through functions the Node side
 * exposed on `window`.
 */
import { COMMANDS } from './registry';
import { ownEntry } from '../util/own';
import { CliInputError, httpIo, type CliArgs } from './io';

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
    const invalid = err instanceof CliInputError || e.name === 'SafetensorsError' || e.name === 'DatasetError';
    io.log(`${invalid ? 'invalid input' : 'error'}: ${e.message}`);
    if (!invalid && e.stack) io.log(e.stack);
    return { exitCode: invalid ? 2 : 1, result: { ok: false, error: e.message } };
  }
};
