import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../workers/formats/safetensors';
import { parseModelConfig } from '../../workers/model/config';
import { AdapterError, parsePeftConfig } from '../../workers/model/lora-adapter';
import { checkAdapterAgainstModel } from '../../workers/model/adapter-check';

const DIR = 'tests/fixtures/hf-golden/tiny-phi';
const config = parseModelConfig(readFileSync(`${DIR}/config.json`, 'utf8'), 'config.json');
const configText = readFileSync(`${DIR}/adapter_config.json`, 'utf8');
const original = new SafetensorsFile(new Uint8Array(readFileSync(`${DIR}/adapter_model.safetensors`)), 'adapter_model.safetensors');
const model = { config, baseModel: 'tiny-phi' };
const A0 = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
const B1 = 'base_model.model.model.layers.1.mlp.fc2.lora_B.weight';

/** The fixture's tensors as f32, changed by `edit`, written back as an adapter file. */
function adapterWith(edit: (tensors: TensorToWrite[]) => TensorToWrite[]): SafetensorsFile {
  const tensors = original.names.map((name) => ({ name, dtype: 'F32' as const, shape: original.info(name).shape, data: original.f32(name).slice() }));
  return new SafetensorsFile(writeSafetensors(edit(tensors)), 'adapter_model.safetensors');
}
const poke = (name: string, index: number, value: number) => (ts: TensorToWrite[]) =>
  ts.map((t) => {
    if (t.name !== name) return t;
    const data = (t.data as Float32Array).slice();
    data[index] = value;
    return { ...t, data };
  });

function refusal(adapter: SafetensorsFile, settingsText = configText): string {
  const start = performance.now();
  try {
    checkAdapterAgainstModel(adapter, parsePeftConfig(settingsText), model);
  } catch (err) {
    expect(err).toBeInstanceOf(AdapterError);
    expect(performance.now() - start).toBeLessThan(1000);
    return (err as Error).message;
  }
  throw new Error('the adapter was accepted');
}

describe('an imported adapter checked against the loaded model', () => {
  it('the PEFT fixture fits its model, without warnings', () => {
    const check = checkAdapterAgainstModel(original, parsePeftConfig(configText), model);
    expect(check.warnings).toEqual([]);
    expect(check.modules.length).toBe(original.names.length / 2);
  });

  it.each([
    ['NaN', NaN, /holds NaN at index 5; every value must be finite/],
    ['+Inf', Infinity, /holds Infinity at index 5/],
    ['-Inf', -Infinity, /holds -Infinity at index 5/],
  ])('refuses %s naming the tensor', (_, value, message) => {
    const msg = refusal(adapterWith(poke(A0, 5, value)));
    expect(msg).toContain(`adapter_model.safetensors: tensor "${A0}"`);
    expect(msg).toMatch(message);
  });

  it('refuses a shape the model does not have', () => {
    const msg = refusal(adapterWith((ts) => ts.map((t) => (t.name === B1 ? { ...t, shape: [t.shape[1], t.shape[0]] } : t))));
    expect(msg).toMatch(new RegExp(`tensor "${B1.replace(/\./g, '\\.')}" has shape \\[4, 64\\], expected \\[64, 4\\]`));
    // r in adapter_config.json disagreeing with the tensors is the same refusal.
    expect(refusal(original, configText.replace('"r": 4', '"r": 8'))).toMatch(/has shape \[4, 64\], expected \[8, 64\] \(r = 8 from adapter_config\.json/);
  });

  it('refuses a key that maps to no module of the model', () => {
    const extra = 'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight';
    expect(refusal(adapterWith((ts) => [...ts, { name: extra, dtype: 'F32', shape: [4, 64], data: new Float32Array(256) }]))).toBe(
      `adapter_model.safetensors: tensor "${extra}" names "model.layers.7.self_attn.q_proj", which is no linear layer of this phi model`,
    );
    expect(refusal(adapterWith((ts) => [...ts, { name: 'constructor', dtype: 'F32', shape: [1], data: new Float32Array(1) }]))).toMatch(/tensor "constructor" is not a LoRA weight/);
    expect(refusal(adapterWith((ts) => [...ts, { name: 'base_model.model.model.embed_tokens.lora_embedding_A', dtype: 'F32', shape: [1], data: new Float32Array(1) }]))).toMatch(/is not a LoRA weight/);
  });

  it('refuses a tensor of a module target_modules does not select, and a missing one', () => {
    const withoutFc2 = configText.replace('"fc2",', '');
    expect(refusal(original, withoutFc2)).toMatch(/tensor ".*mlp\.fc2\.lora_A\.weight" adapts "model\.layers\.0\.mlp\.fc2", which adapter_config\.json's "target_modules" does not select/);
    expect(refusal(adapterWith((ts) => ts.filter((t) => t.name !== B1)))).toBe(`adapter_model.safetensors: tensor "${B1}" is missing (its module is selected by "target_modules")`);
    expect(refusal(original, configText.replace(/"target_modules": \[[^\]]*\]/, '"target_modules": ["nothing"]'))).toMatch(/adapter_config\.json: "target_modules" \["nothing"\] match no linear layer/);
  });

  it('refuses integer tensors', () => {
    const ints = adapterWith((ts) => ts.map((t) => (t.name === A0 ? { ...t, dtype: 'I32' as const, data: new Int32Array(t.data.byteLength / 4) } : t)));
    expect(refusal(ints)).toMatch(/has dtype I32; a LoRA weight is F32, F16, BF16 or F64/);
  });

  it('a different base model is a warning, not a refusal', () => {
    const other = configText.replace('"base_model_name_or_path": "tiny-phi"', '"base_model_name_or_path": "microsoft/phi-2"');
    const check = checkAdapterAgainstModel(original, parsePeftConfig(other), model);
    expect(check.warnings).toEqual(['adapter_config.json names the base model "microsoft/phi-2", but "tiny-phi" is loaded: the adapter was trained on another model and may not work on this one']);
    const pinned = configText.replace('"revision": null', `"revision": "${'a'.repeat(40)}"`);
    expect(checkAdapterAgainstModel(original, parsePeftConfig(pinned), { ...model, commit: 'b'.repeat(40) }).warnings).toEqual([`adapter_config.json names the base model's commit ${'a'.repeat(40)}, but ${'b'.repeat(40)} is loaded`]);
  });

  it('a target_modules pattern the matcher refuses is an adapter error naming the file', () => {
    const start = performance.now();
    const hostile = configText.replace(/"target_modules": \[[^\]]*\]/, '"target_modules": "(?=.*)(a+)+$"');
    expect(() => parsePeftConfig(hostile)).toThrow(AdapterError);
    expect(() => parsePeftConfig(hostile)).toThrow('adapter_config.json: "target_modules": lookaround assertions are not supported at position 0');
    // A catastrophic pattern the matcher accepts runs in linear time over every module.
    const slow = configText.replace(/"target_modules": \[[^\]]*\]/, '"target_modules": "(.*n+)+\\\\.q_proj"');
    expect(refusal(original, slow)).toMatch(/adapts ".*", which adapter_config\.json's "target_modules" does not select/);
    expect(performance.now() - start).toBeLessThan(1000);
  });
});
