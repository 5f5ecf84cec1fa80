/**
 * Table lookups keyed by strings from files (a dtype, a preset name, an extension). A plain
 * `TABLE[key]` also finds what every object inherits (`constructor`, `__proto__`,
 * `toString`), so a file naming one of those would pass as a known key. Only the table's own
 * entries count here.
 */
export function hasOwnKey<T extends object>(table: T, key: unknown): key is keyof T {
  return typeof key === 'string' && Object.prototype.hasOwnProperty.call(table, key);
}

/** The table's own entry for `key`, or undefined (never an inherited member). */
export function ownEntry<V>(table: Readonly<Record<string, V>> | Readonly<Partial<Record<string, V>>>, key: unknown): V | undefined {
  return hasOwnKey(table, key) ? (table[key] as V | undefined) : undefined;
}
