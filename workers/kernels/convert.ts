/** Widening 16-bit tensors (f16 / bf16, packed two per u32) to f32 on the GPU. */
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer, MemoryCategory } from '../gpu/pool';
import { bf16ArrayToF32, f16ArrayToF32 } from '../formats/float16';

export type HalfKind = 'f16' | 'bf16';
const WG = 256;

export function widenHalfGpu(gpu: Gpu, code: string, src: GpuBuffer, count: number, kind: HalfKind, category: MemoryCategory = 'scratch', dst?: GpuBuffer): GpuBuffer {
  const out = dst ?? gpu.alloc(count * 4, category, `widen-${kind}`);
  gpu.dispatch({
    pipeline: gpu.pipeline(code, 'main', { MODE: kind === 'bf16' ? 1 : 0, WG }),
    bindings: [src, out, gpu.uniform([count])],
    workgroups: gpu.grid(Math.ceil(count / WG)),
    label: 'widen-half',
  });
  return out;
}

/** CPU reference. */
export function widenHalfCpu(src: Uint16Array, kind: HalfKind): Float32Array {
  return kind === 'bf16' ? bf16ArrayToF32(src) : f16ArrayToF32(src);
}
