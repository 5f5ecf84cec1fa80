/**
 * Where a JSON text goes wrong. `JSON.parse` error messages differ between engines and some
 * carry no position, so a small strict scanner finds the offset of the first bad character.
 * It runs only after `JSON.parse` has failed.
 */

export interface JsonProblem {
  /** Offset (in UTF-16 units) of the first character that breaks the grammar. */
  offset: number;
  message: string;
}

export function locateJsonError(text: string): JsonProblem {
  let i = 0;
  const fail = (message: string): never => {
    throw { offset: i, message } satisfies JsonProblem;
  };
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const describe = () => (i >= text.length ? 'unexpected end of JSON' : `unexpected character ${JSON.stringify(text[i])}`);
  const literal = (word: string) => {
    for (let k = 0; k < word.length; k++, i++) if (text[i] !== word[k]) fail(`${describe()} (expected ${word})`);
  };
  const string = () => {
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail('control character in string (newlines in strings must be written \\n)');
      if (c === 0x5c) {
        i++;
        const e = text[i];
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) {
            if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) {
              i += k;
              fail('bad \\u escape');
            }
          }
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else fail('bad escape in string');
      } else i++;
    }
  };
  const number = () => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else if (/[1-9]/.test(text[i] ?? '')) while (/[0-9]/.test(text[i] ?? '')) i++;
    else fail(`${describe()} in number`);
    if (text[i] === '.') {
      i++;
      if (!/[0-9]/.test(text[i] ?? '')) fail(`${describe()} in number`);
      while (/[0-9]/.test(text[i] ?? '')) i++;
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      if (!/[0-9]/.test(text[i] ?? '')) fail(`${describe()} in number`);
      while (/[0-9]/.test(text[i] ?? '')) i++;
    }
  };
  const value = (depth: number): void => {
    if (depth > 512) fail('nesting too deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail(`${describe()} (expected a "quoted" key)`);
        string();
        ws();
        if (text[i] !== ':') fail(`${describe()} (expected ':')`);
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail(`${describe()} (expected ',' or '}')`);
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value(depth + 1);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail(`${describe()} (expected ',' or ']')`);
      }
    } else if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) number();
    else fail(describe());
  };
  try {
    value(0);
    ws();
    if (i < text.length) fail(`${describe()} after the end of the JSON value`);
  } catch (problem) {
    if (typeof problem === 'object' && problem !== null && 'offset' in problem) return problem as JsonProblem;
    throw problem;
  }
  return { offset: 0, message: 'invalid JSON' };
}
