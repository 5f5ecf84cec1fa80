/**
 * Model bytes the loader holds in CPU memory: chunks in flight, an NF4 state being built,
 * written to the cache or handed to the engine, the f32 widening of a chunk. Every holder
 * counts what it allocates and drops it when the array is no longer referenced, so `peak` is a
 * measured bound on the loader's model data in the worker (headers and tiny per-tensor
 * bookkeeping aside).
 */
export class HeldBytes {
  private current = 0;
  private highest = 0;

  hold(bytes: number): void {
    this.current += bytes;
    if (this.current > this.highest) this.highest = this.current;
  }

  drop(bytes: number): void {
    this.current -= bytes;
    if (this.current < 0) throw new Error(`held bytes went negative (${this.current}): a drop without its hold`);
  }

  /** Held right now. */
  get bytes(): number {
    return this.current;
  }

  /** The most held at once since creation. */
  get peak(): number {
    return this.highest;
  }
}
