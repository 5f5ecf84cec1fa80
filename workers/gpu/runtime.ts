/**
 * The GPU runtime the engine uses: one device, one buffer pool, one pipeline cache, and
 * helpers for uploads, uniforms, dispatch sizing and readback. Dispatches are recorded into
 * one command encoder and submitted together by `flush()` (readbacks flush first).
 */
import { acquireDevice, type AcquireOptions, type AdapterDescription, type Feature } from './device';
import { BufferPool, type GpuBuffer, type MemoryCategory } from './pool';
import { PipelineCache } from './pipelines';

export type Binding = GpuBuffer | { buf: GpuBuffer; offset: number; size: number };

export interface DispatchSpec {
  /** Compiled pipeline, from `gpu.pipeline(...)`. */
  pipeline: GPUComputePipeline;
  /** Bindings of group 0, binding i = entry i. */
  bindings: Binding[];
  /** Workgroup counts; build with `gpu.grid(...)` to respect maxComputeWorkgroupsPerDimension. */
  workgroups: [number, number?, number?];
  label?: string;
}

const USAGE = () => (globalThis as { GPUBufferUsage?: GPUBufferUsage }).GPUBufferUsage!;
const MAP = () => (globalThis as { GPUMapMode?: GPUMapMode }).GPUMapMode!;

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  private encoder: GPUCommandEncoder | null = null;
  private pendingRelease: GpuBuffer[] = [];
  private dispatchCount = 0;
  private dummyBuffer: GpuBuffer | null = null;
  private timing: { querySet: GPUQuerySet; used: number; capacity: number; overflow: boolean } | null = null;
  /** Validation and out-of-memory errors the device reported; thrown by the next read. */
  private errors: string[] = [];

  constructor(
    readonly device: GPUDevice,
    readonly adapter: AdapterDescription,
    readonly features: Set<Feature>,
  ) {
    this.pool = new BufferPool(device);
    this.pipelines = new PipelineCache(device);
    device.addEventListener('uncapturederror', (event) => {
      this.errors.push((event as GPUUncapturedErrorEvent).error.message);
    });
  }

  /** A small zeroed buffer to bind where a kernel's optional input is absent. */
  get dummy(): GpuBuffer {
    if (!this.dummyBuffer) {
      this.dummyBuffer = this.alloc(256, 'scratch', 'dummy');
      this.fill(this.dummyBuffer, 0);
    }
    return this.dummyBuffer;
  }

  /** Throws the first GPU error reported since the last check (so a bad dispatch fails loudly). */
  checkErrors(): void {
    if (this.errors.length) {
      const [first, ...rest] = this.errors;
      this.errors = [];
      throw new Error(`GPU error: ${first}${rest.length ? ` (and ${rest.length} more)` : ''}`);
    }
  }

  static async create(options: AcquireOptions = {}): Promise<Gpu> {
    const { device, adapter, features } = await acquireDevice(options);
    return new Gpu(device, adapter, features);
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  pipeline(code: string, entryPoint = 'main', constants: Record<string, number> = {}): GPUComputePipeline {
    return this.pipelines.get(code, entryPoint, constants);
  }

  /** A new pooled storage buffer; contents undefined until written. */
  alloc(bytes: number, category: MemoryCategory, label?: string): GpuBuffer {
    return this.pool.acquire(bytes, category, label);
  }

  release(...bufs: (GpuBuffer | null | undefined)[]): void {
    for (const b of bufs) if (b) this.pool.release(b);
  }

  /** Upload typed data into a new pooled buffer. */
  upload(data: ArrayBufferView, category: MemoryCategory, label?: string): GpuBuffer {
    const buf = this.alloc(data.byteLength, category, label);
    this.write(buf, data);
    return buf;
  }

  write(buf: GpuBuffer, data: ArrayBufferView, byteOffset = 0): void {
    // writeBuffer wants a multiple of 4 bytes.
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const aligned = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.flushIfRecording();
    this.device.queue.writeBuffer(buf.buffer, byteOffset, aligned as Uint8Array<ArrayBuffer>);
  }

  /** Fill a buffer with a 32-bit pattern (used to poison outputs in tests and zero accumulators). */
  fill(buf: GpuBuffer, word: number, bytes = buf.size): void {
    const words = new Uint32Array(Math.ceil(bytes / 4)).fill(word >>> 0);
    this.write(buf, words);
  }

  /** A uniform buffer holding `words` (u32/i32/f32 as raw 32-bit words); released after the next flush. */
  uniform(values: ArrayLike<number>, types: string = 'u'.repeat(values.length)): GpuBuffer {
    const size = Math.max(16, Math.ceil((values.length * 4) / 16) * 16);
    const data = new ArrayBuffer(size);
    const view = new DataView(data);
    for (let i = 0; i < values.length; i++) {
      const t = types[i] ?? 'u';
      if (t === 'f') view.setFloat32(i * 4, values[i], true);
      else if (t === 'i') view.setInt32(i * 4, values[i], true);
      else view.setUint32(i * 4, values[i] >>> 0, true);
    }
    const buf = this.pool.acquire(size, 'scratch', 'uniform', USAGE().UNIFORM | USAGE().COPY_DST);
    this.flushIfRecording();
    this.device.queue.writeBuffer(buf.buffer, 0, data);
    this.pendingRelease.push(buf);
    return buf;
  }

  /**
   * Workgroup counts covering `count` workgroups, split into x and y when more than one
   * dimension allows. Kernels recover the linear index as `wid.y * nwg.x + wid.x`.
   */
  grid(count: number): [number, number] {
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    const n = Math.max(1, Math.ceil(count));
    if (n <= maxDim) return [n, 1];
    const y = Math.ceil(n / maxDim);
    if (y > maxDim) throw new RangeError(`dispatch of ${n} workgroups exceeds ${maxDim}²`);
    return [Math.ceil(n / y), y];
  }

  dispatch(spec: DispatchSpec): void {
    const entries: GPUBindGroupEntry[] = spec.bindings.map((b, i) =>
      'buf' in b
        ? { binding: i, resource: { buffer: b.buf.buffer, offset: b.offset, size: b.size } }
        : { binding: i, resource: { buffer: b.buffer } },
    );
    const bindGroup = this.device.createBindGroup({ layout: spec.pipeline.getBindGroupLayout(0), entries });
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    const descriptor: GPUComputePassDescriptor = spec.label ? { label: spec.label } : {};
    const t = this.timing;
    if (t) {
      if (t.used + 2 <= t.capacity) {
        descriptor.timestampWrites = { querySet: t.querySet, beginningOfPassWriteIndex: t.used, endOfPassWriteIndex: t.used + 1 };
        t.used += 2;
      } else t.overflow = true;
    }
    const pass = this.encoder.beginComputePass(descriptor);
    pass.setPipeline(spec.pipeline);
    pass.setBindGroup(0, bindGroup);
    const [x, y = 1, z = 1] = spec.workgroups;
    pass.dispatchWorkgroups(x, y, z);
    pass.end();
    this.dispatchCount++;
  }

  /** Copy bytes between buffers, recorded in order with the dispatches. */
  copy(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, bytes: number): void {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
  }

  /** Submit what has been recorded. Uniforms used by it go back to the pool. */
  flush(): void {
    if (this.encoder) {
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
    }
    for (const b of this.pendingRelease) this.pool.release(b);
    this.pendingRelease = [];
  }

  private flushIfRecording(): void {
    // queue.writeBuffer runs before any command buffer submitted later, so recorded work that
    // must see the old contents has to be submitted first.
    if (this.encoder) this.flush();
  }

  async done(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.checkErrors();
  }

  /** Read `bytes` from a buffer back to the CPU. */
  async read(buf: GpuBuffer, bytes = buf.size, byteOffset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.pool.acquire(size, 'scratch', 'readback', USAGE().MAP_READ | USAGE().COPY_DST);
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.copyBufferToBuffer(buf.buffer, byteOffset, staging.buffer, 0, size);
    this.flush();
    await staging.buffer.mapAsync(MAP().READ);
    this.checkErrors();
    const out = staging.buffer.getMappedRange().slice(0, bytes);
    staging.buffer.unmap();
    this.pool.release(staging);
    return out;
  }

  async readF32(buf: GpuBuffer, count = buf.size / 4, offsetElems = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(buf, count * 4, offsetElems * 4));
  }

  async readU32(buf: GpuBuffer, count = buf.size / 4, offsetElems = 0): Promise<Uint32Array> {
    return new Uint32Array(await this.read(buf, count * 4, offsetElems * 4));
  }

  /** Whether GPU timestamps can time dispatches on this device. */
  get hasTimestamps(): boolean {
    return this.features.has('timestamp-query');
  }

  /** Start timing every dispatch with GPU timestamps (needs 'timestamp-query'). */
  beginTiming(capacity = 4096): void {
    if (!this.hasTimestamps) throw new Error('this device has no timestamp-query');
    this.flush();
    this.timing = { querySet: this.device.createQuerySet({ type: 'timestamp', count: capacity }), used: 0, capacity, overflow: false };
  }

  /** Sum of the GPU time of the passes since beginTiming, in nanoseconds; null if the query set overflowed. */
  async endTiming(): Promise<number | null> {
    const t = this.timing;
    if (!t) throw new Error('endTiming without beginTiming');
    this.timing = null;
    if (t.overflow || t.used === 0) {
      t.querySet.destroy();
      return t.overflow ? null : 0;
    }
    const bytes = t.used * 8;
    const resolved = this.pool.acquire(bytes, 'scratch', 'timestamps', USAGE().QUERY_RESOLVE | USAGE().COPY_SRC);
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.resolveQuerySet(t.querySet, 0, t.used, resolved.buffer, 0);
    const raw = new BigUint64Array(await this.read(resolved, bytes));
    this.pool.release(resolved);
    t.querySet.destroy();
    let total = 0n;
    for (let i = 0; i < raw.length; i += 2) if (raw[i + 1] > raw[i]) total += raw[i + 1] - raw[i];
    return Number(total);
  }

  get dispatches(): number {
    return this.dispatchCount;
  }

  destroy(): void {
    this.flush();
    this.pool.destroy();
    this.device.destroy();
  }
}

function padTo4(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}
