/**
 * The pre-norm sequential decoder block of Llama, Qwen2 and Phi-3, with a SiLU-gated MLP:
 *   h = x + o(attention(norm_input(x)));  out = h + down(silu(gate(n)) · up(n)),  n = norm_post(h)
 * Roles: q/k/v or qkv (self-attention.ts), `o`, `gate` and `up` or one fused `gate_up` (rows:
 * all gate features, then all up features), `down`; norms `input` and `post`.
 */
import type { GpuBuffer, MemoryCategory } from '../../gpu/pool';
import { fusedGateUp, swigluBackward, swigluForward, type RowSlice } from '../../kernels/swiglu';
import type { Block } from '../block';
import type { LayerKit, LayerWeights, LoraKeep, NormOutput, RunContext } from '../layer-kit';
import { releaseAttention, selfAttentionBackward, selfAttentionDecode, selfAttentionForward, type AttentionSaved } from './self-attention';

interface SequentialSaved {
  a: NormOutput;
  attention: AttentionSaved;
  /** The residual stream after attention (the post-attention norm's input). */
  h: GpuBuffer;
  n: NormOutput;
  /** gate and up projections: two buffers, or one fused [rows, 2·ffn]. */
  gateUp: GpuBuffer[];
  lora: LoraKeep;
}

function isFused(layer: LayerWeights): boolean {
  return layer.linears.has('gate_up');
}

/** gate and up of the normed input `n`, as buffers and as the slices the SwiGLU kernel reads. */
function projectGateUp(k: LayerKit, layer: LayerWeights, n: GpuBuffer, rows: number, ctx: RunContext, category: MemoryCategory, keep?: LoraKeep): { bufs: GpuBuffer[]; gate: RowSlice; up: RowSlice } {
  if (isFused(layer)) {
    const gu = k.project(k.entry(layer, 'gate_up'), n, rows, ctx, category, keep);
    return { bufs: [gu], ...fusedGateUp(gu, k.config.ffn) };
  }
  const gate = k.project(k.entry(layer, 'gate'), n, rows, ctx, category, keep);
  const up = k.project(k.entry(layer, 'up'), n, rows, ctx, category, keep);
  return { bufs: [gate, up], gate: { buf: gate }, up: { buf: up } };
}

function slices(layer: LayerWeights, bufs: GpuBuffer[], ffn: number): { gate: RowSlice; up: RowSlice } {
  return isFused(layer) ? fusedGateUp(bufs[0], ffn) : { gate: { buf: bufs[0] }, up: { buf: bufs[1] } };
}

/** h = x + o(attention); n = post-norm(h); out = h + down(silu(gate) · up). Returns what backward needs. */
function run(k: LayerKit, layer: LayerWeights, x: GpuBuffer, rows: number, ctx: RunContext, category: MemoryCategory, keep: LoraKeep | undefined, attention: (a: GpuBuffer) => AttentionSaved, outCategory: MemoryCategory) {
  const gpu = k.gpu;
  const c = k.config;
  const a = k.normForward(k.norm(layer, 'input'), x, rows, category);
  const attn = attention(a.y);
  const h = gpu.alloc(rows * c.hidden * 4, category, 'attn.residual');
  gpu.copy(x, 0, h, 0, rows * c.hidden * 4);
  k.linearForward(k.entry(layer, 'o'), attn.o, h, rows, true, ctx, keep);
  const n = k.normForward(k.norm(layer, 'post'), h, rows, category, 'post_ln');
  const gu = projectGateUp(k, layer, n.y, rows, ctx, category, keep);
  const act = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.act');
  swigluForward(gpu, k.shaders.swiglu, { rows, ffn: c.ffn, gate: gu.gate, up: gu.up, act: { buf: act } });
  const out = gpu.alloc(rows * c.hidden * 4, outCategory, `layer${layer.index}.out`);
  gpu.copy(h, 0, out, 0, rows * c.hidden * 4);
  k.linearForward(k.entry(layer, 'down'), act, out, rows, true, ctx, keep);
  gpu.release(act);
  return { out, saved: { a, attention: attn, h, n, gateUp: gu.bufs, lora: keep ?? new Map() } satisfies SequentialSaved };
}

export const sequentialBlock: Block<SequentialSaved> = {
  forward(k, layer, x, ctx, keep) {
    const cat = keep ? 'activations' : 'scratch';
    const lora: LoraKeep | undefined = keep ? new Map() : undefined;
    const r = run(k, layer, x, ctx.rows, ctx, cat, lora, (a) => selfAttentionForward(k, layer, a, ctx, lora, cat), 'activations');
    if (keep) return r;
    this.release(k, r.saved);
    return { out: r.out, saved: null };
  },

  backward(k, layer, x, dOut, ctx, s) {
    const gpu = k.gpu;
    const c = k.config;
    const { rows } = ctx;
    // d(h) starts as d(out) (the residual) and gains the MLP branch through the post norm.
    const dh = gpu.alloc(rows * c.hidden * 4, 'scratch', `layer${layer.index}.dx`);
    gpu.copy(dOut, 0, dh, 0, rows * c.hidden * 4);
    const { gate, up } = slices(layer, s.gateUp, c.ffn);
    const act = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.act');
    swigluForward(gpu, k.shaders.swiglu, { rows, ffn: c.ffn, gate, up, act: { buf: act } });
    const dAct = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.dact');
    k.linearBackward(k.entry(layer, 'down'), act, dOut, dAct, rows, false, ctx, s.lora);
    gpu.release(act);
    const dn = gpu.alloc(rows * c.hidden * 4, 'scratch', 'post_ln.dout');
    if (isFused(layer)) {
      const dgu = gpu.alloc(rows * 2 * c.ffn * 4, 'scratch', 'mlp.dgate_up');
      const d = fusedGateUp(dgu, c.ffn);
      swigluBackward(gpu, k.shaders.swiglu, { rows, ffn: c.ffn, gate, up, dAct: { buf: dAct }, dGate: d.gate, dUp: d.up });
      gpu.release(dAct);
      k.linearBackward(k.entry(layer, 'gate_up'), s.n.y, dgu, dn, rows, false, ctx, s.lora);
      gpu.release(dgu);
    } else {
      const dGate = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.dgate');
      const dUp = gpu.alloc(rows * c.ffn * 4, 'scratch', 'mlp.dup');
      swigluBackward(gpu, k.shaders.swiglu, { rows, ffn: c.ffn, gate, up, dAct: { buf: dAct }, dGate: { buf: dGate }, dUp: { buf: dUp } });
      gpu.release(dAct);
      k.linearBackward(k.entry(layer, 'gate'), s.n.y, dGate, dn, rows, false, ctx, s.lora);
      k.linearBackward(k.entry(layer, 'up'), s.n.y, dUp, dn, rows, true, ctx, s.lora);
      gpu.release(dGate, dUp);
    }
    k.normBackward(k.norm(layer, 'post'), s.h, s.n.stats, dn, dh, rows, true);
    gpu.release(dn);
    // Attention branch: d(h) flows into x directly and through o, attention and the input norm.
    const dO = gpu.alloc(rows * c.heads * c.headDim * 4, 'scratch', 'attn.dout');
    k.linearBackward(k.entry(layer, 'o'), s.attention.o, dh, dO, rows, false, ctx, s.lora);
    const da = gpu.alloc(rows * c.hidden * 4, 'scratch', 'ln.dout');
    // The q/k/v backward adds into its output.
    gpu.fill(da, 0);
    selfAttentionBackward(k, layer, s.a.y, dO, da, ctx, s.attention, s.lora);
    gpu.release(dO);
    k.normBackward(k.norm(layer, 'input'), x, s.a.stats, da, dh, rows, true);
    gpu.release(da);
    return dh;
  },

  release(k, s) {
    k.gpu.release(s.a.y, s.a.stats);
    releaseAttention(k, s.attention);
    k.gpu.release(s.h, s.n.y, s.n.stats, ...s.gateUp, ...s.lora.values());
  },

  decode(k, layer, x, n, pos, cache, ctx) {
    const r = run(k, layer, x, n, ctx, 'scratch', undefined, (a) => selfAttentionDecode(k, layer, a, n, pos, cache, ctx), 'scratch');
    this.release(k, r.saved);
    return r.out;
  },
};
