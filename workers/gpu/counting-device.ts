/**
 * A GPUDevice that records allocations and nothing else: buffers hold no memory, pipelines
 * compile nothing, dispatches do nothing, readbacks return zeros. The engine's own code runs on
 * it unchanged, so the buffer pool's byte accounting is exactly what a real device would see
 * (same buffers, same order, same sizes): the memory planner's predictions come from running the
 * real allocation path, not from a copy of it. Works without WebGPU (Node, a page without it).
 */
import { Gpu } from './runtime';
import type { AdapterDescription } from './device';

export interface CountingLimits {
  /** What NF4 weights are split by (parts stay within one binding). */
  maxStorageBufferBindingSize: number;
  /** Workgroup memory: the attention and NF4 kernels size their tiles by it. */
  maxComputeWorkgroupStorageSize?: number;
}

/** The spec's flag values, for where the WebGPU globals are missing. */
const BUFFER_USAGE = { MAP_READ: 1, MAP_WRITE: 2, COPY_SRC: 4, COPY_DST: 8, INDEX: 16, VERTEX: 32, UNIFORM: 64, STORAGE: 128, INDIRECT: 256, QUERY_RESOLVE: 512 };
const MAP_MODE = { READ: 1, WRITE: 2 };

/** Defines GPUBufferUsage / GPUMapMode where the environment has no WebGPU (the runtime reads them). */
function ensureWebGpuConstants(): void {
  const g = globalThis as Record<string, unknown>;
  g.GPUBufferUsage ??= BUFFER_USAGE;
  g.GPUMapMode ??= MAP_MODE;
}

/** The largest buffer asked for, with its label (a real device would refuse it past maxBufferSize). */
export interface LargestRequest {
  label: string;
  size: number;
}

function countingDevice(limits: CountingLimits, largest: LargestRequest): GPUDevice {
  const noop = () => undefined;
  const commandEncoder = () => ({
    beginComputePass: () => ({ setPipeline: noop, setBindGroup: noop, dispatchWorkgroups: noop, end: noop }),
    copyBufferToBuffer: noop,
    clearBuffer: noop,
    resolveQuerySet: noop,
    finish: () => ({}),
  });
  const device = {
    limits: {
      // No allocation is refused here: the planner compares the largest request with the limit it plans for.
      maxBufferSize: Number.MAX_SAFE_INTEGER,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize ?? 16384,
      maxComputeWorkgroupsPerDimension: 65535,
      minUniformBufferOffsetAlignment: 256,
      maxComputeInvocationsPerWorkgroup: 256,
    },
    features: new Set<string>(),
    lost: new Promise(noop),
    addEventListener: noop,
    destroy: noop,
    createBuffer: (d: GPUBufferDescriptor) => {
      if (d.size > largest.size) Object.assign(largest, { size: d.size, label: d.label ?? '' });
      return {
        size: d.size,
        usage: d.usage,
        label: d.label ?? '',
        destroy: noop,
        mapAsync: () => Promise.resolve(),
        // A fresh zeroed range per map: readbacks (losses, absmax) read zeros.
        getMappedRange: () => new ArrayBuffer(d.size),
        unmap: noop,
      };
    },
    createShaderModule: () => ({}),
    createComputePipeline: () => ({ getBindGroupLayout: () => ({}) }),
    createBindGroup: () => ({}),
    createCommandEncoder: commandEncoder,
    createQuerySet: () => ({ destroy: noop }),
    queue: { writeBuffer: noop, submit: noop, onSubmittedWorkDone: () => Promise.resolve() },
  };
  return device as unknown as GPUDevice;
}

const COUNTING_ADAPTER: AdapterDescription = {
  vendor: 'none',
  architecture: 'counting',
  device: 'counting device',
  description: 'allocation counting (no GPU work)',
  isFallbackAdapter: false,
  limits: {},
  features: [],
  f16Native: false,
} as unknown as AdapterDescription;

/** A Gpu runtime over a counting device, and the largest buffer requested on it so far. */
export function countingGpu(limits: CountingLimits): { gpu: Gpu; largest: LargestRequest } {
  ensureWebGpuConstants();
  const largest: LargestRequest = { label: '', size: 0 };
  return { gpu: new Gpu(countingDevice(limits, largest), COUNTING_ADAPTER, new Set()), largest };
}
