/** Every kernel's WGSL as a string, through Vite's `?raw` imports (page, worker, CLI, tests, Vite-bundled Node). */
import activation from '../../shaders/activation.wgsl?raw';
import adamw from '../../shaders/adamw.wgsl?raw';
import argmax from '../../shaders/argmax.wgsl?raw';
import attention from '../../shaders/attention.wgsl?raw';
import crossEntropy from '../../shaders/cross-entropy.wgsl?raw';
import elementwise from '../../shaders/elementwise.wgsl?raw';
import embedding from '../../shaders/embedding.wgsl?raw';
import gradNormSumsq from '../../shaders/grad-norm-sumsq.wgsl?raw';
import gradNormFinalize from '../../shaders/grad-norm-finalize.wgsl?raw';
import layernorm from '../../shaders/layernorm.wgsl?raw';
import lora from '../../shaders/lora.wgsl?raw';
import matmul from '../../shaders/matmul.wgsl?raw';
import nf4 from '../../shaders/nf4.wgsl?raw';
import nf4Matmul from '../../shaders/nf4-matmul.wgsl?raw';
import rmsnorm from '../../shaders/rmsnorm.wgsl?raw';
import rotary from '../../shaders/rotary.wgsl?raw';
import swiglu from '../../shaders/swiglu.wgsl?raw';
import type { KernelShaders } from './shaders';

export const SHADERS: KernelShaders = {
  activation,
  adamw,
  argmax,
  attention,
  crossEntropy,
  elementwise,
  embedding,
  gradNormSumsq,
  gradNormFinalize,
  layernorm,
  lora,
  matmul,
  nf4,
  nf4Matmul,
  rmsnorm,
  rotary,
  swiglu,
};
