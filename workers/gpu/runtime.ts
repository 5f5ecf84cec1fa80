/**
 * The GPU runtime the engine uses: one device, one buffer pool, one pipeline cache, and
 * helpers for uploads, uniforms, dispatch sizing and readback. Dispatches are recorded into
 * one command encoder and submitted together by `flush()` (readbacks and buffer writes flush
 * first). Uniforms live in one arena written once per submit, and zero fills are recorded in
 * the encoder, so neither forces a submit: a training step or a decoded token is a handful of
 * submits, not one per dispatch.
 */
import { acquireDevice, type AcquireOptions, type AdapterDescription, type Feature } from './device';
import { BufferPool, type GpuBuffer } from './pool';
import type { MemoryCategory } from '../util/memory-categories';
import { PipelineCache } from './pipelines';

export type Binding = GpuBuffer | { buf: GpuBuffer; offset: number; size: number };

interface TimingState {
  querySet: GPUQuerySet;
  used: number;
  capacity: number;
  /** Label of each pass whose timestamps sit in the query set now. */
  labels: string[];
  /** Earlier full query sets, resolved into buffers, with their passes' labels. */
  resolved: { buffer: GpuBuffer; labels: string[] }[];
}

/** A slice of the uniform arena, valid until the next flush. */
export interface UniformBinding {
  buf: GpuBuffer;
  offset: number;
  size: number;
  generation: number;
}

/** Bytes of the uniform arena: the uniforms of one submit (256 of them at a 256-byte alignment). */
export const UNIFORM_ARENA_BYTES = 64 * 1024;

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

/** An error the device reported (validation or out of memory), thrown by the next read. */
export class GpuError extends Error {
  constructor(
    message: string,
    readonly outOfMemory: boolean,
  ) {
    super(message);
    this.name = 'GpuError';
  }
}

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  private encoder: GPUCommandEncoder | null = null;
  private dispatchCount = 0;
  private submitCount = 0;
  /** Uniforms of the work being recorded: CPU bytes, written into `arena` just before the submit. */
  private uniforms: { arena: GpuBuffer; staging: Uint8Array<ArrayBuffer>; used: number; align: number } | null = null;
  /** Counts the flushes that wrote the arena: a uniform is valid only within its own. */
  private uniformGeneration = 0;
  private dummyBuffer: GpuBuffer | null = null;
  private timing: TimingState | null = null;
  /** Validation and out-of-memory errors the device reported; thrown by the next read. */
  private errors: { message: string; outOfMemory: boolean }[] = [];

  constructor(
    readonly device: GPUDevice,
    readonly adapter: AdapterDescription,
    readonly features: Set<Feature>,
  ) {
    this.pool = new BufferPool(device);
    this.pipelines = new PipelineCache(device);
    device.addEventListener('uncapturederror', (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      // Node's Dawn binding has no GPUOutOfMemoryError global: compare by constructor name.
      this.errors.push({ message: error.message, outOfMemory: error.constructor?.name === 'GPUOutOfMemoryError' });
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

  /**
   * Makes the buffers a device keeps for its lifetime (the dummy binding, the uniform arena) and
   * returns their bytes. A peak measured on a device that already ran something excludes them,
   * while the planner counts them: measurements add this back.
   */
  lifetimeBuffers(): number {
    this.uniform([0]);
    this.flush();
    return this.dummy.size + (this.uniforms?.arena.size ?? 0);
  }

  /** Throws the first GPU error reported since the last check (so a bad dispatch fails loudly). */
  checkErrors(): void {
    if (this.errors.length) {
      const [first, ...rest] = this.errors;
      this.errors = [];
      throw new GpuError(`GPU error: ${first.message}${rest.length ? ` (and ${rest.length} more)` : ''}`, [first, ...rest].some((e) => e.outOfMemory));
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

  /**
   * Fill a buffer with a 32-bit pattern (zeroing accumulators; poisoning outputs in tests).
   * Zero is recorded in the encoder like a dispatch; other patterns are written (a flush).
   */
  fill(buf: GpuBuffer, word: number, bytes = buf.size): void {
    const size = Math.ceil(bytes / 4) * 4;
    if (word >>> 0 === 0) {
      if (!this.encoder) this.encoder = this.device.createCommandEncoder();
      this.encoder.clearBuffer(buf.buffer, 0, size);
      return;
    }
    this.write(buf, new Uint32Array(size / 4).fill(word >>> 0));
  }

  /**
   * A uniform block holding `values` (u32/i32/f32 as raw 32-bit words, by `types`), bound as a
   * slice of the uniform arena. The arena is written right before the submit that uses it, and
   * the queue orders that write after every earlier submit, so no flush is needed here. The
   * slice is recycled by the next flush: make it right before the dispatch that binds it
   * (`dispatch` refuses one from before a flush).
   */
  uniform(values: ArrayLike<number>, types: string = 'u'.repeat(values.length)): UniformBinding {
    const size = Math.max(16, Math.ceil((values.length * 4) / 16) * 16);
    let u = this.uniforms;
    if (!u) {
      const align = this.limits.minUniformBufferOffsetAlignment;
      const arena = this.pool.acquire(UNIFORM_ARENA_BYTES, 'scratch', 'uniforms', USAGE().UNIFORM | USAGE().COPY_DST);
      u = this.uniforms = { arena, staging: new Uint8Array(UNIFORM_ARENA_BYTES), used: 0, align };
    }
    if (size > UNIFORM_ARENA_BYTES) throw new RangeError(`uniform of ${size} bytes exceeds the ${UNIFORM_ARENA_BYTES}-byte arena`);
    if (u.used + size > UNIFORM_ARENA_BYTES) this.flush();
    const offset = u.used;
    const view = new DataView(u.staging.buffer, offset, size);
    for (let i = 0; i < values.length; i++) {
      const t = types[i] ?? 'u';
      if (t === 'f') view.setFloat32(i * 4, values[i], true);
      else if (t === 'i') view.setInt32(i * 4, values[i], true);
      else view.setUint32(i * 4, values[i] >>> 0, true);
    }
    for (let i = values.length * 4; i < size; i++) u.staging[offset + i] = 0;
    u.used = Math.ceil((offset + size) / u.align) * u.align;
    return { buf: u.arena, offset, size, generation: this.uniformGeneration };
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
    const entries: GPUBindGroupEntry[] = spec.bindings.map((b, i) => {
      if (!('buf' in b)) return { binding: i, resource: { buffer: b.buffer } };
      if ('generation' in b && b.generation !== this.uniformGeneration) {
        throw new Error(`${spec.label ?? 'dispatch'}: binding ${i} is a uniform made before the last flush; make uniforms right before their dispatch`);
      }
      return { binding: i, resource: { buffer: b.buf.buffer, offset: b.offset, size: b.size } };
    });
    const bindGroup = this.device.createBindGroup({ layout: this.pipelines.layout(spec.pipeline), entries });
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    const descriptor: GPUComputePassDescriptor = spec.label ? { label: spec.label } : {};
    const t = this.timing;
    if (t) {
      if (t.used + 2 > t.capacity) this.resolveTimestamps(t);
      descriptor.timestampWrites = { querySet: t.querySet, beginningOfPassWriteIndex: t.used, endOfPassWriteIndex: t.used + 1 };
      t.used += 2;
      t.labels.push(spec.label ?? 'unlabelled');
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

  /** Submit what has been recorded, after writing the uniforms it reads. */
  flush(): void {
    const u = this.uniforms;
    if (u && u.used > 0) {
      this.device.queue.writeBuffer(u.arena.buffer, 0, u.staging, 0, u.used);
      u.used = 0;
      this.uniformGeneration++;
    }
    if (this.encoder) {
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
      this.submitCount++;
    }
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
    this.timing = { querySet: this.device.createQuerySet({ type: 'timestamp', count: capacity }), used: 0, capacity, labels: [], resolved: [] };
  }

  // A full query set is resolved into a buffer (recorded in order with the passes) and reused.
  private resolveTimestamps(t: TimingState): void {
    if (t.used === 0) return;
    const bytes = t.used * 8;
    const buffer = this.pool.acquire(bytes, 'scratch', 'timestamps', USAGE().QUERY_RESOLVE | USAGE().COPY_SRC);
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.resolveQuerySet(t.querySet, 0, t.used, buffer.buffer, 0);
    t.resolved.push({ buffer, labels: t.labels });
    t.used = 0;
    t.labels = [];
  }

  /** GPU time of the passes since beginTiming (any number of passes), in nanoseconds: in all and by dispatch label. */
  async endTiming(): Promise<{ ns: number; byLabel: Map<string, number> }> {
    const t = this.timing;
    if (!t) throw new Error('endTiming without beginTiming');
    this.timing = null;
    this.resolveTimestamps(t);
    const byLabel = new Map<string, number>();
    let total = 0;
    try {
      for (const { buffer, labels } of t.resolved) {
        const raw = new BigUint64Array(await this.read(buffer, labels.length * 16));
        labels.forEach((label, i) => {
          const ns = raw[2 * i + 1] > raw[2 * i] ? Number(raw[2 * i + 1] - raw[2 * i]) : 0;
          total += ns;
          byLabel.set(label, (byLabel.get(label) ?? 0) + ns);
        });
      }
    } finally {
      for (const { buffer } of t.resolved) this.pool.release(buffer);
      t.querySet.destroy();
    }
    return { ns: total, byLabel };
  }

  get dispatches(): number {
    return this.dispatchCount;
  }

  /** Command buffers submitted so far (each one a queue round trip for the driver). */
  get submits(): number {
    return this.submitCount;
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
