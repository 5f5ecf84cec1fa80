/**
 * Builds the studio's CausalLM from an hf-train folder's files: the base weights as they are
 * (f32, no quantization: the fixtures' reference is float32) and the initial PEFT adapter.
 */
import { CausalLM } from '../model/causal-lm';
import { parseModelConfig } from '../model/config';
import { parsePeftConfig } from '../model/lora-adapter';
import type { ModelShaders } from '../kernels/shaders';
import { SafetensorsSource } from '../model/weights';
import type { TrainCheckModelFactory } from './train-check';

export function causalLmFactory(shaders: ModelShaders, maxSeq = 0): TrainCheckModelFactory {
  return async (gpu, files) => {
    const config = parseModelConfig(files.config, 'config.json');
    const settings = parsePeftConfig(files.adapterConfig, 'adapter_config.json');
    return CausalLM.load(gpu, shaders, config, new SafetensorsSource([files.weights]), {
      mode: 'exact',
      lora: { settings, init: { adapter: files.adapter } },
      maxPositions: Math.max(config.maxPositions, maxSeq),
    });
  };
}
