/**
 * What the studio-side interop tests train on: a tiny hf-golden model (512-token vocabulary) in a
 * folder of its own, a byte-level BPE tokenizer cut from the demo's to fit that vocabulary, and a
 * short question/answer dataset whose rows fit the model's positions; and `cli train` /
 * `cli export-run` through the real command line (headless Chromium, WebGPU).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Ids below this stay: 256 bytes and the first merges; the end token takes the next id. */
const KEPT_IDS = 510;

interface TokenizerJson {
  added_tokens: { id: number; content: string }[];
  model: { vocab: Record<string, number>; merges: (string | string[])[] };
}

/** The demo tokenizer with only its first 254 merges and <|endoftext|> at id 510: 511 ids, for a 512-token model. */
export function writeSmallTokenizer(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const t = JSON.parse(readFileSync('public/demo/tokenizer/tokenizer.json', 'utf8')) as TokenizerJson;
  const eos = t.added_tokens.find((a) => a.content === '<|endoftext|>')!;
  const vocab = Object.fromEntries(Object.entries(t.model.vocab).filter(([, id]) => id < KEPT_IDS));
  t.model.vocab = vocab;
  t.model.merges = t.model.merges.slice(0, KEPT_IDS - 256);
  for (const m of t.model.merges) {
    const merged = (Array.isArray(m) ? m : m.split(' ')).join('');
    if (!(merged in vocab)) throw new Error(`tokenizer cut: merge ${JSON.stringify(m)} makes ${merged}, not among the kept ids`);
  }
  eos.id = KEPT_IDS;
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(t));
  const config = JSON.parse(readFileSync('public/demo/tokenizer/tokenizer_config.json', 'utf8')) as Record<string, unknown>;
  delete config.chat_template; // plain prompt/response layout
  config.added_tokens_decoder = { [String(KEPT_IDS)]: { content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true } };
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
}

/** Short arithmetic questions and answers of unequal lengths (unequal label counts per micro-batch). */
export function writeQaData(file: string, rows = 30): void {
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) {
    const a = (i * 7) % 13;
    const b = (i * 5) % 11;
    const answer = i % 3 === 0 ? `${a + b}` : `The sum of ${a} and ${b} is ${a + b}.`;
    lines.push(JSON.stringify({ q: `What is ${a} plus ${b}?`, a: answer }));
  }
  writeFileSync(file, lines.join('\n') + '\n');
}

/** config.json and model.safetensors of an hf-golden model, alone in `dir` (a folder transformers loads as a base, not as an adapter). */
export function writeBase(fixture: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const n of ['config.json', 'model.safetensors']) copyFileSync(join(fixture, n), join(dir, n));
}

export interface CliRun {
  status: number | null;
  stderr: string;
  lines: Record<string, unknown>[];
  last: Record<string, unknown>;
}

/**
 * `node scripts/cli.mjs <command> …`: its JSON lines and the closing result. A profile's IndexedDB
 * belongs to the page's origin, port included: give every command of one profile the same `port`
 * (a free one, not the default another run on this machine may hold).
 */
export function cli(command: string, args: string[], port: number): CliRun {
  const env = { ...process.env, QLORA_CLI_PORT: String(port) };
  const run = spawnSync(process.execPath, ['scripts/cli.mjs', command, ...args], { encoding: 'utf8', timeout: 900_000, env });
  const lines = run.stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: run.status, stderr: run.stderr, lines, last: lines[lines.length - 1] ?? {} };
}
