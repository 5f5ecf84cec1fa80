/**
 * The benchmark suites under plain Node with Dawn (the `webgpu` package), no browser:
 * the same engine code and shaders as the studio. Built into one file by bench/build.mjs.
 * Usage (after the build): node node-bench.mjs <suite> [--size smoke|cpu|full] [--results DIR]
 */
import { create, globals } from 'webgpu';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Gpu } from '../workers/gpu/runtime';
import { BENCH_ARGS, runBench } from './run';
import { CliInputError, type CliIo } from '../workers/cli/io';
import { checkArgs } from '../workers/cli/flags';

function parse(argv: string[]): { positional: string[]; flags: Record<string, string | true> } {
  const positional: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2);
      flags[k] = v ?? (i + 1 < argv.length && !argv[i + 1].startsWith('--') ? argv[++i] : true);
    } else positional.push(a);
  }
  return { positional, flags };
}

const nodeIo: CliIo = {
  log: (m) => process.stderr.write(m + '\n'),
  line: (v) => process.stdout.write(JSON.stringify(v) + '\n'),
  readFile: async (p) => new Uint8Array(await readFile(p)),
  readText: (p) => readFile(p, 'utf8'),
  async listDir(p) {
    try {
      return (await readdir(p, { withFileTypes: true })).map((e) => ({ name: e.name, isDirectory: e.isDirectory() }));
    } catch {
      return null;
    }
  },
  exists: async (p) => stat(p).then(() => true, () => false),
  async writeFile(p, data) {
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, data);
  },
};

async function main(): Promise<number> {
  Object.assign(globalThis, globals);
  const { positional, flags } = parse(process.argv.slice(2));
  try {
    checkArgs({ positional, flags }, BENCH_ARGS);
  } catch (err) {
    process.stderr.write(`invalid input: ${(err as Error).message}\n`);
    process.stdout.write(JSON.stringify({ ok: false, error: (err as Error).message }) + '\n');
    return 2;
  }
  const gpu = await Gpu.create({ gpu: create([]) as unknown as GPU });
  try {
    const dir = typeof flags.results === 'string' ? resolve(flags.results) : resolve('bench/results');
    const out = await runBench(gpu, nodeIo, positional[0], flags, 'node', dir);
    process.stdout.write(JSON.stringify(out.result) + '\n');
    return out.exitCode;
  } catch (err) {
    const invalid = err instanceof CliInputError;
    process.stderr.write(`${invalid ? 'invalid input' : 'error'}: ${(err as Error).stack ?? err}\n`);
    process.stdout.write(JSON.stringify({ ok: false, error: (err as Error).message }) + '\n');
    return invalid ? 2 : 1;
  } finally {
    gpu.destroy();
  }
}

main().then((code) => process.exit(code));
