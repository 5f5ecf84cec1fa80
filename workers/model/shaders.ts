/** The WGSL sources the model needs, passed in by the caller (see shader-sources.ts for the Vite build). */
export interface ModelShaders {
  matmul: string;
  lora: string;
  embedding: string;
  layernorm: string;
  rmsnorm: string;
  rotary: string;
  attention: string;
  activation: string;
  swiglu: string;
  crossEntropy: string;
  elementwise: string;
  nf4: string;
  nf4Matmul: string;
  argmax: string;
}
