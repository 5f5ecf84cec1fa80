/**
 * Bad input is reported as a value the page can show next to the file: which file, which
 * line and column (1-based; null where they do not apply), and what is wrong. The plain form,
 * `DataError`, is declared in workers/protocol.ts because it crosses to the page.
 */
import type { DataError } from '../protocol';

export class DatasetError extends Error {
  readonly file: string;
  readonly line: number | null;
  readonly column: number | null;

  constructor(file: string, line: number | null, column: number | null, message: string) {
    super(message);
    this.name = 'DatasetError';
    this.file = file;
    this.line = line;
    this.column = column;
  }

  /** The plain object the CLI prints and the page stores. */
  toJSON(): DataError {
    return { file: this.file, line: this.line, column: this.column, message: this.message };
  }
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: DataError };

/** Runs `work` and turns any failure into `{ok:false}`: bad input never throws past the UI. */
export async function asResult<T>(file: string, work: () => Promise<T>): Promise<Result<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (err) {
    return { ok: false, error: toErrorInfo(file, err) };
  }
}

export function toErrorInfo(file: string, err: unknown): DataError {
  if (err instanceof DatasetError) return err.toJSON();
  const message = err instanceof Error ? err.message : String(err);
  return { file, line: null, column: null, message };
}
