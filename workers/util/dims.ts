/** The shape check every kernel entry point makes before it dispatches anything. */
export function requirePositiveIntegers(kind: string, dims: Record<string, number>): void {
  for (const [name, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${kind}: ${name} = ${v} is not a positive integer`);
  }
}
