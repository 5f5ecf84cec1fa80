/**
 * run.json's `quantization` (docs/RUN-BUNDLE.md) from the base storage a run recorded
 * (`RunRecord.quant`, `RunModel.quant`), and back for a bundle imported into the studio.
 */
import { checkQuant, type QuantSettings } from '../../load/presets';
import type { RunQuantization } from './run-json';

export function runQuantization(quant: QuantSettings): RunQuantization {
  if (quant.type === 'none') return { type: 'none' };
  return { type: 'nf4', blocksize: quant.blocksize, double_quant: quant.doubleQuant, nested_blocksize: quant.nestedBlocksize, compute_dtype: 'float32' };
}

/** The studio's settings for a bundle's `quantization`; anything else is refused naming the field. */
export function quantFromRunJson(q: RunQuantization, file = 'run.json'): QuantSettings {
  if (q?.type === 'none') return checkQuant(q, `${file} quantization`);
  if (q?.type === 'nf4' && q.compute_dtype !== 'float32') throw new Error(`${file} quantization.compute_dtype: the studio computes in float32, got ${JSON.stringify(q.compute_dtype)}`);
  const nf4 = q?.type === 'nf4' ? { type: q.type, blocksize: q.blocksize, doubleQuant: q.double_quant, nestedBlocksize: q.nested_blocksize } : q;
  return checkQuant(nf4, `${file} quantization`);
}
