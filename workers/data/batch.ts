/** Examples into one padded batch (right padding), as the model's forward/backward takes it. */
import type { Batch } from '../model/types';
import type { Example } from './types';

/**
 * `seq` defaults to the longest example. Padding positions get `padId`, attention 0 and
 * label -100; longer examples are cut to `seq`.
 */
export function makeBatch(examples: readonly Example[], padId: number, seq?: number): Batch {
  if (examples.length === 0) throw new Error('makeBatch: no examples');
  const width = seq ?? Math.max(...examples.map((e) => e.inputIds.length));
  const batch = examples.length;
  const inputIds = new Int32Array(batch * width).fill(padId);
  const attentionMask = new Int32Array(batch * width);
  const labels = new Int32Array(batch * width).fill(-100);
  examples.forEach((e, b) => {
    const n = Math.min(e.inputIds.length, width);
    inputIds.set(e.inputIds.subarray(0, n), b * width);
    labels.set(e.labels.subarray(0, n), b * width);
    attentionMask.fill(1, b * width, b * width + n);
  });
  return { inputIds, attentionMask, labels, batch, seq: width };
}
