/**
 * The one place GPU buffers come from. Counts live and peak bytes per category so memory
 * claims come from our own accounting, and reuses released buffers of the same size
 * (training repeats the same shapes every step).
 */

import type { ByCategory, MemoryCategory } from '../util/memory-categories';

// Declared in a GPU-free module so the page can import them; re-exported for engine modules that take them from here.
export { MEMORY_CATEGORIES, type ByCategory, type MemoryCategory } from '../util/memory-categories';

export interface GpuBuffer {
  readonly buffer: GPUBuffer;
  /** Bytes as allocated (requested size rounded up to 16). */
  readonly size: number;
  readonly category: MemoryCategory;
  readonly label: string;
}

export interface PoolStats {
  live: ByCategory;
  peak: ByCategory;
  liveTotal: number;
  /** Highest simultaneous live total (not the sum of per-category peaks). */
  peakTotal: number;
  /** Live bytes per category at the moment of that highest total (they sum to peakTotal). */
  atPeak: ByCategory;
  /** Released buffers kept for reuse: real GPU memory, not counted as live. */
  cachedBytes: number;
  largestBuffer: number;
}

const STORAGE_USAGE = GPUBufferUsageFlags();

function GPUBufferUsageFlags(): number {
  // GPUBufferUsage is a global in browsers and Dawn; fall back to the spec's values.
  const u = (globalThis as { GPUBufferUsage?: GPUBufferUsage }).GPUBufferUsage;
  return u ? u.STORAGE | u.COPY_SRC | u.COPY_DST : 0x80 | 0x04 | 0x08;
}

const zero = (): ByCategory => ({ weights: 0, lora: 0, optimizer: 0, activations: 0, scratch: 0 });

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly owned = new Map<GPUBuffer, GpuBuffer>();
  private live = zero();
  private peak = zero();
  private liveTotal = 0;
  private peakTotal = 0;
  private atPeak = zero();
  private cachedBytes = 0;
  private largest = 0;

  constructor(private readonly device: GPUDevice) {}

  /** A storage buffer (also copy source/destination) of at least `bytes`, counted under `category`. */
  acquire(bytes: number, category: MemoryCategory, label: string = category, usage = STORAGE_USAGE): GpuBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const maxSize = this.device.limits.maxBufferSize;
    if (size > maxSize) {
      throw new RangeError(`Buffer "${label}" needs ${size} bytes but this GPU allows at most ${maxSize} per buffer.`);
    }
    const key = `${size}:${usage}`;
    const reusable = this.free.get(key)?.pop();
    let buffer: GPUBuffer;
    if (reusable) {
      buffer = reusable;
      this.cachedBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage, label });
    }
    const handle: GpuBuffer = { buffer, size, category, label };
    this.owned.set(buffer, handle);
    this.live[category] += size;
    this.liveTotal += size;
    this.peak[category] = Math.max(this.peak[category], this.live[category]);
    if (this.liveTotal > this.peakTotal) {
      this.peakTotal = this.liveTotal;
      this.atPeak = { ...this.live };
    }
    this.largest = Math.max(this.largest, size);
    return handle;
  }

  /** Give a buffer back; it is kept for reuse by a later acquire of the same size. */
  release(handle: GpuBuffer): void {
    if (this.owned.get(handle.buffer) !== handle) throw new Error(`Buffer "${handle.label}" released twice or not from this pool.`);
    this.owned.delete(handle.buffer);
    this.live[handle.category] -= handle.size;
    this.liveTotal -= handle.size;
    const key = `${handle.size}:${handle.buffer.usage}`;
    const list = this.free.get(key) ?? [];
    list.push(handle.buffer);
    this.free.set(key, list);
    this.cachedBytes += handle.size;
  }

  /** Destroy every cached free buffer (after a phase whose shapes will not recur). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.cachedBytes = 0;
  }

  /** Start a new measurement window: peaks restart from the current live bytes. */
  resetPeak(): void {
    this.peak = { ...this.live };
    this.peakTotal = this.liveTotal;
    this.atPeak = { ...this.live };
  }

  stats(): PoolStats {
    return {
      live: { ...this.live },
      peak: { ...this.peak },
      liveTotal: this.liveTotal,
      peakTotal: this.peakTotal,
      atPeak: { ...this.atPeak },
      cachedBytes: this.cachedBytes,
      largestBuffer: this.largest,
    };
  }

  /** Release everything still live and destroy all buffers. */
  destroy(): void {
    for (const handle of [...this.owned.values()]) this.release(handle);
    this.trim();
  }
}
