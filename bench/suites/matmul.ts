/**
 * `bench matmul`: Y = X·Wᵀ for the linear shapes of phi-1_5 and falcon-7b at M = 512 (training)
 * and M = 1 (decoding), timed in one run on one adapter for:
 *   - our fused NF4 dequant-matmul (double-quantised weight, workers/kernels/nf4-matmul.ts),
 *   - our f32 matmul (workers/kernels/matmul.ts, weight in f32),
 *   - onnxruntime-web's 4-bit WebGPU kernel (com.microsoft MatMulNBits, blocksize 64, in a
 *     one-node ONNX graph built here as protobuf bytes), on its own device of the same adapter.
 * All three are timed by wall clock up to queue completion (ORT's GPU passes cannot be given
 * our timestamp queries), `reps` products per sample, median of `runs` samples after warm-up,
 * the kernels' samples taken in turn so that they share the machine's conditions.
 * SwiftShader runs use small M/N/K subsets (`--size smoke|cpu`); `--size full` runs the real shapes.
 */
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url';
import { SHADERS } from '../../workers/kernels/shader-sources';
import type { Gpu } from '../../workers/gpu/runtime';
import { matmul } from '../../workers/kernels/matmul';
import { nf4LinearForward, rowsPerThread } from '../../workers/kernels/nf4-matmul';
import { nf4BitsPerParam, nf4StoredBytes, releaseNf4, uploadNf4, type Nf4GpuWeight } from '../../workers/nf4/gpu';
import { randomNf4 } from '../../workers/model/random-weights';
import { randomWords } from '../../workers/util/random';
import { geomean, isEmulated, timeGpu, timingOf, type BenchContext, type BenchRow, type BenchSize, type BenchSuite, type Timing } from '../suite';

interface Shape {
  model: string;
  K: number;
  N: number;
  M: number;
}

const REAL: [string, number, number][] = [
  ['phi-1_5', 2048, 2048],
  ['phi-1_5', 2048, 8192],
  ['phi-1_5', 8192, 2048],
  ['falcon-7b', 4544, 4672],
  ['falcon-7b', 4544, 18176],
  ['falcon-7b', 18176, 4544],
];

/** Shapes per size: real ones on a real GPU, subsets that keep SwiftShader within minutes. */
export function benchShapes(size: BenchSize): Shape[] {
  if (size === 'full') return REAL.flatMap(([model, K, N]) => [512, 1].map((M) => ({ model, K, N, M })));
  if (size === 'cpu') {
    return [
      { model: 'phi-1_5 (N subset)', K: 2048, N: 512, M: 1 },
      { model: 'phi-1_5 (M, N subset)', K: 2048, N: 256, M: 32 },
      { model: 'phi-1_5 (N subset)', K: 2048, N: 128, M: 512 },
      { model: 'falcon-7b (N subset)', K: 4544, N: 512, M: 1 },
      { model: 'falcon-7b (N subset)', K: 18176, N: 128, M: 1 },
    ];
  }
  return [
    { model: 'smoke', K: 256, N: 256, M: 1 },
    { model: 'smoke', K: 256, N: 192, M: 72 },
  ];
}

function randomFloats(n: number, seed: number, scale: number): Float32Array {
  const w = randomWords(n, seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (w[i] / 4294967296 - 0.5) * scale;
  return out;
}

/** A double-quantised NF4 weight with random codes and plausible absmax, uploaded as stored state. */
function randomNf4Weight(gpu: Gpu, N: number, K: number): Nf4GpuWeight {
  return uploadNf4(gpu, randomNf4([N, K], 7), { label: 'bench-nf4' });
}


interface Contender {
  work(): Promise<void>;
  settle(): Promise<void>;
}

/**
 * Wall-clock timings of several kernels, sampled round-robin (A B C A B C …) so that a change in
 * the machine's load during the run reaches all of them alike: their ratios stay fair.
 */
async function timeInterleaved(contenders: Map<string, Contender>, warmup: number, runs: number, reps: number): Promise<Map<string, Timing>> {
  for (const c of contenders.values()) {
    for (let i = 0; i < warmup; i++) {
      await c.work();
      await c.settle();
    }
  }
  const samples = new Map([...contenders.keys()].map((k) => [k, [] as number[]]));
  for (let i = 0; i < runs; i++) {
    for (const [k, c] of contenders) {
      await c.settle();
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) await c.work();
      await c.settle();
      samples.get(k)!.push((performance.now() - t0) / 1000 / reps);
    }
  }
  return new Map([...samples].map(([k, xs]) => [k, timingOf('submitted-work-done', xs)]));
}

// --- a one-node ONNX model, encoded by hand (protobuf wire format) ---------------------------

class Pb {
  private parts: number[] = [];
  private bytes: Uint8Array[] = [];
  private flushParts(): void {
    if (this.parts.length) this.bytes.push(Uint8Array.from(this.parts));
    this.parts = [];
  }
  private varint(v: number): void {
    let x = v;
    while (x >= 0x80) {
      this.parts.push((x % 0x80) | 0x80);
      x = Math.floor(x / 0x80);
    }
    this.parts.push(x);
  }
  int(field: number, v: number): this {
    this.varint(field * 8);
    this.varint(v);
    return this;
  }
  raw(field: number, data: Uint8Array): this {
    this.varint(field * 8 + 2);
    this.varint(data.byteLength);
    this.flushParts();
    this.bytes.push(data);
    return this;
  }
  str(field: number, s: string): this {
    return this.raw(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Pb): this {
    return this.raw(field, m.finish());
  }
  finish(): Uint8Array {
    this.flushParts();
    const total = this.bytes.reduce((a, b) => a + b.byteLength, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const b of this.bytes) {
      out.set(b, o);
      o += b.byteLength;
    }
    return out;
  }
}

const ONNX_FLOAT = 1;
const ONNX_UINT8 = 2;

function valueInfo(name: string, dims: (number | string)[]): Pb {
  const shape = new Pb();
  for (const d of dims) shape.msg(1, typeof d === 'number' ? new Pb().int(1, d) : new Pb().str(2, d));
  return new Pb().str(1, name).msg(2, new Pb().msg(1, new Pb().int(1, ONNX_FLOAT).msg(2, shape)));
}

function tensor(name: string, type: number, dims: number[], data: Uint8Array): Pb {
  const t = new Pb();
  for (const d of dims) t.int(1, d);
  return t.int(2, type).str(8, name).raw(9, data);
}

/** Y[M, N] = A[M, K] · dequant(B)ᵀ with MatMulNBits (4-bit, blocksize 64, default zero point 8). */
export function matMulNBitsModel(K: number, N: number, seed: number): Uint8Array {
  const blockSize = 64;
  const blocks = Math.ceil(K / blockSize);
  const blob = blockSize / 2;
  const weight = new Uint8Array(randomWords(Math.ceil((N * blocks * blob) / 4), seed).buffer, 0, N * blocks * blob);
  const scales = randomFloats(N * blocks, seed + 1, 0.01);
  const attr = (name: string, v: number) => new Pb().str(1, name).int(3, v).int(20, 2);
  const node = new Pb()
    .str(1, 'A')
    .str(1, 'B')
    .str(1, 'scales')
    .str(2, 'Y')
    .str(3, 'matmul_nbits')
    .str(4, 'MatMulNBits')
    .str(7, 'com.microsoft')
    .msg(5, attr('K', K))
    .msg(5, attr('N', N))
    .msg(5, attr('bits', 4))
    .msg(5, attr('block_size', blockSize));
  const graph = new Pb()
    .msg(1, node)
    .str(2, 'nbits')
    .msg(5, tensor('B', ONNX_UINT8, [N, blocks, blob], weight))
    .msg(5, tensor('scales', ONNX_FLOAT, [N * blocks], new Uint8Array(scales.buffer)))
    .msg(11, valueInfo('A', ['M', K]))
    .msg(12, valueInfo('Y', ['M', N]));
  return new Pb()
    .int(1, 8)
    .str(2, 'qlora-studio-bench')
    .msg(8, new Pb().str(1, '').int(2, 17))
    .msg(8, new Pb().str(1, 'com.microsoft').int(2, 1))
    .msg(7, graph)
    .finish();
}

interface OrtRunner {
  run(): Promise<void>;
  settle(): Promise<void>;
  release(): Promise<void>;
}

async function ortRunner(shape: Shape): Promise<OrtRunner> {
  // Loaded on demand: the Node runtime of the benchmarks has no onnxruntime-web WebGPU.
  const ort = await import('onnxruntime-web/webgpu');
  ort.env.wasm.wasmPaths = { wasm: ortWasmUrl };
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(matMulNBitsModel(shape.K, shape.N, 3), {
    executionProviders: ['webgpu'],
    preferredOutputLocation: 'gpu-buffer',
  });
  const device = (await (ort.env.webgpu as unknown as { device: GPUDevice | Promise<GPUDevice> }).device) as GPUDevice;
  const usage = (globalThis as unknown as { GPUBufferUsage: GPUBufferUsage }).GPUBufferUsage;
  const input = device.createBuffer({ size: shape.M * shape.K * 4, usage: usage.STORAGE | usage.COPY_DST | usage.COPY_SRC });
  device.queue.writeBuffer(input, 0, randomFloats(shape.M * shape.K, 5, 2) as Float32Array<ArrayBuffer>);
  const feeds = { A: ort.Tensor.fromGpuBuffer(input, { dataType: 'float32', dims: [shape.M, shape.K] }) };
  return {
    async run() {
      const out = await session.run(feeds);
      out.Y.dispose();
    },
    settle: () => device.queue.onSubmittedWorkDone(),
    async release() {
      await session.release();
      input.destroy();
    },
  };
}

function rowFor(name: string, s: Shape, timing: Timing, weightBytes: number, extra: Record<string, number> = {}): BenchRow {
  const flops = 2 * s.M * s.N * s.K;
  const metrics: Record<string, number> = { gflops: flops / timing.median / 1e9, weight_bytes: weightBytes, ...extra };
  if (s.M === 1) metrics.gbs = (weightBytes + 4 * (s.K + s.N)) / timing.median / 1e9;
  return { name: `${name} ${s.model} ${s.K}→${s.N} M=${s.M}`, shape: { model: s.model, M: s.M, K: s.K, N: s.N }, timing, metrics };
}

/** Median GPU time of one dispatch from timestamp queries, where the adapter has them (else null). */
async function kernelTime(gpu: Gpu, work: () => void, runs: number): Promise<number | null> {
  if (!gpu.hasTimestamps) return null;
  const t = await timeGpu(gpu, work, { warmup: 1, runs });
  return t.method === 'timestamp-query' ? t.median : null;
}

function gpuMetrics(s: Shape, seconds: number | null, weightBytes: number): Record<string, number> {
  if (!seconds) return {};
  const out: Record<string, number> = { kernel_ms: seconds * 1e3, kernel_gflops: (2 * s.M * s.N * s.K) / seconds / 1e9 };
  if (s.M === 1) out.kernel_gbs = (weightBytes + 4 * (s.K + s.N)) / seconds / 1e9;
  return out;
}

/** A markdown table of this run (latest per runtime and size) beside the JSON results. */
async function writeTable(ctx: BenchContext, rows: BenchRow[], notes: string[]): Promise<void> {
  const dir = (typeof ctx.flags.results === 'string' ? ctx.flags.results : 'bench/results').replace(/\/$/, '');
  const byShape = new Map<string, Record<string, BenchRow>>();
  for (const r of rows) {
    const key = `${r.shape.model} ${r.shape.K}→${r.shape.N} | ${r.shape.M}`;
    const kernel = r.name.includes('64-row tiles') ? 'nf4_64' : r.name.startsWith('nf4') ? 'nf4' : r.name.startsWith('f32') ? 'f32' : 'ort';
    byShape.set(key, { ...byShape.get(key), [kernel]: r });
  }
  const ms = (r?: BenchRow) => (r ? (r.timing.median * 1e3).toFixed(3) : '—');
  const ratio = (a?: BenchRow, b?: BenchRow) => (a && b ? (b.timing.median / a.timing.median).toFixed(2) : '—');
  const a = ctx.gpu.adapter;
  const lines = [
    `# matmul benchmark: ${a.vendor} ${a.architecture} ${a.description}`.trimEnd(),
    '',
    `runtime ${ctx.runtime}, size ${ctx.size}, ${new Date().toISOString()}`,
    '',
    '| shape (K→N) | M | NF4 ms | NF4 64-row tiles ms | f32 ms | ORT 4-bit ms | NF4 GFLOP/s | NF4 GB/s | NF4 vs f32 | NF4 vs ORT | NF4 bits/param |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [key, k] of byShape) {
    const nf4 = k.nf4;
    lines.push(
      `| ${key} | ${ms(nf4)} | ${ms(k.nf4_64)} | ${ms(k.f32)} | ${ms(k.ort)} | ${nf4 ? nf4.metrics.gflops.toPrecision(3) : '—'} | ${nf4?.metrics.gbs?.toPrecision(3) ?? '—'} | ${ratio(nf4, k.f32)} | ${ratio(nf4, k.ort)} | ${nf4?.metrics.bits_per_param?.toFixed(3) ?? '—'} |`,
    );
  }
  lines.push('', 'Ratios are speed-ups (time of the other kernel / time of NF4): above 1 means NF4 is faster. NF4 uses 128-row tiles where M > 64; the 64-row tiles column times the same weight with the shorter tiles.', '', ...notes.map((n) => `- ${n}`), '');
  await ctx.io.writeFile(`${dir}/matmul-${ctx.runtime}-${ctx.size}.md`, lines.join('\n'));
}


async function run(ctx: BenchContext): Promise<{ rows: BenchRow[]; ratios: Record<string, number>; notes: string[] }> {
  const { gpu, io, size } = ctx;
  const runs = Number(ctx.flags.runs ?? (size === 'full' ? 10 : 3));
  const warmup = size === 'full' ? 3 : 1;
  const reps = size === 'full' ? 10 : 1;
  const rows: BenchRow[] = [];
  const ratios: Record<string, number> = {};
  const notes: string[] = [
    'Wall-clock time to queue completion for all three kernels, sampled round-robin (so load changes reach all alike), median of runs after warm-up; per product = sample / reps (includes per-submit overhead).',
    'kernel_ms / kernel_gflops / kernel_gbs: GPU timestamp time of our own dispatches, where the adapter has timestamp-query (not available for onnxruntime-web).',
    `runs=${runs} warmup=${warmup} reps=${reps}.`,
    'NF4: double-quantised weight (uint8 absmax codes + nested absmax + offset), dequantised inside the matmul.',
    'onnxruntime-web: MatMulNBits (4-bit, blocksize 64, symmetric zero point) on its own WebGPU device of the same adapter.',
  ];
  if (isEmulated(gpu.adapter)) notes.push('SwiftShader: CPU emulation of a GPU; the numbers say nothing about GPU performance.');
  const vsF32: number[] = [];
  const vsOrt: number[] = [];
  const settleOurs = () => gpu.done();
  for (const s of benchShapes(size)) {
    const tag = `${s.model} ${s.K}→${s.N} M=${s.M}`;
    const x = gpu.upload(randomFloats(s.M * s.K, 1, 2), 'scratch', 'bench-x');
    const y = gpu.alloc(s.M * s.N * 4, 'scratch', 'bench-y');
    const w4 = randomNf4Weight(gpu, s.N, s.K);
    const w32 = gpu.upload(randomFloats(s.N * s.K, 9, 0.05), 'scratch', 'bench-w32');
    const nf4Work = () => nf4LinearForward(gpu, SHADERS, { x, weight: w4, y, M: s.M });
    const f32Work = () => matmul(gpu, SHADERS.matmul, { a: x, b: w32, c: y, M: s.M, N: s.N, K: s.K, transB: true });
    const contenders = new Map<string, Contender>([
      ['nf4', { work: async () => nf4Work(), settle: settleOurs }],
      ['f32', { work: async () => f32Work(), settle: settleOurs }],
    ]);
    let ort: OrtRunner | null = null;
    if (ctx.runtime === 'browser') {
      try {
        ort = await ortRunner(s);
        const r = ort;
        contenders.set('ort', { work: () => r.run(), settle: () => r.settle() });
      } catch (err) {
        notes.push(`onnxruntime-web failed on ${tag}: ${(err as Error).message}`);
      }
    }
    // Where M takes the 128-row tiles, the 64-row tiles run beside them: which tile height wins
    // on this adapter, in the same run.
    const tall = rowsPerThread(s.M, gpu.limits.maxComputeWorkgroupStorageSize) === 8;
    const nf4ShortWork = () => nf4LinearForward(gpu, SHADERS, { x, weight: w4, y, M: s.M, tileRows: 4 });
    if (tall) contenders.set('nf4_64', { work: async () => nf4ShortWork(), settle: settleOurs });
    const times = await timeInterleaved(contenders, warmup, runs, reps);
    const [tNf4, tF32, tOrt, tShort] = [times.get('nf4')!, times.get('f32')!, times.get('ort'), times.get('nf4_64')];
    await ort?.release();
    const gNf4 = await kernelTime(gpu, nf4Work, runs);
    const gF32 = await kernelTime(gpu, f32Work, runs);
    const gShort = tall ? await kernelTime(gpu, nf4ShortWork, runs) : null;
    const bits = nf4BitsPerParam(w4);
    rows.push(rowFor('nf4 fused', s, tNf4, nf4StoredBytes(w4), { bits_per_param: bits, ...gpuMetrics(s, gNf4, nf4StoredBytes(w4)) }));
    if (tShort) {
      rows.push(rowFor('nf4 fused 64-row tiles', s, tShort, nf4StoredBytes(w4), { bits_per_param: bits, ...gpuMetrics(s, gShort, nf4StoredBytes(w4)) }));
      ratios[`nf4_128_vs_64_row_tiles ${tag}`] = tShort.median / tNf4.median;
    }
    rows.push(rowFor('f32 matmul', s, tF32, s.N * s.K * 4, gpuMetrics(s, gF32, s.N * s.K * 4)));
    releaseNf4(gpu, w4);
    gpu.release(w32, x, y);
    gpu.pool.trim();
    if (gNf4 && gF32) ratios[`nf4_vs_f32 kernel-time ${tag}`] = gF32 / gNf4;
    ratios[`nf4_vs_f32 ${tag}`] = tF32.median / tNf4.median;
    vsF32.push(tF32.median / tNf4.median);
    let ortNote = '';
    if (tOrt) {
      rows.push(rowFor('ort MatMulNBits', s, tOrt, s.N * Math.ceil(s.K / 64) * (32 + 4)));
      ratios[`nf4_vs_ort ${tag}`] = tOrt.median / tNf4.median;
      vsOrt.push(tOrt.median / tNf4.median);
      ortNote = ` ort ${(tOrt.median * 1e3).toFixed(3)} ms`;
    }
    const kernelNote = gNf4 && gF32 ? ` (kernel time nf4 ${(gNf4 * 1e3).toFixed(3)} ms, f32 ${(gF32 * 1e3).toFixed(3)} ms)` : '';
    const shortNote = tShort ? ` (64-row tiles ${(tShort.median * 1e3).toFixed(3)} ms)` : '';
    io.log(`${tag}: nf4 ${(tNf4.median * 1e3).toFixed(3)} ms${shortNote}, f32 ${(tF32.median * 1e3).toFixed(3)} ms${ortNote}${kernelNote}, ${bits.toFixed(3)} bits/param`);
  }
  await writeTable(ctx, rows, notes);
  ratios.nf4_vs_f32 = geomean(vsF32);
  if (vsOrt.length) ratios.nf4_vs_ort = geomean(vsOrt);
  else notes.push('onnxruntime-web was not measured (Node runtime or it failed): see the notes above.');
  return { rows, ratios, notes };
}

export const matmulSuite: BenchSuite = {
  name: 'matmul',
  description: 'NF4 fused dequant-matmul vs our f32 matmul vs onnxruntime-web MatMulNBits (phi-1_5 and falcon-7b linear shapes)',
  run,
};
