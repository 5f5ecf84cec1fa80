import { collectRows, DatasetError, detectColumns, formatDataset, prepareDataset, readRows, splitIndices, toErrorInfo, type DataMapping, type PresetName, type Row } from '../../data';
import { tokenizerFromFiles, type TextTokenizer } from '../../tokenizer';
import { joinPath, type CliCommand, type CliIo, type CliResult } from '../io';
import { checkArgs, type ArgSpec } from '../flags';

const USAGE = 'usage: data-check <file> [--preset ds1000|counseling] [--map prompt=COL,response=COL[,system=COL]|text=COL|messages=COL] [--tokenizer DIR] [--max-length N] [--seed S] [--validation F] [--packing]';
const ARGS: ArgSpec = { usage: USAGE, values: ['preset', 'map', 'tokenizer', 'max-length', 'seed', 'validation'], switches: ['packing'], positional: 1 };

/** `--map prompt=A,response=B` | `text=C` | `messages=D`. */
export function parseMapping(spec: string, file: string): DataMapping {
  const pairs = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) throw new DatasetError(file, null, null, `--map: "${part}" is not ROLE=COLUMN`);
    pairs.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const roles = [...pairs.keys()].sort().join(',');
  if (roles === 'prompt,response') return { kind: 'prompt-response', prompt: pairs.get('prompt')!, response: pairs.get('response')! };
  // The system column is the system turn when the tokenizer's chat template renders the rows.
  if (roles === 'prompt,response,system') return { kind: 'prompt-response', prompt: pairs.get('prompt')!, response: pairs.get('response')!, system: pairs.get('system')! };
  if (roles === 'text') return { kind: 'text', text: pairs.get('text')! };
  if (roles === 'messages') return { kind: 'messages', messages: pairs.get('messages')! };
  throw new DatasetError(file, null, null, `--map takes prompt=COL,response=COL[,system=COL] or text=COL or messages=COL, got "${spec}"`);
}

async function loadTokenizer(dir: string, io: CliIo): Promise<TextTokenizer> {
  const jsonPath = joinPath(dir, 'tokenizer.json');
  if (!(await io.exists(jsonPath))) throw new DatasetError(dir, null, null, `${dir}: no tokenizer.json in this folder`);
  const configPath = joinPath(dir, 'tokenizer_config.json');
  const config = (await io.exists(configPath)) ? await io.readText(configPath) : null;
  try {
    return tokenizerFromFiles(await io.readText(jsonPath), config);
  } catch (err) {
    throw new DatasetError(dir, null, null, `${dir}: cannot load the tokenizer: ${(err as Error).message}`);
  }
}

function numberFlag(value: string | true | undefined, name: string, fallback: number, file: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value === true || !Number.isFinite(n)) throw new DatasetError(file, null, null, `--${name} needs a number`);
  return n;
}

const round = (x: number) => Math.round(x * 100) / 100;

/**
 * `data-check <file>`: parses the file, checks the column mapping or preset, splits, and with
 * a tokenizer tokenizes and measures. Invalid input: exit 2 with the error's file/line/column.
 */
export const dataCheck: CliCommand = async (args, io): Promise<CliResult> => {
  checkArgs(args, ARGS);
  const path = args.positional[0];
  const file = path ? (path.split(/[\\/]/).pop() ?? path) : '';
  try {
    if (!path) throw new DatasetError('', null, null, USAGE);
    const f = args.flags;
    const preset = typeof f.preset === 'string' ? (f.preset as PresetName) : undefined;
    if (preset !== undefined && preset !== 'ds1000' && preset !== 'counseling') throw new DatasetError(file, null, null, `--preset must be ds1000 or counseling, got "${preset}"`);
    const mapping = typeof f.map === 'string' ? parseMapping(f.map, file) : undefined;
    const maxLength = numberFlag(f['max-length'], 'max-length', 512, file);
    const seed = numberFlag(f.seed, 'seed', 0, file);
    const validationFraction = numberFlag(f.validation, 'validation', 0.1, file);
    const tokenizer = typeof f.tokenizer === 'string' ? await loadTokenizer(f.tokenizer, io) : null;
    const rows = readRows(new Blob([(await io.readFile(path)) as BlobPart]), file);

    if (!tokenizer) {
      if (mapping?.kind === 'messages') io.log('note: a messages column is checked for shape only; give --tokenizer to render its chat template');
      const { rows: all, columns } = preset || mapping ? await formatDataset(rows, { preset, mapping, file }) : await columnsOnly(rows, file);
      const split = splitIndices(all.length, validationFraction, seed);
      io.log(`${file}: ${all.length} rows; columns: ${columns.join(', ')}`);
      return { exitCode: 0, result: { ok: true, rows: all.length, columns, train: split.train.length, validation: split.validation.length } };
    }
    const { stats } = await prepareDataset(rows, { preset, mapping, tokenizer, maxLength, seed, validationFraction, packing: f.packing === true, file });
    const t = stats.tokens;
    io.log(`${file}: ${stats.rows} rows; columns: ${stats.columns.join(', ')}`);
    io.log(`tokens per example: mean ${round(t.mean)}, p95 ${t.p95}, max ${t.max}; ${t.truncated} truncated at ${t.maxLength}`);
    for (const w of stats.warnings) io.log(`warning: ${w}`);
    if (stats.preview) io.log(`preview (⟦masked⟧ learned):\n${stats.preview.marked}`);
    return {
      exitCode: 0,
      result: {
        ok: true,
        rows: stats.rows,
        columns: stats.columns,
        train: stats.train,
        validation: stats.validation,
        tokens: { mean: round(t.mean), p95: t.p95, max: t.max, min: t.min, total: t.total, truncated: t.truncated, maxLength: t.maxLength, labelTokens: t.labelTokens, histogram: t.histogram },
      },
    };
  } catch (err) {
    const error = toErrorInfo(file, err);
    if (!(err instanceof DatasetError)) throw err;
    io.log(`invalid input: ${error.message}`);
    return { exitCode: 2, result: { ok: false, error } };
  }
};

/** Without a preset or mapping: parse every row and list the columns. */
async function columnsOnly(rows: AsyncIterable<Row>, file: string) {
  const all = await collectRows(rows);
  if (all.length === 0) throw new DatasetError(file, null, null, `${file} holds no rows`);
  return { rows: all, columns: detectColumns(all) };
}
