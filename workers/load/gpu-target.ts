/**
 * Quantize on load straight into GPU memory: each linear weight's chunks go to the GPU NF4
 * quantizer (workers/nf4/gpu.ts) as they arrive, 16-bit data as raw bits (no CPU widening);
 * dense tensors are written into their buffer chunk by chunk. Neither the CPU nor the GPU ever
 * holds a linear weight in 16 or 32 bits beyond one chunk.
 */
import { DTYPE_BYTES, type DType } from '../formats/safetensors';
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { quantizeStreamToGpu, uploadNf4, type Nf4GpuWeight, type Nf4Shaders } from '../nf4/gpu';
import type { Nf4Dtype } from '../nf4/reference';
import { NF4_BLOCKSIZE } from '../nf4/tables';
import type { LoadTarget, WeightChunks } from './quantize-on-load';

export type GpuTensor =
  | { kind: 'nf4'; name: string; dtype: Nf4Dtype; weight: Nf4GpuWeight }
  | { kind: 'dense'; name: string; dtype: DType; shape: number[]; buffer: GpuBuffer };

const KIND = { F32: 'f32', F16: 'f16', BF16: 'bf16' } as const;

function view(chunk: Uint8Array, dtype: WeightChunks['dtype']): Float32Array | Uint16Array {
  const aligned = chunk.byteOffset % 4 === 0 ? chunk : chunk.slice();
  return dtype === 'F32'
    ? new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4)
    : new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
}

export function gpuTarget(gpu: Gpu, shaders: Nf4Shaders): LoadTarget<GpuTensor> {
  return {
    dense(name, dtype, shape) {
      // As stored: 16-bit data stays packed two per u32 (element 2k in the low half), f32 as is.
      const buffer = gpu.alloc(shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype], 'weights', name);
      let offset = 0;
      return {
        push(chunk) {
          gpu.write(buffer, chunk, offset);
          offset += chunk.byteLength;
        },
        finish: () => ({ kind: 'dense', name, dtype, shape: [...shape], buffer }),
      };
    },

    async nf4(name, dtype, shape, doubleQuant, source) {
      const it = source.chunks[Symbol.asyncIterator]();
      const elemBytes = source.dtype === 'F32' ? 4 : 2;
      const weight = await quantizeStreamToGpu(
        gpu,
        shaders,
        shape,
        KIND[source.dtype],
        async (elemStart, count) => {
          const { value, done } = await it.next();
          if (done || value.byteLength !== count * elemBytes) {
            throw new RangeError(`${name}: expected ${count} elements from element ${elemStart}, got ${done ? 'none' : value.byteLength / elemBytes}`);
          }
          return view(value, source.dtype);
        },
        { doubleQuant, chunkBlocks: source.chunkElems / NF4_BLOCKSIZE, label: name },
      );
      return { kind: 'nf4', name, dtype, weight };
    },

    prequantized: (t) => ({ kind: 'nf4', name: t.name, dtype: t.dtype, weight: uploadNf4(gpu, t.quant, { label: t.name }) }),
  };
}
