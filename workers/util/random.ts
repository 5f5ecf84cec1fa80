/**
 * The one seeded generator every reproducible choice uses (splits, shuffles, LoRA init,
 * sampling, random test and benchmark weights): the same seed gives the same stream in every
 * JavaScript engine.
 */

/** mulberry32: a small, fast, well-mixed 32-bit generator; values in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n normal samples (Box–Muller over one mulberry32 stream) with the given standard deviation. */
export function seededNormals(n: number, seed: number, std = 1): Float32Array {
  const next = seededRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(Math.max(next(), 1e-12))) * Math.cos(2 * Math.PI * next()) * std;
  return out;
}

/** xorshift32 words: raw random bits for benchmark data (billions of NF4 codes), not for choices. */
export function randomWords(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 0;
  }
  return out;
}
