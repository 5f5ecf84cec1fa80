/** Finite differences in float64 for the backward checks. */

/** Central differences of the scalar f at the given coordinates of x. */
export function finiteDiff(f: (x: Float64Array) => number, x: ArrayLike<number>, coords: number[], eps = 1e-6): Float64Array {
  const xx = Float64Array.from(x);
  const out = new Float64Array(coords.length);
  coords.forEach((i, k) => {
    const keep = xx[i];
    xx[i] = keep + eps;
    const up = f(xx);
    xx[i] = keep - eps;
    const down = f(xx);
    xx[i] = keep;
    out[k] = (up - down) / (2 * eps);
  });
  return out;
}

/** <a, b> in float64. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** A spread of coordinates (first, last and a stride through the middle). */
export function someCoords(n: number, count = 12): number[] {
  const out = new Set<number>([0, n - 1]);
  for (let k = 1; out.size < Math.min(n, count); k++) out.add(Math.floor((k * 7919) % n));
  return [...out];
}

export function pick(a: ArrayLike<number>, coords: number[]): Float64Array {
  return Float64Array.from(coords, (i) => a[i]);
}
