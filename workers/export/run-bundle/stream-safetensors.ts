/**
 * A safetensors file written as a stream: the header from the tensors' shapes (laid out as
 * workers/formats/safetensors.ts `writeSafetensors` lays them out: descending element size, then
 * name, header padded to 8 bytes), then each tensor's bytes as its producer yields them. The
 * size is known before a byte is produced and no tensor is kept after its bytes went out.
 */
import { DTYPE_BYTES, type DType } from '../../formats/safetensors';
import type { ExportFile } from '../bundle';

export interface StreamedTensor {
  name: string;
  dtype: DType;
  shape: number[];
  /** The tensor's bytes in order; produced only when the file's stream reaches it. */
  bytes(): AsyncIterable<Uint8Array>;
}

const encoder = new TextEncoder();

export function streamedSafetensors(file: string, tensors: StreamedTensor[], metadata?: Record<string, string>): ExportFile {
  const sorted = [...tensors].sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const sizes: number[] = [];
  for (const t of sorted) {
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) throw new Error(`${file}: tensor name "${t.name}" is reserved or repeated`);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new Error(`${file}: tensor "${t.name}" has shape [${t.shape.join(', ')}]`);
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    sizes.push(bytes);
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + encoder.encode(json).byteLength) % 8)) % 8);
  const headerBytes = encoder.encode(json);
  const prefix = new Uint8Array(8 + headerBytes.byteLength);
  new DataView(prefix.buffer).setUint32(0, headerBytes.byteLength, true);
  prefix.set(headerBytes, 8);
  return {
    name: file,
    bytes: prefix.byteLength + offset,
    async *chunks() {
      yield prefix;
      for (let i = 0; i < sorted.length; i++) {
        let written = 0;
        for await (const c of sorted[i].bytes()) {
          written += c.byteLength;
          if (written > sizes[i]) break;
          yield c;
        }
        if (written !== sizes[i]) throw new Error(`${file}: tensor "${sorted[i].name}" produced ${written} bytes, its ${sorted[i].dtype} [${sorted[i].shape.join(', ')}] needs ${sizes[i]}`);
      }
    },
  };
}

/** The bytes of a typed array, as one chunk. */
export function viewBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
