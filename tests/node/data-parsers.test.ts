import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { collectRows, detectColumns, getPath, readRows, rowLine, DatasetError, type ByteSource, type DataFormat, type Row } from '../../workers/data';
import { asResult } from '../../workers/data/errors';

const enc = new TextEncoder();

/** The bytes as a ReadableStream cut into chunks of `size` bytes (to cross every boundary). */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function rows(source: ByteSource, file: string, format?: DataFormat): Promise<Row[]> {
  return collectRows(readRows(source, file, format));
}

async function failure(source: ByteSource, file: string) {
  const r = await asResult(file, () => rows(source, file));
  if (r.ok) throw new Error(`expected ${file} to fail`);
  return r.error;
}

describe('JSONL', () => {
  const text = '{"a":1,"b":"x"}\r\n\n{"a":2,"b":"ü\\n"}\n{"a":3,"b":"😀","nested":{"k":[1,2]}}';

  it('reads rows line by line, skipping blank lines, across every chunk boundary', async () => {
    const bytes = enc.encode(text);
    for (const size of [1, 2, 3, 5, 64]) {
      const got = await rows(chunked(bytes, size), 'x.jsonl');
      expect(got).toEqual([{ a: 1, b: 'x' }, { a: 2, b: 'ü\n' }, { a: 3, b: '😀', nested: { k: [1, 2] } }]);
      expect(got.map(rowLine)).toEqual([1, 3, 4]);
    }
  });

  it('reports a broken line 7 as line 7 with its column', async () => {
    const lines = Array.from({ length: 10 }, (_, i) => JSON.stringify({ prompt: `q${i}`, response: `a${i}` }));
    lines[6] = '{"prompt": "q6", "response": a6}';
    const error = await failure(new Blob([lines.join('\n')]), 'train.jsonl');
    expect(error).toMatchObject({ file: 'train.jsonl', line: 7, column: 30 });
    expect(error.message).toMatch(/malformed JSON/);
  });

  it('refuses a line that is not an object', async () => {
    const error = await failure(enc.encode('{"a":1}\n[1,2]\n'), 'x.jsonl');
    expect(error).toMatchObject({ line: 2, column: 1 });
  });

  it('drops a BOM', async () => {
    expect(await rows(new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode('{"a":1}\n')]), 'x.jsonl')).toEqual([{ a: 1 }]);
  });
});

describe('JSON', () => {
  const arr = '[\n  {"q": "one", "m": {"lib": "Numpy"}},\n  {"q": "two, [three]", "m": {"lib": "Pandas"}}\n]\n';

  it('streams an array of rows across every chunk boundary', async () => {
    for (const size of [1, 4, 7, 1000]) {
      const got = await rows(chunked(enc.encode(arr), size), 'd.json');
      expect(got).toEqual([{ q: 'one', m: { lib: 'Numpy' } }, { q: 'two, [three]', m: { lib: 'Pandas' } }]);
      expect(got.map(rowLine)).toEqual([2, 3]);
    }
  });

  it('reads the array held by an object and ignores other keys', async () => {
    const text = '{"version": 2, "info": {"x": [1, 2]}, "data": [{"a": 1}, {"a": 2}], "extra": [{"b": 3}]}';
    for (const size of [1, 3, 100]) expect(await rows(chunked(enc.encode(text), size), 'd.json')).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('names line and column of a malformed row', async () => {
    const error = await failure(enc.encode('[\n {"a": 1},\n {"a": tru}\n]'), 'd.json');
    expect(error).toMatchObject({ file: 'd.json', line: 3, column: 11 }); // at the '}' where "tru" stops being true
  });

  it('reports mismatched brackets, a cut-off file and an object without rows', async () => {
    expect(await failure(enc.encode('[{"a": 1]'), 'd.json')).toMatchObject({ line: 1, column: 9 });
    expect((await failure(enc.encode('[{"a": 1},\n{"a": "b'), 'd.json')).message).toMatch(/end of file inside a string/);
    expect((await failure(enc.encode('{"a": 1}'), 'd.json')).message).toMatch(/no array of rows/);
    expect(await failure(enc.encode('[{"a":1}] x'), 'd.json')).toMatchObject({ line: 1, column: 11 });
    // JSON Lines saved as .json: the second object is reported with a hint.
    const jsonl = await failure(enc.encode('{"a": 1}\n{"a": 2}\n'), 'd.json');
    expect(jsonl).toMatchObject({ line: 2, column: 1 });
    expect(jsonl.message).toMatch(/name the file \.jsonl/);
  });
});

describe('CSV and TSV', () => {
  const csv = '\uFEFFContext,Response\r\n"I feel ""stuck"",\r\nand tired.",Plain answer\r\nShort,"Two\nlines, with comma"\r\n';

  it('reads quoted fields with commas, doubled quotes and line breaks; BOM and CRLF', async () => {
    const bytes = enc.encode(csv);
    for (const size of [1, 2, 3, 5, 11, 1000]) {
      const got = await rows(chunked(bytes, size), 'c.csv');
      expect(got).toEqual([
        { Context: 'I feel "stuck",\r\nand tired.', Response: 'Plain answer' },
        { Context: 'Short', Response: 'Two\nlines, with comma' },
      ]);
      expect(got.map(rowLine)).toEqual([2, 4]);
    }
  });

  it('reports an unterminated quote at the line where the field started', async () => {
    const text = 'a,b\n1,2\n3,"never closed\nmore\nand more\n';
    const error = await failure(enc.encode(text), 'bad.csv');
    expect(error).toMatchObject({ file: 'bad.csv', line: 3, column: 3 });
    expect(error.message).toMatch(/unterminated/);
  });

  it('reports a row with the wrong number of fields and text after a closing quote', async () => {
    expect(await failure(enc.encode('a,b\n1,2\n3,4,5\n'), 'x.csv')).toMatchObject({ line: 3 });
    expect(await failure(enc.encode('a,b\n"x"y,2\n'), 'x.csv')).toMatchObject({ line: 2, column: 4 });
  });

  it('reads TSV and names empty header cells', async () => {
    expect(await rows(enc.encode('q\t\n"a\tb"\tc\n'), 'x.tsv')).toEqual([{ q: 'a\tb', column_2: 'c' }]);
  });
});

describe('Parquet', () => {
  const bytes = new Uint8Array(readFileSync('tests/fixtures/data/nested.parquet'));

  it('reads nested structs and lists across row groups, from bytes, a Blob and a stream', async () => {
    for (const source of [bytes, new Blob([bytes]), chunked(bytes, 100)] as ByteSource[]) {
      const got = await rows(source, 'nested.parquet');
      expect(got).toHaveLength(5);
      expect(got[3]).toEqual({
        prompt: 'Problem 4: add 3 and 4 in numpy.',
        reference_code: 'result = np.add(3, 4)',
        metadata: { library: 'Numpy', problem_id: 3 },
        messages: [{ role: 'user', content: 'hi 3' }, { role: 'assistant', content: 'hello 3' }],
      });
      expect(getPath(got[4], 'metadata.library')).toBe('Pandas');
      expect(detectColumns(got)).toEqual(['prompt', 'reference_code', 'metadata.library', 'metadata.problem_id', 'messages']);
    }
  });

  it('refuses a file that is not Parquet', async () => {
    expect((await failure(enc.encode('{"a": 1}\n{"a": 2}\n'), 'x.parquet')).message).toMatch(/not a Parquet file/);
  });
});

describe('streaming', () => {
  it('yields the first rows before the rest of the file has arrived', async () => {
    const cases: [string, string, string][] = [
      ['s.jsonl', '{"a":1}\n{"a":2}\n', '{"a":3}\n'],
      ['s.json', '[{"a":1},{"a":2},', '{"a":3}]'],
      ['s.csv', 'a\n1\n2\n', '3\n'],
    ];
    for (const [file, head, tail] of cases) {
      let release: () => void = () => {};
      const gate = new Promise<void>((ok) => (release = ok));
      let tailSent = false;
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(enc.encode(head));
          await gate;
          tailSent = true;
          controller.enqueue(enc.encode(tail));
          controller.close();
        },
      });
      const seen: unknown[] = [];
      for await (const row of readRows(stream, file)) {
        seen.push(row.a);
        if (seen.length === 1) {
          expect(tailSent).toBe(false);
          release();
        }
      }
      expect(seen.map(Number)).toEqual([1, 2, 3]);
    }
  });
});

describe('bad files', () => {
  it('refuses an empty file in every format', async () => {
    for (const file of ['e.jsonl', 'e.json', 'e.csv', 'e.tsv', 'e.parquet']) {
      expect(await failure(new Uint8Array(0), file)).toMatchObject({ file, line: null, column: null, message: `${file} is empty` });
    }
    expect((await failure(enc.encode('\n  \n'), 'w.jsonl')).message).toMatch(/is empty/);
  });

  it('refuses non-UTF-8 text and names where it starts', async () => {
    // Latin-1 "é" (0xE9) on line 2, after "b,"
    const bytes = new Uint8Array([...enc.encode('a,b\nb,caf'), 0xe9, ...enc.encode('\n')]);
    const error = await failure(bytes, 'latin1.csv');
    expect(error).toMatchObject({ file: 'latin1.csv', line: 2, column: 6 });
    expect(error.message).toMatch(/not UTF-8/);
    // The same across chunk boundaries, and a file cut inside a multi-byte character.
    expect(await failure(chunked(bytes, 3), 'latin1.csv')).toMatchObject({ line: 2, column: 6 });
    expect((await failure(new Uint8Array([...enc.encode('{"a":"'), 0xe2, 0x82]), 'cut.jsonl')).message).toMatch(/multi-byte/);
  });

  it('refuses binary data under a text extension', async () => {
    const parquet = new Uint8Array(readFileSync('tests/fixtures/data/nested.parquet'));
    expect((await failure(parquet, 'data.csv')).message).toMatch(/holds a Parquet file, not CSV/);
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
    expect((await failure(png, 'data.jsonl')).message).toMatch(/PNG/);
    const utf16 = new Uint8Array([0xff, 0xfe, 0x61, 0, 0x2c, 0, 0x62, 0]);
    expect((await failure(utf16, 'excel.csv')).message).toMatch(/UTF-16 text: re-save it as UTF-8/);
    const withNul = new Uint8Array([...enc.encode('{"a": 1}\n'), 0, 1, 2, 3]);
    expect((await failure(withNul, 'data.json')).message).toMatch(/binary data/);
  });

  it('refuses an unknown extension', async () => {
    expect((await failure(enc.encode('x'), 'notes.txt')).message).toMatch(/unknown dataset format/);
  });

  it('throws DatasetError with name, file, line and column', async () => {
    const err = await rows(enc.encode('{"a":\n'), 'x.jsonl').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as DatasetError).name).toBe('DatasetError');
    expect((err as DatasetError).toJSON()).toMatchObject({ file: 'x.jsonl', line: 1, column: 6 });
  });
});
