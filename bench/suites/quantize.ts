/**
 * `bench quantize`: quantize-on-load throughput for linear weights of phi-1_5 and falcon-7b
 * shapes stored as float16 safetensors (read by range from a Blob, as a dropped file is): the
 * GPU path (chunks to the GPU NF4 quantizer) and the CPU reference, with the peak bytes the
 * loader held; in a browser also the IndexedDB cache write and read rates of the result.
 */
import { writeSafetensors } from '../../workers/formats/safetensors';
import { BlobFile } from '../../workers/load/byte-source';
import { archFromConfig } from '../../workers/load/arch';
import { ModelCache } from '../../workers/load/cache';
import { gpuTarget, type GpuTensor } from '../../workers/load/gpu-target';
import { getPreset, DEFAULT_QUANT } from '../../workers/load/presets';
import { cpuTarget, quantizeOnLoad, type LoadedTensor, type LoadStats } from '../../workers/load/quantize-on-load';
import { ModelWeights } from '../../workers/load/weights';
import { releaseNf4 } from '../../workers/nf4/gpu';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { isEmulated, type BenchContext, type BenchRow, type BenchSize, type BenchSuite, type Timing } from '../suite';

interface WeightCase {
  preset: 'phi-1_5' | 'falcon-7b';
  tensor: string;
  rows: number;
  cols: number;
}

export function quantizeCases(size: BenchSize): WeightCase[] {
  if (size === 'full') {
    return [
      { preset: 'phi-1_5', tensor: 'model.layers.0.mlp.fc1.weight', rows: 8192, cols: 2048 },
      { preset: 'falcon-7b', tensor: 'transformer.h.0.mlp.dense_h_to_4h.weight', rows: 18176, cols: 4544 },
    ];
  }
  if (size === 'cpu') return [{ preset: 'phi-1_5', tensor: 'model.layers.0.self_attn.q_proj.weight', rows: 2048, cols: 2048 }];
  return [{ preset: 'phi-1_5', tensor: 'model.layers.0.self_attn.q_proj.weight', rows: 256, cols: 2048 }];
}

/** float16 bits with random sign, exponent 2^-8..2^-2 and mantissa: varied block scales, no conversion cost. */
function randomHalfBits(n: number, seed: number): Uint16Array {
  // randomWords' xorshift32, inline: falcon-7b's largest weight would need a 330 MB word array first.
  const out = new Uint16Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const r = x >>> 0;
    out[i] = ((r & 1) << 15) | ((7 + ((r >>> 1) % 7)) << 10) | ((r >>> 4) & 0x3ff);
  }
  return out;
}

const once = (seconds: number): Timing => ({ method: 'submitted-work-done', median: seconds, min: seconds, max: seconds, runs: 1 });

async function run(ctx: BenchContext) {
  const { gpu, io, size } = ctx;
  const rows: BenchRow[] = [];
  const ratios: Record<string, number> = {};
  const chunkBytes = 4 * 1024 * 1024;
  const notes = [
    `Source: one float16 linear weight in a safetensors Blob, read by range in ${chunkBytes / 2 ** 20} MiB chunks (whole NF4 blocks).`,
    'GPU: chunks go to the GPU NF4 quantizer as raw 16-bit bits (double quantization); CPU: the bit-exact reference, chunk by chunk.',
    'Times are wall clock to queue completion, one run each.',
  ];
  if (isEmulated(gpu.adapter)) notes.push('SwiftShader: CPU emulation; GPU rates are not GPU performance.');
  for (const k of quantizeCases(size)) {
    const arch = archFromConfig({ ...getPreset(k.preset).config, num_hidden_layers: 1 });
    const n = k.rows * k.cols;
    const file = new BlobFile(new Blob([writeSafetensors([{ name: k.tensor, dtype: 'F16', shape: [k.rows, k.cols], data: randomHalfBits(n, 7) }]) as BlobPart]), 'model.safetensors');
    const weights = await ModelWeights.open(['model.safetensors'], () => file, null);
    const shape = { preset: k.preset, rows: k.rows, cols: k.cols, source_bytes: 2 * n };
    const label = `${k.preset} ${k.rows}x${k.cols}`;

    gpu.pool.trim();
    gpu.pool.resetPeak();
    let t0 = performance.now();
    let onGpu: GpuTensor | null = null;
    const gpuStats: LoadStats = await quantizeOnLoad(weights, { arch, quant: DEFAULT_QUANT, target: gpuTarget(gpu, SHADERS), chunkBytes, onTensor: (_n, t) => void (onGpu = t) });
    await gpu.done();
    const gpuSeconds = (performance.now() - t0) / 1000;
    const pool = gpu.pool.stats();
    const got = onGpu as GpuTensor | null;
    if (got?.kind === 'nf4') releaseNf4(gpu, got.weight);
    rows.push({ name: `quantize on load, GPU, ${label}`, shape, timing: once(gpuSeconds), metrics: { source_mb_per_s: (2 * n) / 1e6 / gpuSeconds, params_per_s: n / gpuSeconds, cpu_peak_held_bytes: gpuStats.peakHeldBytes, gpu_peak_scratch_bytes: pool.peak.scratch, gpu_weight_bytes: pool.peak.weights } });

    t0 = performance.now();
    let onCpu: LoadedTensor | null = null;
    const cpuStats = await quantizeOnLoad(weights, { arch, quant: DEFAULT_QUANT, target: cpuTarget, chunkBytes, onTensor: (_n, t) => void (onCpu = t) });
    const cpuSeconds = (performance.now() - t0) / 1000;
    rows.push({ name: `quantize on load, CPU reference, ${label}`, shape, timing: once(cpuSeconds), metrics: { source_mb_per_s: (2 * n) / 1e6 / cpuSeconds, params_per_s: n / cpuSeconds, cpu_peak_held_bytes: cpuStats.peakHeldBytes } });
    ratios[`${label} GPU / CPU quantize rate`] = cpuSeconds / gpuSeconds;
    io.log(`${label}: GPU ${((2 * n) / 1e6 / gpuSeconds).toFixed(1)} MB/s, CPU ${((2 * n) / 1e6 / cpuSeconds).toFixed(1)} MB/s, loader held at most ${gpuStats.peakHeldBytes} B`);

    if (typeof indexedDB !== 'undefined' && onCpu) {
      const cache = await ModelCache.open(`bench-quantize-${Date.now()}`);
      const tensor = onCpu as LoadedTensor;
      t0 = performance.now();
      const writer = cache.beginWrite('bench', { repo: 'bench', revision: 'bench', quant: DEFAULT_QUANT });
      await writer.put(tensor);
      const manifest = await writer.commit({});
      const writeSeconds = (performance.now() - t0) / 1000;
      t0 = performance.now();
      await cache.read('bench', () => {});
      const readSeconds = (performance.now() - t0) / 1000;
      await cache.delete('bench');
      cache.close();
      const mb = manifest.bytes / 1e6;
      rows.push({ name: `IndexedDB cache, ${label} as NF4`, shape: { ...shape, stored_bytes: manifest.bytes }, timing: once(writeSeconds + readSeconds), metrics: { write_mb_per_s: mb / writeSeconds, read_mb_per_s: mb / readSeconds } });
      io.log(`${label}: cache write ${(mb / writeSeconds).toFixed(1)} MB/s, read ${(mb / readSeconds).toFixed(1)} MB/s`);
    }
  }
  return { rows, ratios, notes };
}

export const quantizeSuite: BenchSuite = {
  name: 'quantize',
  description: 'quantize-on-load throughput (GPU and CPU reference) and IndexedDB cache rates',
  run,
};
