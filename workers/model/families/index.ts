/**
 * The registry of model families. Adding a family: write its module beside this file (config
 * parsing, tensor names, target modules, block) and list it here.
 */
import type { ModelConfig } from '../config';
import type { ModelFamily } from '../family';
import { falcon } from './falcon';
import { llama } from './llama';
import { phi } from './phi';
import { phi3 } from './phi3';
import { qwen2 } from './qwen2';

export const FAMILIES: readonly ModelFamily[] = [phi, falcon, llama, qwen2, phi3];

export function familyForModelType(modelType: string): ModelFamily | null {
  return FAMILIES.find((f) => f.modelTypes.includes(modelType)) ?? null;
}

export function supportedModelTypes(): string[] {
  return FAMILIES.flatMap((f) => f.modelTypes);
}

/** The family of a parsed config. */
export function familyOf(c: Pick<ModelConfig, 'arch'>): ModelFamily {
  const f = FAMILIES.find((x) => x.name === c.arch);
  if (!f) throw new Error(`no model family "${c.arch}" (registered: ${FAMILIES.map((x) => x.name).join(', ')})`);
  return f;
}
