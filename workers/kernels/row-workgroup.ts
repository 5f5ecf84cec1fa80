/**
 * Threads per row of the one-workgroup-per-row kernels (RMSNorm, LayerNorm): about one per four
 * elements, a power of two from 32 to 256. Wide rows (2048) keep 256; a 128-wide row gets 32, so
 * no thread waits at the reduction's barriers with nothing to add (CPU emulation pays for each).
 */
export function rowWorkgroupSize(cols: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < cols) wg *= 2;
  return wg;
}
