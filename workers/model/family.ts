/**
 * A model family: everything the engine knows about one Hugging Face architecture, in one module
 * (workers/model/families/<name>.ts), registered in families/index.ts.
 */
import type { ArchitectureNames } from './architecture';
import type { Block } from './block';
import type { ModelConfig } from './config';
import type { Json } from './config-fields';

export interface ModelFamily {
  /** `ModelConfig.arch` of its configs. */
  name: string;
  /** config.json `model_type` values it reads. */
  modelTypes: readonly string[];
  /** The transformers class (config.json `architectures`), e.g. `PhiForCausalLM`. */
  hfClass: string;
  /** PEFT module names of every linear layer of a block: the default target modules. */
  linearModules: readonly string[];
  /** config.json → ModelConfig, refusing what the block does not implement (ConfigError naming the key). */
  parseConfig(cfg: Json, file: string): ModelConfig;
  /** Tensor names, layers, norms and linear layers (with their roles) of a config of this family. */
  names(c: ModelConfig): ArchitectureNames;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each block keeps its own saved state
  block: Block<any>;
  /** A small config for tests, sizes not multiples of the kernels' tiles. */
  tinyConfig: ModelConfig;
}
