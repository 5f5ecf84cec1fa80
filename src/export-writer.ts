/**
 * Where an export's chunks go on the page: files in a folder the person picks (File System
 * Access API, Chromium browsers), written chunk by chunk; otherwise one zip streamed through
 * fflate's `Zip` (stored, no compression), its pieces kept as Blobs the browser may hold on disk,
 * downloaded at the end. Neither keeps a large merged model whole in the page's memory as one
 * array. The engine sends chunks in order: a file starts, its bytes follow.
 */
import { Zip, ZipPassThrough } from 'fflate';
import type { ExportChunk } from '../workers/protocol';

export interface ExportTarget {
  readonly kind: 'folder' | 'zip';
  /** Receives the engine's chunks, in order (awaited: a slow disk holds the engine back). */
  write(chunk: ExportChunk): Promise<void>;
  /** After the last chunk: closes the last file, or downloads the zip. */
  finish(): Promise<void>;
  /** After a failure: drops what is open. */
  abort(): Promise<void>;
}

/** The classic zip format (no zip64) stores sizes and offsets in 32 bits. */
export const ZIP_LIMIT_BYTES = 0xffffffff - (1 << 20);

interface DirectoryPickerWindow {
  showDirectoryPicker?: (options?: { mode?: 'read' | 'readwrite'; id?: string }) => Promise<FileSystemDirectoryHandle>;
}

/** Whether this browser can write files into a folder the person picks. */
export function canWriteFolders(): boolean {
  return typeof (window as DirectoryPickerWindow).showDirectoryPicker === 'function';
}

/** Asks for a folder; null when the person cancels the picker. */
export async function folderTarget(): Promise<ExportTarget | null> {
  let dir: FileSystemDirectoryHandle;
  try {
    dir = await (window as DirectoryPickerWindow).showDirectoryPicker!({ mode: 'readwrite', id: 'qlora-studio-export' });
  } catch (err) {
    if ((err as Error).name === 'AbortError') return null;
    throw err;
  }
  let open: FileSystemWritableFileStream | null = null;
  return {
    kind: 'folder',
    async write(chunk) {
      if (chunk.type === 'file') {
        await open?.close();
        // A run bundle's files live in subfolders (adapter/, data/, …).
        const parts = chunk.name.split('/');
        let at = dir;
        for (const part of parts.slice(0, -1)) at = await at.getDirectoryHandle(part, { create: true });
        const handle = await at.getFileHandle(parts[parts.length - 1], { create: true });
        open = await handle.createWritable();
      } else {
        if (!open) throw new Error('export: bytes arrived before their file');
        await open.write(chunk.data as Uint8Array<ArrayBuffer>);
      }
    },
    async finish() {
      await open?.close();
      open = null;
    },
    async abort() {
      await open?.abort();
      open = null;
    },
  };
}

/** A zip downloaded as `zipName` once every file is in. */
export function zipTarget(zipName: string): ExportTarget {
  const parts: Blob[] = [];
  let failure: Error | null = null;
  const zip = new Zip((err, data) => {
    if (err) failure = err;
    // Each piece becomes a Blob at once: the browser may keep large ones out of the page's heap.
    else if (data.length) parts.push(new Blob([data as Uint8Array<ArrayBuffer>]));
  });
  let file: { entry: ZipPassThrough; left: number } | null = null;
  const check = () => {
    if (failure) throw failure;
  };
  return {
    kind: 'zip',
    async write(chunk) {
      if (chunk.type === 'file') {
        if (file && file.left > 0) throw new Error(`export: ${file.left} bytes missing before ${chunk.name}`);
        if (chunk.bytes > ZIP_LIMIT_BYTES) throw new Error(`${chunk.name} is ${chunk.bytes} bytes: too large for a zip; write to a folder instead (Chrome or Edge)`);
        const entry = new ZipPassThrough(chunk.name);
        zip.add(entry);
        file = { entry, left: chunk.bytes };
        if (chunk.bytes === 0) entry.push(new Uint8Array(0), true);
      } else {
        if (!file) throw new Error('export: bytes arrived before their file');
        file.left -= chunk.data.length;
        if (file.left < 0) throw new Error('export: more bytes than the file announced');
        file.entry.push(chunk.data, file.left === 0);
      }
      check();
    },
    async finish() {
      zip.end();
      check();
      const url = URL.createObjectURL(new Blob(parts, { type: 'application/zip' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = zipName;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    },
    async abort() {
      parts.length = 0;
    },
  };
}
