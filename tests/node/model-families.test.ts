/**
 * The model families as modules: each published config of the new families parses, names the
 * tensors the checkpoint holds (parameter counts equal the published model sizes), and anything
 * else is refused with the supported list.
 */
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../workers/model/config';
import { FAMILIES, familyOf } from '../../workers/model/families';
import { archFromConfig } from '../../workers/load/arch';
import { allLinearNames, architectureNames } from '../../workers/model/architecture';
import qwen05 from '../../workers/load/configs/Qwen2.5-0.5B-Instruct.json';
import qwen15 from '../../workers/load/configs/Qwen2.5-1.5B-Instruct.json';
import smol from '../../workers/load/configs/SmolLM2-360M-Instruct.json';
import tinyllama from '../../workers/load/configs/TinyLlama-1.1B-Chat-v1.0.json';
import llama32 from '../../workers/load/configs/Llama-3.2-1B-Instruct.json';
import phi3 from '../../workers/load/configs/Phi-3-mini-4k-instruct.json';

// Parameter counts as the hub's model cards and safetensors metadata give them.
const PUBLISHED: [string, Record<string, unknown>, string, number][] = [
  ['Qwen2.5-0.5B-Instruct', qwen05, 'qwen2', 494_032_768],
  ['Qwen2.5-1.5B-Instruct', qwen15, 'qwen2', 1_543_714_304],
  ['SmolLM2-360M-Instruct', smol, 'llama', 361_821_120],
  ['TinyLlama-1.1B-Chat-v1.0', tinyllama, 'llama', 1_100_048_384],
  ['Llama-3.2-1B-Instruct', llama32, 'llama', 1_235_814_400],
  ['Phi-3-mini-4k-instruct', phi3, 'phi3', 3_821_079_552],
];

describe('model families', () => {
  for (const [name, config, arch, parameters] of PUBLISHED) {
    it(`${name}: a ${arch} config with the published parameter count`, () => {
      const c = parseModelConfig(config, `${name}/config.json`);
      expect(c.arch).toBe(arch);
      expect(archFromConfig(config).parameters).toBe(parameters);
      // Every linear module is a default LoRA target, by its PEFT name.
      const names = new Set(architectureNames(c).layers[0].linears.map((l) => l.name));
      expect(new Set(allLinearNames(c))).toEqual(names);
    });
  }

  it('Llama 3.2: llama3 rope scaling, tied head, every eos id of the list read', () => {
    const c = parseModelConfig(llama32);
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(c.tiedLmHead).toBe(true);
    expect(c.headDim).toBe(64);
  });

  it('Qwen2: biases on q, k and v only; Phi-3: fused qkv_proj and gate_up_proj', () => {
    const q = architectureNames(parseModelConfig(qwen05)).layers[0].linears;
    expect(q.filter((l) => l.bias).map((l) => l.name)).toEqual(['q_proj', 'k_proj', 'v_proj']);
    const p = architectureNames(parseModelConfig(phi3)).layers[0].linears;
    expect(p.map((l) => [l.name, l.outFeatures, l.inFeatures])).toEqual([
      ['qkv_proj', 3 * 3072, 3072],
      ['o_proj', 3072, 3072],
      ['gate_up_proj', 2 * 8192, 3072],
      ['down_proj', 3072, 8192],
    ]);
  });

  it('refuses an architecture it does not run, naming it and the supported types', () => {
    expect(() => parseModelConfig({ model_type: 'gpt2' }, 'gpt2/config.json')).toThrow(/gpt2\/config.json: "model_type" = "gpt2" is not supported \(supported: "phi", "falcon", .*"llama", "qwen2", "phi3"\)/);
    expect(() => parseModelConfig({ ...phi3, rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [1] } })).toThrow(/rope_scaling.type" = "longrope" is not supported/);
    expect(() => parseModelConfig({ ...qwen05, use_sliding_window: true })).toThrow(/use_sliding_window/);
    expect(() => parseModelConfig({ ...smol, hidden_act: 'gelu' })).toThrow(/hidden_act/);
  });

  it('every registered family has a tiny test config of its own kind', () => {
    for (const f of FAMILIES) {
      expect(familyOf(f.tinyConfig)).toBe(f);
      expect(architectureNames(f.tinyConfig).layers).toHaveLength(f.tinyConfig.layers);
    }
  });
});
