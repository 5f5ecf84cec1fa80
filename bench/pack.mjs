#!/usr/bin/env node
// `npm run bench:pack`: one tarball that runs the benchmark suites on any Linux x86-64 machine
// with a GPU, a Vulkan driver and `node` (≥ 20): the bundled Node bench, Dawn's native module,
// a run script and a README. Output: bench/pack/qlora-bench.tar.gz
import { cpSync, mkdirSync, rmSync, writeFileSync, statSync, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNodeBench } from './build.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const stage = resolve(root, 'bench/pack/qlora-bench');
rmSync(resolve(root, 'bench/pack'), { recursive: true, force: true });
mkdirSync(stage, { recursive: true });

await buildNodeBench(root, stage);
const webgpu = resolve(root, 'node_modules/webgpu');
const dest = resolve(stage, 'node_modules/webgpu');
mkdirSync(resolve(dest, 'dist/linux-x64'), { recursive: true });
for (const f of ['index.js', 'package.json', 'LICENSE.md']) cpSync(resolve(webgpu, f), resolve(dest, f));
cpSync(resolve(webgpu, 'dist/linux-x64/dawn.node'), resolve(dest, 'dist/linux-x64/dawn.node'));
// webgpu's index.js needs only dawn.node and Node's built-ins.
cpSync(resolve(root, 'bench/README.md'), resolve(stage, 'README.md'));
writeFileSync(resolve(stage, 'package.json'), JSON.stringify({ name: 'qlora-bench', private: true, type: 'module' }, null, 2));
writeFileSync(
  resolve(stage, 'run.sh'),
  `#!/usr/bin/env bash
# Runs every benchmark suite at the given size (default full) and writes results/*.json.
set -u
cd "$(dirname "$0")"
size=\${1:-full}; shift || true
mkdir -p results
status=0
for suite in matmul attention train-step decode quantize memory; do
  echo "=== $suite ($size)" >&2
  node node-bench.mjs "$suite" --size "$size" --results results "$@" || status=1
done
exit $status
`,
);
chmodSync(resolve(stage, 'run.sh'), 0o755);
const tarball = resolve(root, 'bench/pack/qlora-bench.tar.gz');
execFileSync('tar', ['-czf', tarball, '-C', resolve(root, 'bench/pack'), 'qlora-bench']);
const mb = statSync(tarball).size / 2 ** 20;
console.error(`wrote ${tarball} (${mb.toFixed(1)} MiB)`);
console.log(JSON.stringify({ ok: mb <= 40, tarball, mib: Number(mb.toFixed(2)) }));
process.exit(mb <= 40 ? 0 : 1);
