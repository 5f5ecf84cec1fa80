/**
 * Compute pipelines compiled once per (shader source, entry point, override constants), with
 * the bind-group layout each dispatch needs. Looked up by the source string first: the same
 * imported string every call, so its hash is computed once, not per dispatch.
 */

export class PipelineCache {
  private readonly bySource = new Map<string, Map<string, GPUComputePipeline>>();
  private readonly layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();

  constructor(private readonly device: GPUDevice) {}

  get(code: string, entryPoint = 'main', constants: Record<string, number> = {}): GPUComputePipeline {
    let variants = this.bySource.get(code);
    if (!variants) this.bySource.set(code, (variants = new Map()));
    const key = `${entryPoint}\u0000${JSON.stringify(constants)}`;
    let pipeline = variants.get(key);
    if (!pipeline) {
      const module = this.device.createShaderModule({ code });
      pipeline = this.device.createComputePipeline({
        layout: 'auto',
        compute: { module, entryPoint, constants },
      });
      variants.set(key, pipeline);
    }
    return pipeline;
  }

  /** Group 0's layout of a pipeline (asked once per pipeline, not once per dispatch). */
  layout(pipeline: GPUComputePipeline): GPUBindGroupLayout {
    let layout = this.layouts.get(pipeline);
    if (!layout) this.layouts.set(pipeline, (layout = pipeline.getBindGroupLayout(0)));
    return layout;
  }
}
