import type { Row } from './types';

/**
 * Rows carry the line they started on under this symbol (JSON, JSONL, CSV, TSV) or their
 * 1-based row number (Parquet), so later errors (a missing column) can point into the file.
 * Symbols stay out of `Object.keys` and `JSON.stringify`.
 */
export const ROW_LINE = Symbol('row line');

export function setRowLine<T extends Row>(row: T, line: number): T {
  // Not enumerable: copies and comparisons of rows see only their columns.
  Object.defineProperty(row, ROW_LINE, { value: line, enumerable: false, writable: true, configurable: true });
  return row;
}

export function rowLine(row: Row): number | null {
  return (row as Record<symbol, number | undefined>)[ROW_LINE] ?? null;
}
