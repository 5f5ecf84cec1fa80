/**
 * Token embedding gather. The table may be f32 or 16-bit (f16 / bf16) packed two per u32.
 * Its backward into the frozen table is not needed; the gradient we report for checks is the
 * one that reaches the embedding output (the input of layer 0).
 */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';

export type TableFormat = 'f32' | 'f16' | 'bf16';
const MODE: Record<TableFormat, number> = { f32: 0, f16: 1, bf16: 2 };

export interface EmbeddingSpec {
  ids: GpuBuffer;
  table: GpuBuffer;
  out: GpuBuffer;
  rows: number;
  hidden: number;
  vocab: number;
  format?: TableFormat;
}

export function embedding(gpu: Gpu, code: string, s: EmbeddingSpec): void {
  gpu.dispatch({
    pipeline: gpu.pipeline(code),
    bindings: [s.ids, s.table, s.out, gpu.uniform([s.rows, s.hidden, s.vocab, MODE[s.format ?? 'f32']])],
    workgroups: gpu.grid(Math.ceil((s.rows * s.hidden) / 256)),
    label: 'embedding',
  });
}

/** CPU reference (ids clamped into the vocabulary like the shader). */
export function embeddingCpu(ids: ArrayLike<number>, table: ArrayLike<number>, hidden: number, vocab: number): Float32Array {
  const out = new Float32Array(ids.length * hidden);
  for (let r = 0; r < ids.length; r++) {
    const id = Math.min(Math.max(ids[r], 0), vocab - 1);
    for (let c = 0; c < hidden; c++) out[r * hidden + c] = table[id * hidden + c];
  }
  return out;
}
