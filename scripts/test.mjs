#!/usr/bin/env node
// `npm test`: typecheck, lint, Node unit tests, WebGPU kernel tests in headless Chromium,
// Playwright end-to-end tests, and the interoperability suite against the Python reference
// stack (skipped where ../shared/pyref is absent). Installs Debian's Chromium first when it is
// missing and we may (root on Debian); otherwise says how to point CHROMIUM_PATH at a Chrome.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

function ensureChromium() {
  if (existsSync(CHROMIUM)) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!process.env.CHROMIUM_PATH && isRoot && existsSync('/usr/bin/apt-get')) {
    console.error('Chromium is missing: installing Debian\'s chromium package (WebGPU tests need a real browser).');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium', 'fonts-liberation'], { stdio: 'inherit', env });
    if (r.status === 0 && existsSync(CHROMIUM)) return;
  }
  console.error(`No Chromium at ${CHROMIUM}. Install Chromium or Chrome and set CHROMIUM_PATH=/path/to/chrome, then run npm test again.`);
  process.exit(1);
}

const steps = [
  ['typecheck', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']],
  ['lint', 'npx', ['eslint', '.']],
  ['unit (Node)', 'npx', ['vitest', 'run', '--project', 'node']],
  ['kernels (WebGPU in Chromium)', 'npx', ['vitest', 'run', '--project', 'browser']],
  ['end-to-end (Playwright)', 'npx', ['playwright', 'test']],
  // Skips, saying so, on a machine without ../shared/pyref.
  ['interop (transformers, PEFT)', 'npx', ['vitest', 'run', '--project', 'interop']],
];

const only = process.argv.slice(2);
ensureChromium();
const results = [];
for (const [name, cmd, args] of steps) {
  if (only.length && !only.some((o) => name.startsWith(o))) continue;
  console.error(`\n=== ${name}: ${cmd} ${args.join(' ')}`);
  const started = Date.now();
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, VITE_CONFIG_NATIVE_IGNORE_WARNING: 'true' } });
  const ok = r.status === 0;
  results.push({ name, ok, seconds: (Date.now() - started) / 1000 });
  if (!ok) break;
}
console.error('\n=== summary');
for (const r of results) console.error(`${r.ok ? 'PASS' : 'FAIL'}  ${r.name}  (${r.seconds.toFixed(1)} s)`);
const failed = results.filter((r) => !r.ok).length;
const passed = results.length - failed;
console.log(`steps: ${passed} passed, ${failed} failed`);
process.exit(failed || results.length < (only.length ? 1 : steps.length) ? 1 : 0);
