/** Column names of rows, nested objects flattened to dotted paths (`metadata.library`). */
import type { Row } from './types';

/** How many rows are looked at to list the columns (later rows rarely add new ones). */
const SAMPLE_ROWS = 200;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date) && !ArrayBuffer.isView(value);
}

/**
 * The columns of the first rows, in first-seen order: leaves as dotted paths; arrays (such as
 * a `messages` list) are leaves.
 */
export function detectColumns(rows: readonly Row[]): string[] {
  const seen = new Set<string>();
  const walk = (value: Record<string, unknown>, prefix: string) => {
    for (const [key, v] of Object.entries(value)) {
      const path = prefix ? `${prefix}.${key}` : key;
      if (isPlainObject(v) && Object.keys(v).length > 0) walk(v, path);
      else seen.add(path);
    }
  };
  for (const row of rows.slice(0, SAMPLE_ROWS)) walk(row, '');
  return [...seen];
}

/**
 * The value at a column path, or undefined. A key that itself holds dots (`"a.b"` in a CSV
 * header) is matched before the path is split.
 */
export function getPath(row: Record<string, unknown>, path: string): unknown {
  if (path in row) return row[path];
  for (let dot = path.indexOf('.'); dot !== -1; dot = path.indexOf('.', dot + 1)) {
    const head = path.slice(0, dot);
    const inner = row[head];
    if (isPlainObject(inner)) {
      const found = getPath(inner, path.slice(dot + 1));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
