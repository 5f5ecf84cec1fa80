/** CPU reference of a Linear4bit forward, y = x·dequant(W)ᵀ + bias, accumulated in float64. */
import { dequantizeNF4, type Nf4Quantized } from './reference';

export function linear4bitForwardCpu(x: Float32Array, q: Nf4Quantized, bias: Float32Array | null, M: number): Float32Array {
  const [N, K] = q.shape;
  if (x.length !== M * K) throw new RangeError(`linear4bitForwardCpu: x has ${x.length} elements, expected ${M}×${K}`);
  const w = dequantizeNF4(q);
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < N; j++) {
      let acc = bias ? bias[j] : 0;
      for (let k = 0; k < K; k++) acc += x[m * K + k] * w[j * K + k];
      y[m * N + j] = acc;
    }
  }
  return y;
}
