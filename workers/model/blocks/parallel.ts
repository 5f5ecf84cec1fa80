/**
 * The parallel decoder block of phi and falcon-7b: one input LayerNorm feeds attention and the
 * MLP side by side, and both add into the residual:
 *   h = LN(x);  out = x + dense(attention(h)) + fc2(gelu(fc1(h)))
 * Roles: q/k/v or qkv (self-attention.ts), `dense`, `fc1`, `fc2`; norm `input`.
 */
import type { GpuBuffer } from '../../gpu/pool';
import { geluBackward, geluForward, type GeluKind } from '../../kernels/activation';
import type { ModelConfig } from '../config';
import type { Block } from '../block';
import type { LoraKeep } from '../layer-kit';
import { releaseAttention, selfAttentionBackward, selfAttentionDecode, selfAttentionForward, type AttentionSaved } from './self-attention';

interface ParallelSaved {
  h: GpuBuffer;
  stats: GpuBuffer;
  attention: AttentionSaved;
  fc1: GpuBuffer;
  lora: LoraKeep;
}

/** The GELU of a parallel block's MLP (the family's config parser admits no other). */
function gelu(c: ModelConfig): GeluKind {
  if (c.activation === 'silu') throw new Error(`${c.arch}: the parallel block's MLP takes a GELU, not SiLU gating`);
  return c.activation;
}

export const parallelBlock: Block<ParallelSaved> = {
  forward(k, layer, x, ctx, keep) {
    const gpu = k.gpu;
    const c = k.config;
    const { rows } = ctx;
    const cat = keep ? 'activations' : 'scratch';
    const { y: h, stats } = k.normForward(k.norm(layer, 'input'), x, rows, cat);
    const lora: LoraKeep = new Map();
    const keepLora = keep ? lora : undefined;
    const attention = selfAttentionForward(k, layer, h, ctx, keepLora, cat);
    const out = gpu.alloc(rows * c.hidden * 4, 'activations', `layer${layer.index}.out`);
    gpu.copy(x, 0, out, 0, rows * c.hidden * 4);
    k.linearForward(k.entry(layer, 'dense'), attention.o, out, rows, true, ctx, keepLora);
    const fc1 = k.project(k.entry(layer, 'fc1'), h, rows, ctx, cat, keepLora);
    const act = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.act');
    geluForward(gpu, k.shaders.activation, gelu(c), fc1, act, rows * c.ffn);
    k.linearForward(k.entry(layer, 'fc2'), act, out, rows, true, ctx, keepLora);
    gpu.release(act);
    const saved: ParallelSaved = { h, stats, attention, fc1, lora };
    if (keep) return { out, saved };
    this.release(k, saved);
    return { out, saved: null };
  },

  backward(k, layer, x, dOut, ctx, saved) {
    const gpu = k.gpu;
    const c = k.config;
    const { rows } = ctx;
    const dx = gpu.alloc(rows * c.hidden * 4, 'scratch', `layer${layer.index}.dx`);
    gpu.copy(dOut, 0, dx, 0, rows * c.hidden * 4);
    // MLP branch.
    const act = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.act');
    geluForward(gpu, k.shaders.activation, gelu(c), saved.fc1, act, rows * c.ffn);
    const dAct = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.dact');
    k.linearBackward(k.entry(layer, 'fc2'), act, dOut, dAct, rows, false, ctx, saved.lora);
    gpu.release(act);
    geluBackward(gpu, k.shaders.activation, gelu(c), saved.fc1, dAct, rows * c.ffn);
    const dh = gpu.alloc(rows * c.hidden * 4, 'scratch', 'ln.dout');
    k.linearBackward(k.entry(layer, 'fc1'), saved.h, dAct, dh, rows, false, ctx, saved.lora);
    gpu.release(dAct);
    // Attention branch.
    const dO = gpu.alloc(rows * c.heads * c.headDim * 4, 'scratch', 'attn.dout');
    k.linearBackward(k.entry(layer, 'dense'), saved.attention.o, dOut, dO, rows, false, ctx, saved.lora);
    selfAttentionBackward(k, layer, saved.h, dO, dh, ctx, saved.attention, saved.lora);
    gpu.release(dO);
    k.normBackward(k.norm(layer, 'input'), x, saved.stats, dh, dx, rows, true);
    gpu.release(dh);
    return dx;
  },

  release(k, s) {
    k.gpu.release(s.h, s.stats);
    releaseAttention(k, s.attention);
    k.gpu.release(s.fc1, ...s.lora.values());
  },

  decode(k, layer, x, n, pos, cache, ctx) {
    const gpu = k.gpu;
    const c = k.config;
    const { y: h, stats } = k.normForward(k.norm(layer, 'input'), x, n, 'scratch');
    const attention = selfAttentionDecode(k, layer, h, n, pos, cache, ctx);
    const out = gpu.alloc(n * c.hidden * 4, 'scratch', 'layer.out');
    gpu.copy(x, 0, out, 0, n * c.hidden * 4);
    k.linearForward(k.entry(layer, 'dense'), attention.o, out, n, true, ctx);
    const fc1 = k.project(k.entry(layer, 'fc1'), h, n, ctx, 'scratch');
    const act = gpu.alloc(n * c.ffn * 4, 'scratch', 'mlp.act');
    geluForward(gpu, k.shaders.activation, gelu(c), fc1, act, n * c.ffn);
    k.linearForward(k.entry(layer, 'fc2'), act, out, n, true, ctx);
    gpu.release(h, stats);
    releaseAttention(k, attention);
    gpu.release(fc1, act);
    return out;
  },
};
