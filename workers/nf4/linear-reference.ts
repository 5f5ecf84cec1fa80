/**
 * The Linear4bit forward in the (x, state, bias, M) form workers/nf4/check.ts calls: the NF4
 * linear's one CPU reference, nf4LinearCpu (workers/kernels/nf4-matmul.ts), nothing more.
 */
import { nf4LinearCpu } from '../kernels/nf4-matmul';
import type { Nf4Quantized } from './reference';

export function linear4bitForwardCpu(x: Float32Array, q: Nf4Quantized, bias: Float32Array | null, M: number): Float32Array {
  return nf4LinearCpu(q).forward(x, M, bias ?? undefined);
}
