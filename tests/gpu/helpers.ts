/** Shared by the WebGPU tests: one device per test file, seeded random data, comparisons. */
import { Gpu } from '../../workers/gpu/runtime';
import { seededRandom } from '../../workers/util/random';

let shared: Promise<Gpu> | null = null;

export function testGpu(): Promise<Gpu> {
  shared ??= Gpu.create();
  return shared;
}

/** Bit pattern written into outputs before a kernel runs, so unwritten elements show up as NaN. */
export const POISON = 0x7fc0dead;

/** The project's seeded generator (mulberry32), for test data. */
export const rng = seededRandom;

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()) * scale;
  }
  return out;
}

/** max |a − b| / max |b| (0 when both are all zero); NaN anywhere gives Infinity. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return ref === 0 ? diff : diff / ref;
}
