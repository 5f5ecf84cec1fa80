#!/usr/bin/env node
// `npm run bench -- <suite> [--runtime browser|node] [--size smoke|cpu|full] [--peak-tflops X --peak-gbs Y]`
// browser: the CLI runner in headless Chromium. node: plain Node + Dawn (the `webgpu` package),
// from a bundle built here with Vite (bench/dist/node-bench.mjs).
import { spawnSync } from 'node:child_process';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNodeBench, vulkanEnv } from './build.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const rtIndex = argv.findIndex((a) => a === '--runtime' || a.startsWith('--runtime='));
let runtime = 'browser';
if (rtIndex >= 0) {
  const a = argv[rtIndex];
  runtime = a.includes('=') ? a.split('=')[1] : argv[rtIndex + 1];
  argv.splice(rtIndex, a.includes('=') ? 1 : 2);
}

if (runtime === 'browser') {
  const r = spawnSync(process.execPath, [resolve(root, 'scripts/cli.mjs'), 'bench', ...argv], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
} else if (runtime === 'node') {
  const bundle = await buildNodeBench(root);
  const hasResults = argv.some((a) => a.startsWith('--results'));
  const args = [bundle, ...argv, ...(hasResults ? [] : ['--results', resolve(root, 'bench/results')])];
  const r = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...process.env, ...vulkanEnv() } });
  process.exit(r.status ?? 1);
} else {
  console.error(`--runtime must be browser or node, not ${runtime}`);
  console.log(JSON.stringify({ ok: false, error: `unknown runtime ${runtime}` }));
  process.exit(2);
}
