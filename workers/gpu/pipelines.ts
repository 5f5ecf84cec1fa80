/** Compute pipelines compiled once per (shader source, entry point, override constants). */

export class PipelineCache {
  private readonly cache = new Map<string, GPUComputePipeline>();

  constructor(private readonly device: GPUDevice) {}

  get(code: string, entryPoint = 'main', constants: Record<string, number> = {}): GPUComputePipeline {
    const key = `${entryPoint}\u0000${JSON.stringify(constants)}\u0000${code}`;
    let pipeline = this.cache.get(key);
    if (!pipeline) {
      const module = this.device.createShaderModule({ code });
      pipeline = this.device.createComputePipeline({
        layout: 'auto',
        compute: { module, entryPoint, constants },
      });
      this.cache.set(key, pipeline);
    }
    return pipeline;
  }

  get size(): number {
    return this.cache.size;
  }
}
