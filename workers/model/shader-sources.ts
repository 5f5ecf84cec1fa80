/** All model shaders as strings, through Vite's `?raw` imports (page, worker, CLI, tests, Vite-bundled Node). */
import matmul from '../../shaders/matmul.wgsl?raw';
import lora from '../../shaders/lora.wgsl?raw';
import embedding from '../../shaders/embedding.wgsl?raw';
import layernorm from '../../shaders/layernorm.wgsl?raw';
import rmsnorm from '../../shaders/rmsnorm.wgsl?raw';
import rotary from '../../shaders/rotary.wgsl?raw';
import attention from '../../shaders/attention.wgsl?raw';
import activation from '../../shaders/activation.wgsl?raw';
import swiglu from '../../shaders/swiglu.wgsl?raw';
import crossEntropy from '../../shaders/cross-entropy.wgsl?raw';
import elementwise from '../../shaders/elementwise.wgsl?raw';
import nf4 from '../../shaders/nf4.wgsl?raw';
import nf4Matmul from '../../shaders/nf4-matmul.wgsl?raw';
import argmax from '../../shaders/argmax.wgsl?raw';
import type { ModelShaders } from './shaders';

export const MODEL_SHADERS: ModelShaders = { matmul, lora, embedding, layernorm, rmsnorm, rotary, attention, activation, swiglu, crossEntropy, elementwise, nf4, nf4Matmul, argmax };
