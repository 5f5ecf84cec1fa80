#!/usr/bin/env node
// Command-line runner: runs an engine command in headless Chromium with WebGPU (the same
// worker code and shaders as the studio) and prints human progress on stderr and one JSON
// object as the last line of stdout. Exit 0 success, 2 invalid input, 1 failure.
import { createServer } from 'vite';
import { chromium } from 'playwright';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

/** Flags whose value is a file or folder: made absolute here, where the user's cwd is known. */
const PATH_FLAGS = new Set(['model', 'data', 'out', 'tokenizer', 'profile', 'folder', 'file']);

function parseArgs(argv) {
  const positional = [];
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
      let value = eq > 0 ? a.slice(eq + 1) : true;
      if (value === true && i + 1 < argv.length && !argv[i + 1].startsWith('--')) value = argv[++i];
      flags[key] = value;
    } else positional.push(a);
  }
  return { positional, flags };
}

function absolutize(args) {
  // Positional arguments that exist on disk become absolute paths; flags named as paths too.
  args.positional = args.positional.map((p) => (existsSync(p) ? resolve(p) : p));
  for (const [k, v] of Object.entries(args.flags)) {
    if (typeof v === 'string' && (PATH_FLAGS.has(k) || existsSync(v)) && (existsSync(v) || k === 'out' || k === 'profile')) args.flags[k] = resolve(v);
  }
  return args;
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === '--help' || command === 'help') {
    process.stderr.write('usage: npm run cli -- <command> [args]\n  commands: gpu-info, safetensors-info <file>, and others listed in README.md\n');
    process.stdout.write(JSON.stringify({ ok: false, error: 'no command given' }) + '\n');
    return 2;
  }
  if (!existsSync(CHROMIUM)) {
    process.stderr.write(`Chromium not found at ${CHROMIUM}. Install it (Debian: apt-get install -y --no-install-recommends chromium) or set CHROMIUM_PATH to a Chrome/Chromium binary.\n`);
    process.stdout.write(JSON.stringify({ ok: false, error: `no browser at ${CHROMIUM}` }) + '\n');
    return 1;
  }
  const args = absolutize(parseArgs(rest));
  // The hub token and root reach the page's commands as data, never printed (workers/cli/hub-access.ts).
  const env = Object.fromEntries(['HF_TOKEN', 'HF_ENDPOINT'].filter((k) => process.env[k]).map((k) => [k, process.env[k]]));
  if (Object.keys(env).length) args.env = env;
  if (command === 'bench' && typeof args.flags.results !== 'string') args.flags.results = resolve(root, 'bench/results');
  // IndexedDB belongs to the page's origin, port included: a persistent profile needs the same
  // port every run, or its checkpoints and cached models are invisible the next time.
  const profilePort = typeof args.flags.profile === 'string' ? Number(process.env.QLORA_CLI_PORT ?? 47310) : 0;
  const server = await createServer({ root, configFile: resolve(root, 'vite.config.ts'), logLevel: 'error', server: { port: profilePort, strictPort: profilePort !== 0, host: '127.0.0.1', hmr: false }, clearScreen: false });
  await server.listen();
  const address = server.httpServer.address();
  const origin = `http://127.0.0.1:${address.port}`;
  const profile = typeof args.flags.profile === 'string' ? args.flags.profile : null;
  const launch = { executablePath: CHROMIUM, headless: true, args: ARGS };
  const browser = profile ? null : await chromium.launch(launch);
  const context = profile ? await chromium.launchPersistentContext(profile, launch) : await browser.newContext();
  let exitCode = 1;
  try {
    const page = await context.newPage();
    await page.exposeFunction('__cliEmit', (stream, text) => {
      (stream === 'stdout' ? process.stdout : process.stderr).write(text + '\n');
    });
    page.on('pageerror', (err) => process.stderr.write(`page error: ${err.message}\n`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' || process.env.QLORA_CLI_VERBOSE) process.stderr.write(`[browser ${msg.type()}] ${msg.text()}\n`);
    });
    await page.goto(`${origin}/cli.html`);
    await page.waitForFunction(() => typeof window.__runCli === 'function', null, { timeout: 120_000 });
    const out = await page.evaluate(([name, a]) => window.__runCli(name, a), [command, args]);
    process.stdout.write(JSON.stringify(out.result) + '\n');
    exitCode = out.exitCode;
  } catch (err) {
    process.stderr.write(`runner error: ${err.stack ?? err}\n`);
    process.stdout.write(JSON.stringify({ ok: false, error: String(err.message ?? err) }) + '\n');
    exitCode = 1;
  } finally {
    await context.close();
    if (browser) await browser.close();
    await server.close();
  }
  return exitCode;
}

main().then((code) => process.exit(code));
