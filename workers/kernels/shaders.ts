/**
 * The kernel catalogue's one registry: the WGSL source of every kernel, by name. A key is the
 * camel-cased name of its file in `shaders/` (`cross-entropy.wgsl` → `crossEntropy`); the
 * launcher is `workers/kernels/<file name>.ts` (see docs/ARCHITECTURE.md, "Kernel catalogue").
 * Launchers take the sources as strings so they have no Vite-only imports: the Vite build fills
 * this object in shader-sources.ts, and each consumer names the entries it reads with a Pick.
 */
export interface KernelShaders {
  activation: string;
  adamw: string;
  argmax: string;
  attention: string;
  crossEntropy: string;
  elementwise: string;
  embedding: string;
  gradNormSumsq: string;
  gradNormFinalize: string;
  layernorm: string;
  lora: string;
  matmul: string;
  nf4: string;
  nf4Matmul: string;
  rmsnorm: string;
  rotary: string;
  swiglu: string;
}

/** What the causal LM's layers, head, loss, NF4 weights and decoding dispatch. */
export type ModelShaders = Pick<
  KernelShaders,
  'matmul' | 'lora' | 'embedding' | 'layernorm' | 'rmsnorm' | 'rotary' | 'attention' | 'activation' | 'swiglu' | 'crossEntropy' | 'elementwise' | 'nf4' | 'nf4Matmul' | 'argmax'
>;

/** What the optimizer step dispatches: the gradient norm's two passes and AdamW. */
export type OptimizerShaders = Pick<KernelShaders, 'adamw' | 'gradNormSumsq' | 'gradNormFinalize'>;
