import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dataCheck } from '../../workers/cli/commands/data-check';
import type { CliIo } from '../../workers/cli/io';

/** A CliIo over the real file system plus in-memory files, collecting stderr. */
function memoryIo(files: Record<string, string | Uint8Array> = {}) {
  const log: string[] = [];
  const read = (path: string) => {
    if (path in files) return typeof files[path] === 'string' ? new TextEncoder().encode(files[path] as string) : (files[path] as Uint8Array);
    return new Uint8Array(readFileSync(path));
  };
  const io: CliIo = {
    log: (m) => log.push(m),
    line: () => {},
    readFile: async (p) => read(p),
    readText: async (p) => new TextDecoder().decode(read(p)),
    listDir: async (p) => (existsSync(p) && statSync(p).isDirectory() ? readdirSync(p, { withFileTypes: true }).map((e) => ({ name: e.name, isDirectory: e.isDirectory() })) : null),
    exists: async (p) => p in files || existsSync(p),
    writeFile: async () => {},
  };
  return { io, log };
}

const run = (positional: string[], flags: Record<string, string | true>, files?: Record<string, string | Uint8Array>) => dataCheck({ positional, flags }, memoryIo(files).io);

describe('data-check', () => {
  it('DS-1000 demo with its preset and the demo tokenizer', async () => {
    const { exitCode, result } = await run(['public/demo/data/ds1000-demo.jsonl'], { preset: 'ds1000', tokenizer: 'public/demo/tokenizer' });
    expect(exitCode).toBe(0);
    expect(result).toMatchObject({ ok: true, rows: 84, train: 76, validation: 8, tokens: { truncated: 0, maxLength: 512 } });
    expect(Object.keys(result)).toEqual(['ok', 'rows', 'columns', 'train', 'validation', 'tokens']);
    expect(result.columns).toContain('metadata.library');
  });

  it('counseling demo CSV with its preset; without a tokenizer no token statistics', async () => {
    const withTok = await run(['public/demo/data/counseling-demo.csv'], { preset: 'counseling', tokenizer: 'public/demo/tokenizer', 'max-length': '128' });
    expect(withTok.result).toMatchObject({ ok: true, rows: 80, columns: ['Context', 'Response'], train: 72, validation: 8 });
    expect((withTok.result.tokens as { truncated: number }).truncated).toBeGreaterThan(0);
    const without = await run(['public/demo/data/counseling-demo.csv'], { map: 'prompt=Context,response=Response' });
    expect(without.result).toEqual({ ok: true, rows: 80, columns: ['Context', 'Response'], train: 72, validation: 8 });
  });

  it('invalid input: exit 2 with file, line, column and message', async () => {
    const broken = Array.from({ length: 9 }, (_, i) => (i === 6 ? '{"text": "seven' : JSON.stringify({ text: `row ${i + 1}` }))).join('\n');
    const r = await run(['/data/broken.jsonl'], { map: 'text=text' }, { '/data/broken.jsonl': broken });
    expect(r).toEqual({ exitCode: 2, result: { ok: false, error: { file: 'broken.jsonl', line: 7, column: 16, message: expect.stringMatching(/unterminated string/) } } });
    const csv = await run(['/d/q.csv'], {}, { '/d/q.csv': 'a,b\n1,"open\n2,3\n' });
    expect(csv.result).toMatchObject({ ok: false, error: { file: 'q.csv', line: 2, column: 3 } });
    const badMap = await run(['public/demo/data/counseling-demo.csv'], { map: 'prompt=Context' });
    expect(badMap.exitCode).toBe(2);
    const noTok = await run(['public/demo/data/counseling-demo.csv'], { preset: 'counseling', tokenizer: '/nowhere' });
    expect(noTok.result).toMatchObject({ ok: false, error: { file: '/nowhere', line: null, column: null } });
  });
});
