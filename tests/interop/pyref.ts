/**
 * The Python reference stack (../shared/pyref) for the interoperability tests: whether it is here,
 * its environment, and running Python scripts (one process, or the ranks of a CPU process group).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';

export const PYREF = '../shared/pyref';
export const HAVE_PYREF = existsSync(`${PYREF}/setup.sh`);

/** process.env plus the exports of pyref's setup.sh (installs it the first time). */
export function pyrefEnv(): NodeJS.ProcessEnv {
  const exports = execFileSync('bash', [`${PYREF}/setup.sh`], { encoding: 'utf8', timeout: 900_000 });
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const m of exports.matchAll(/^export (.*)$/gm)) {
    for (const [, k, v] of m[1].matchAll(/(\w+)=(\S+)/g)) env[k] = v.replace(/\$\{PYTHONPATH:\+:\$PYTHONPATH\}/, process.env.PYTHONPATH ? `:${process.env.PYTHONPATH}` : '');
  }
  return env;
}

/** What compare_runs.py `runs` prints: the worst relative deviation of each quantity between two runs. */
export interface RunDeviations {
  steps: number[];
  adamw_step: number[];
  loss: number;
  lr: number;
  grad_norm: number;
  eval_steps: number[];
  eval_loss: number | null;
  weights: number;
  moments: number;
  tensors: number;
}

export interface PyResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a Python script to the end; throws with its stderr when it fails. */
export function python(env: NodeJS.ProcessEnv, args: string[], cwd?: string): PyResult {
  const r = spawnSync(env.PYTHON ?? 'python3', args, { env, cwd, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`python3 ${args.join(' ')} exited ${r.status}:\n${r.stderr}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The last stdout line of a script as JSON. */
export function lastJson<T>(r: PyResult): T {
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** A TCP port nobody listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * `world` processes of one torch.distributed group on this machine, started by hand with the
 * environment torchrun would give them (pyref's torch cannot run torchrun on Python 3.11).
 */
export async function pythonRanks(env: NodeJS.ProcessEnv, world: number, args: string[], cwd?: string): Promise<PyResult[]> {
  const port = await freePort();
  const runs = Array.from({ length: world }, (_, rank) =>
    new Promise<PyResult>((resolve) => {
      const rankEnv = { ...env, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(world), LOCAL_WORLD_SIZE: String(world) };
      const child = spawn(env.PYTHON ?? 'python3', args, { env: rankEnv, cwd });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
      child.on('close', (status) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      });
    }),
  );
  const results = await Promise.all(runs);
  results.forEach((r, rank) => {
    if (r.status !== 0) throw new Error(`rank ${rank} of ${world} exited ${r.status}:\n${r.stderr}`);
  });
  return results;
}
