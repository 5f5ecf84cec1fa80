/** Small builders the family modules share to describe their layers. */
import type { ModelConfig } from '../config';
import type { LinearRole, LinearSpec, NormKind, NormSpec } from '../architecture';

/** A block's linear layer of the given role and sizes, named after the last part of its path. */
export function linearSpec(c: ModelConfig, role: LinearRole, path: string, inFeatures: number, outFeatures: number, bias = c.linearBias): LinearSpec {
  return { role, path, name: path.slice(path.lastIndexOf('.') + 1), inFeatures, outFeatures, bias };
}

export function normSpec(role: string, path: string, kind: NormKind): NormSpec {
  return { role, path, kind, bias: kind === 'layernorm' };
}
