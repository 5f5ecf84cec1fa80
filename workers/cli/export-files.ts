/** Export files written into a folder by the CLI, a file at a time. */
import type { ExportFile } from '../export/bundle';
import { joinPath, type CliIo } from './io';

/** Writes the files into `out`, appending piece by piece where the runner can (never a whole large file in memory). */
export async function writeExportFiles(out: string, files: ExportFile[], io: CliIo): Promise<{ name: string; bytes: number }[]> {
  const written = [];
  for (const f of files) {
    const path = joinPath(out, f.name);
    let at = 0;
    if (io.appendFile) {
      await io.writeFile(path, new Uint8Array(0));
      for await (const c of f.chunks()) {
        await io.appendFile(path, c);
        at += c.byteLength;
      }
    } else {
      const data = new Uint8Array(f.bytes);
      for await (const c of f.chunks()) {
        data.set(c, at);
        at += c.byteLength;
      }
      await io.writeFile(path, data);
    }
    if (at !== f.bytes) throw new Error(`${path}: wrote ${at} bytes, expected ${f.bytes}`);
    io.log(`${path} (${f.bytes} bytes)`);
    written.push({ name: f.name, bytes: f.bytes });
  }
  return written;
}
