/**
 * AdamW moments (exp_avg, exp_avg_sq) held in fixed-size pages. Without a budget every page
 * stays on the GPU. With `budgetBytes`, at most that many bytes of pages are resident (pool
 * category `optimizer`); the least recently used page is copied to CPU memory and released
 * when another page needs room, and copied back before its own update. The kernels see the
 * same numbers either way, so paged and unpaged runs are bit-identical.
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export interface MomentTensor {
  key: string;
  numel: number;
}

export interface PagingOptions {
  /** Elements per page (each page holds this many of exp_avg and of exp_avg_sq). */
  pageElems?: number;
  /** GPU bytes the resident pages may use; undefined = no limit (nothing is ever evicted). */
  budgetBytes?: number;
}

export interface MomentPage {
  readonly tensor: number;
  /** First element of the tensor this page covers. */
  readonly start: number;
  readonly count: number;
  expAvg: GpuBuffer | null;
  expAvgSq: GpuBuffer | null;
  /** CPU copy while evicted (null and not resident = never written: all zeros). */
  cpuExpAvg: Float32Array | null;
  cpuExpAvgSq: Float32Array | null;
  lastUse: number;
}

export const DEFAULT_PAGE_ELEMS = 1 << 20;

export class PagedMoments {
  readonly pages: MomentPage[] = [];
  private readonly byTensor: MomentPage[][] = [];
  private residentBytes = 0;
  private clock = 0;
  private evictions = 0;
  readonly pageElems: number;
  readonly budgetBytes: number;

  constructor(
    private readonly gpu: Gpu,
    readonly tensors: MomentTensor[],
    options: PagingOptions = {},
  ) {
    this.pageElems = options.pageElems ?? DEFAULT_PAGE_ELEMS;
    this.budgetBytes = options.budgetBytes ?? Infinity;
    if (!(this.pageElems >= 1) || !Number.isInteger(this.pageElems)) throw new RangeError(`pageElems must be a positive integer, got ${this.pageElems}`);
    const largestPage = Math.min(this.pageElems, Math.max(1, ...tensors.map((t) => t.numel))) * 8;
    if (this.budgetBytes < largestPage) {
      throw new RangeError(`optimizer page budget of ${this.budgetBytes} bytes is below one page (${largestPage} bytes: exp_avg + exp_avg_sq of ${largestPage / 8} elements)`);
    }
    tensors.forEach((t, ti) => {
      const list: MomentPage[] = [];
      for (let start = 0; start < t.numel; start += this.pageElems) {
        const page: MomentPage = { tensor: ti, start, count: Math.min(this.pageElems, t.numel - start), expAvg: null, expAvgSq: null, cpuExpAvg: null, cpuExpAvgSq: null, lastUse: 0 };
        list.push(page);
        this.pages.push(page);
      }
      this.byTensor.push(list);
    });
  }

  pagesOf(tensor: number): MomentPage[] {
    return this.byTensor[tensor];
  }

  get paged(): boolean {
    return Number.isFinite(this.budgetBytes);
  }

  stats(): { pages: number; resident: number; residentBytes: number; evictions: number } {
    return { pages: this.pages.length, resident: this.pages.filter((p) => p.expAvg).length, residentBytes: this.residentBytes, evictions: this.evictions };
  }

  /** Makes a page resident (evicting others if the budget demands) and marks it used. */
  async acquire(page: MomentPage): Promise<{ expAvg: GpuBuffer; expAvgSq: GpuBuffer }> {
    page.lastUse = ++this.clock;
    if (page.expAvg && page.expAvgSq) return { expAvg: page.expAvg, expAvgSq: page.expAvgSq };
    const bytes = page.count * 8;
    while (this.residentBytes + bytes > this.budgetBytes) {
      const victim = this.pages.filter((p) => p.expAvg && p !== page).sort((a, b) => a.lastUse - b.lastUse)[0];
      if (!victim) break;
      await this.evict(victim);
    }
    const label = `${this.tensors[page.tensor].key}[${page.start}..]`;
    page.expAvg = this.gpu.alloc(page.count * 4, 'optimizer', `exp_avg ${label}`);
    page.expAvgSq = this.gpu.alloc(page.count * 4, 'optimizer', `exp_avg_sq ${label}`);
    this.residentBytes += bytes;
    if (page.cpuExpAvg && page.cpuExpAvgSq) {
      this.gpu.write(page.expAvg, page.cpuExpAvg);
      this.gpu.write(page.expAvgSq, page.cpuExpAvgSq);
      // Unpaged state keeps no CPU copy; paged keeps it as the eviction target.
      if (!this.paged) page.cpuExpAvg = page.cpuExpAvgSq = null;
    } else {
      this.gpu.fill(page.expAvg, 0);
      this.gpu.fill(page.expAvgSq, 0);
    }
    return { expAvg: page.expAvg, expAvgSq: page.expAvgSq };
  }

  /** Copies a resident page to CPU memory and frees its GPU buffers. */
  async evict(page: MomentPage): Promise<void> {
    if (!page.expAvg || !page.expAvgSq) return;
    page.cpuExpAvg = await this.gpu.readF32(page.expAvg, page.count);
    page.cpuExpAvgSq = await this.gpu.readF32(page.expAvgSq, page.count);
    this.gpu.release(page.expAvg, page.expAvgSq);
    page.expAvg = page.expAvgSq = null;
    this.residentBytes -= page.count * 8;
    this.evictions++;
  }

  /** Both moments of every tensor, assembled from resident pages and CPU copies. */
  async read(): Promise<{ key: string; expAvg: Float32Array; expAvgSq: Float32Array }[]> {
    const out = [];
    for (let ti = 0; ti < this.tensors.length; ti++) {
      const t = this.tensors[ti];
      const expAvg = new Float32Array(t.numel);
      const expAvgSq = new Float32Array(t.numel);
      for (const p of this.byTensor[ti]) {
        if (p.expAvg && p.expAvgSq) {
          expAvg.set(await this.gpu.readF32(p.expAvg, p.count), p.start);
          expAvgSq.set(await this.gpu.readF32(p.expAvgSq, p.count), p.start);
        } else if (p.cpuExpAvg && p.cpuExpAvgSq) {
          expAvg.set(p.cpuExpAvg, p.start);
          expAvgSq.set(p.cpuExpAvgSq, p.start);
        }
      }
      out.push({ key: t.key, expAvg, expAvgSq });
    }
    return out;
  }

  /** Replaces the state of tensor `key` (resume from a checkpoint). */
  load(key: string, expAvg: Float32Array, expAvgSq: Float32Array): void {
    const ti = this.tensors.findIndex((t) => t.key === key);
    if (ti < 0) throw new Error(`optimizer state has no tensor "${key}"`);
    const t = this.tensors[ti];
    if (expAvg.length !== t.numel || expAvgSq.length !== t.numel) {
      throw new Error(`optimizer state for "${key}" has ${expAvg.length}/${expAvgSq.length} elements, the tensor has ${t.numel}`);
    }
    for (const p of this.byTensor[ti]) {
      const m = expAvg.slice(p.start, p.start + p.count);
      const v = expAvgSq.slice(p.start, p.start + p.count);
      if (p.expAvg && p.expAvgSq) {
        this.gpu.write(p.expAvg, m);
        this.gpu.write(p.expAvgSq, v);
      } else {
        p.cpuExpAvg = m;
        p.cpuExpAvgSq = v;
      }
    }
  }

  dispose(): void {
    for (const p of this.pages) {
      this.gpu.release(p.expAvg, p.expAvgSq);
      p.expAvg = p.expAvgSq = null;
    }
    this.residentBytes = 0;
  }
}
