/** Adapter and device acquisition: the largest limits the adapter allows, optional features when present. */

export type Feature = 'shader-f16' | 'subgroups' | 'timestamp-query';
const OPTIONAL_FEATURES: Feature[] = ['shader-f16', 'subgroups', 'timestamp-query'];

/** Limits we raise to the adapter's maximum: big weights and wide workgroups need them. */
const RAISED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxBindGroups',
] as const;

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  features: string[];
  f16Native: boolean;
  limits: Record<string, number>;
}

/** A software adapter (SwiftShader): CPU emulation of a GPU, whose costs are not a GPU's (slower than plain CPU code at many jobs). */
export function isEmulated(adapter: AdapterDescription): boolean {
  return adapter.isFallbackAdapter || adapter.architecture === 'swiftshader';
}

export type WebGpuUnavailableReason = 'no-navigator-gpu' | 'no-adapter' | 'device-request-failed';

/** Thrown when this browser or machine cannot give us WebGPU; `reason` says which step failed. */
export class WebGpuUnavailableError extends Error {
  readonly reason: WebGpuUnavailableReason;
  constructor(reason: WebGpuUnavailableReason, message: string) {
    super(message);
    this.name = 'WebGpuUnavailableError';
    this.reason = reason;
  }
}

export interface DeviceLostInfo {
  reason: string;
  message: string;
}

export interface AcquiredDevice {
  device: GPUDevice;
  adapter: AdapterDescription;
  features: Set<Feature>;
}

export interface AcquireOptions {
  /** The GPU entry point: `navigator.gpu` in browsers, the `webgpu` package's object under Node. */
  gpu?: GPU;
  /** Called once if the device is lost (driver reset, out of memory, tab backgrounded too long). */
  onLost?: (info: DeviceLostInfo) => void;
  /** Leave optional features off, to test the portable code paths on adapters that have them. */
  disableFeatures?: Feature[];
}

export async function acquireDevice(options: AcquireOptions = {}): Promise<AcquiredDevice> {
  const gpu = options.gpu ?? (typeof navigator !== 'undefined' ? navigator.gpu : undefined);
  if (!gpu) {
    throw new WebGpuUnavailableError(
      'no-navigator-gpu',
      'WebGPU is not available in this browser. Use a recent Chrome or Edge (or Firefox Nightly / Safari Technology Preview), served over https or localhost; on Linux Chrome may need chrome://flags/#enable-unsafe-webgpu.',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new WebGpuUnavailableError(
      'no-adapter',
      'WebGPU is present but no GPU adapter was offered. Check that hardware acceleration is enabled and the GPU driver is not block-listed (chrome://gpu).',
    );
  }
  const disabled = new Set(options.disableFeatures ?? []);
  const features = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f) && !disabled.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: features as GPUFeatureName[], requiredLimits });
  } catch (err) {
    throw new WebGpuUnavailableError('device-request-failed', `The GPU adapter refused a device: ${(err as Error).message}`);
  }
  device.lost.then((info) => {
    if (info.reason !== 'destroyed') options.onLost?.({ reason: info.reason ?? 'unknown', message: info.message });
  });
  return { device, adapter: describeAdapter(adapter, device), features: new Set(features) };
}

function describeAdapter(adapter: GPUAdapter, device: GPUDevice): AdapterDescription {
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const key in device.limits) {
    const value = (device.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') limits[key] = value;
  }
  const featureList = [...device.features].map(String).sort();
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isFallbackAdapter: Boolean((info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    features: featureList,
    f16Native: device.features.has('shader-f16'),
    limits,
  };
}
