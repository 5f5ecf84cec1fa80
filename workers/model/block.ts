/**
 * The contract between the causal LM and a family's decoder block: forward (keeping what
 * backward needs when asked), backward into the LoRA gradients, and one KV-cache decoding step.
 * The causal LM runs the layers, the head, the loss, checkpointing and the caches; the block
 * knows what happens inside one layer.
 */
import type { GpuBuffer } from '../gpu/pool';
import type { KvCache, LayerKit, LayerWeights, RunContext } from './layer-kit';

export interface Block<Saved> {
  /**
   * One layer over `ctx.rows` tokens: returns its output (a new `activations` buffer) and, when
   * `keep`, what its backward needs (otherwise null, and nothing of the layer stays allocated).
   */
  forward(k: LayerKit, layer: LayerWeights, x: GpuBuffer, ctx: RunContext, keep: boolean): { out: GpuBuffer; saved: Saved | null };
  /** Given d(layer output), adds into the LoRA gradients and returns d(layer input) in a new buffer. */
  backward(k: LayerKit, layer: LayerWeights, x: GpuBuffer, dOut: GpuBuffer, ctx: RunContext, saved: Saved): GpuBuffer;
  /** Frees what forward kept. */
  release(k: LayerKit, saved: Saved): void;
  /** `n` new tokens at positions pos.., reading and extending the layer's KV cache; returns the layer output. */
  decode(k: LayerKit, layer: LayerWeights, x: GpuBuffer, n: number, pos: number, cache: KvCache, ctx: RunContext): GpuBuffer;
}
