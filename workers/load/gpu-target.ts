/**
 * Quantize on load straight into GPU memory: each linear weight's chunks go to the GPU NF4
 * quantizer (workers/nf4/gpu.ts) as they arrive, 16-bit data as raw bits (no CPU widening);
 * dense tensors are written into their buffer chunk by chunk. Neither the CPU nor the GPU ever
 * holds a linear weight in 16 or 32 bits beyond one chunk. `readBackNf4` streams a weight's
 * stored state back for the cache, in windows, so the CPU holds one window of it at a time.
 */
import { DTYPE_BYTES, type DType } from '../formats/safetensors';
import type { Gpu } from '../gpu/runtime';
import type { GpuBuffer } from '../gpu/pool';
import { quantizeStreamToGpu, uploadNf4, type Nf4GpuWeight, type Nf4Shaders } from '../nf4/gpu';
import { blockCount, type Nf4Dtype } from '../nf4/reference';
import { DYNAMIC_MAP, NESTED_BLOCKSIZE, NF4_BLOCKSIZE, NF4_CODE } from '../nf4/tables';
import type { HeldBytes } from './held';
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

/** One linear weight's streamed chunks through the GPU quantizer (`label` names its buffers). */
export async function gpuNf4FromChunks(gpu: Gpu, shaders: Nf4Shaders, name: string, shape: number[], doubleQuant: boolean, source: WeightChunks, label = name): Promise<Nf4GpuWeight> {
  const it = source.chunks[Symbol.asyncIterator]();
  const elemBytes = source.dtype === 'F32' ? 4 : 2;
  return quantizeStreamToGpu(
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
    { doubleQuant, chunkBlocks: source.chunkElems / NF4_BLOCKSIZE, label },
  );
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
      return { kind: 'nf4', name, dtype, weight: await gpuNf4FromChunks(gpu, shaders, name, shape, doubleQuant, source) };
    },

    prequantized: (t) => ({ kind: 'nf4', name: t.name, dtype: t.dtype, weight: uploadNf4(gpu, t.quant, { label: t.name }) }),
  };
}

/** Where `readBackNf4` sends a weight's arrays (the cache's tensor entry writer). */
export interface Nf4StateSink {
  array(field: string): { push(bytes: Uint8Array): Promise<void>; end(): void };
}

const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * Reads an NF4 GPU weight's stored state back into `sink`, as the cache stores the CPU
 * quantizer's result: `packed` (in windows of at most `windowBytes`), `quantMap`, then
 * `qabsmax`, `nestedAbsmax`, `nestedMap` (double quantization) or `absmax`. The offset is
 * `w.offset`. Each window is dropped once the sink has taken it.
 */
export async function readBackNf4(gpu: Gpu, w: Nf4GpuWeight, sink: Nf4StateSink, windowBytes: number, held?: HeldBytes): Promise<void> {
  const window = Math.max(4, Math.floor(windowBytes / 4) * 4);
  const read = async (buf: GpuBuffer, bytes: number, offset: number): Promise<Uint8Array> => {
    const out = new Uint8Array(await gpu.read(buf, bytes, offset));
    held?.hold(out.byteLength);
    return out;
  };
  const give = async (a: { push(bytes: Uint8Array): Promise<void> }, bytes: Uint8Array) => {
    try {
      await a.push(bytes);
    } finally {
      held?.drop(bytes.byteLength);
    }
  };

  const packed = sink.array('packed');
  const total = (w.numel + 1) >> 1;
  // Neighbouring parts may share one block's 32 bytes: each flat byte is sent once.
  let written = 0;
  for (const part of w.parts) {
    const partStart = part.elemBase / 2;
    const partEnd = Math.min(total, partStart + Math.ceil(part.elemCount / 8) * 4);
    for (let pos = Math.max(written, partStart); pos < partEnd; pos += window) {
      const bytes = Math.min(window, partEnd - pos);
      await give(packed, await read(part.packed, bytes, pos - partStart));
    }
    written = Math.max(written, partEnd);
  }
  if (written !== total) throw new Error(`NF4 readback: the parts hold ${written} of ${total} packed bytes`);
  packed.end();

  const tables = w.ownsTables ? await gpu.readF32(w.tables, 16 + 256) : null;
  const whole = async (field: string, bytes: Uint8Array, counted: boolean) => {
    const a = sink.array(field);
    if (counted) await give(a, bytes);
    else await a.push(bytes);
    a.end();
  };
  await whole('quantMap', f32Bytes(tables ? tables.slice(0, 16) : NF4_CODE), false);
  if (w.doubleQuant) {
    const qabsmax = await read(w.absmax, w.blocks, 0);
    await whole('qabsmax', qabsmax, true);
    await whole('nestedAbsmax', await read(w.nested, 4 * blockCount(w.blocks, NESTED_BLOCKSIZE), 0), true);
    await whole('nestedMap', f32Bytes(tables ? tables.slice(16) : DYNAMIC_MAP), false);
  } else {
    await whole('absmax', await read(w.absmax, 4 * w.blocks, 0), true);
  }
}
