/**
 * The export formats' file lists: sizes known before writing, equal to the bytes the chunks
 * give; the PEFT folder names its base and commit and carries the card; the GGUF folder's
 * adapter, Modelfile and card agree with each other; checkpoint tensors give the same files as
 * the PEFT file they came from.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { SafetensorsFile } from '../../workers/formats/safetensors';
import { ggufExport, peftExport, type ExportFile, type ExportInput } from '../../workers/export/bundle';
import { baseModelName } from '../../workers/export/model-card';
import { peftAdapterConfig, peftAdapterModel, targetModuleNames, tensorsInMemory, type LoraTensorData } from '../../workers/export/peft';
import { parsePeftConfig } from '../../workers/model/lora-adapter';
import { GgufLoraError } from '../../workers/export/gguf-lora';

const DIR = 'tests/fixtures/hf-golden/tiny-falcon';

async function collect(f: ExportFile): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of f.chunks()) parts.push(c);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

function fixtureInput(): ExportInput {
  const modelBytes = new Uint8Array(readFileSync(`${DIR}/adapter_model.safetensors`));
  const baseConfig = JSON.parse(readFileSync(`${DIR}/config.json`, 'utf8')) as Record<string, unknown>;
  return {
    adapterConfig: readFileSync(`${DIR}/adapter_config.json`, 'utf8'),
    tensors: new SafetensorsFile(modelBytes),
    adapterModel: modelBytes,
    baseConfig,
    base: baseModelName({ kind: 'folder', folderName: '/home/me/models/tiny-falcon', config: { ...baseConfig, _name_or_path: 'tiiuae/falcon-7b' } }),
    revision: 'abc123',
    card: { results: { finalTrainLoss: 1.5, finalEvalLoss: 1.75, steps: 10 }, data: { name: 'd.jsonl', fingerprint: 'crc32:00ff00ff' } },
  };
}

describe('export bundles', () => {
  it('peft: the adapter as it was, naming its base and commit, with the card', async () => {
    const input = fixtureInput();
    const files = peftExport(input);
    expect(files.map((f) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'README.md']);
    for (const f of files) expect((await collect(f)).length).toBe(f.bytes);
    const config = JSON.parse(new TextDecoder().decode(await collect(files[0]))) as Record<string, unknown>;
    expect(config).toMatchObject({ base_model_name_or_path: 'tiiuae/falcon-7b', revision: 'abc123', r: 4, lora_alpha: 8 });
    // The studio's own reader still takes it.
    expect(parsePeftConfig(JSON.stringify(config))).toMatchObject({ r: 4, alpha: 8, baseModel: 'tiiuae/falcon-7b' });
    expect(await collect(files[1])).toEqual(input.adapterModel);
    const card = new TextDecoder().decode(await collect(files[2]));
    expect(card).toMatch(/^---\nbase_model: "tiiuae\/falcon-7b"\n/);
    expect(card).toContain('library_name: peft');
    expect(card).toContain('final validation loss: 1.75');
    expect(card).toContain('local folder whose config names `tiiuae/falcon-7b`');
  });

  it('gguf: adapter size known before writing, Modelfile pointing at it, card listing both', async () => {
    const files = ggufExport(fixtureInput(), { prompt: { format: { kind: 'preset', preset: 'counseling' }, eosToken: '<|endoftext|>' } });
    expect(files.map((f) => f.name)).toEqual(['adapter.gguf', 'Modelfile', 'README.md']);
    for (const f of files) expect((await collect(f)).length).toBe(f.bytes);
    const gguf = await collect(files[0]);
    expect(new TextDecoder().decode(gguf.subarray(0, 4))).toBe('GGUF');
    const mf = new TextDecoder().decode(await collect(files[1]));
    expect(mf).toContain('ADAPTER ./adapter.gguf');
    expect(mf).toContain('huggingface-cli download tiiuae/falcon-7b --revision abc123');
    expect(new TextDecoder().decode(await collect(files[2]))).toContain('`adapter.gguf`, `Modelfile`');
  });

  it('gguf: refuses before writing what llama.cpp cannot take', () => {
    const input = fixtureInput();
    const config = JSON.parse(input.adapterConfig) as Record<string, unknown>;
    expect(() => ggufExport({ ...input, adapterConfig: JSON.stringify({ ...config, use_rslora: true }) }, { prompt: { format: { kind: 'text' }, eosToken: '</s>' } })).toThrow(GgufLoraError);
  });

  it('checkpoint tensors give the same adapter files as the PEFT file they came from', async () => {
    const input = fixtureInput();
    const file = input.tensors as SafetensorsFile;
    const data: LoraTensorData[] = file.names.map((k) => ({ key: k, shape: file.info(k).shape as [number, number], data: file.f32(k) }));
    const targets = targetModuleNames(data.map((t) => t.key));
    expect(targets).toEqual(['dense', 'dense_4h_to_h', 'dense_h_to_4h', 'query_key_value']);
    const fromTensors: ExportInput = {
      ...input,
      adapterModel: undefined,
      tensorData: data,
      tensors: tensorsInMemory(data),
      adapterConfig: peftAdapterConfig({ r: 4, alpha: 8, dropout: 0, targetModules: targets }, targets, 'tiny-falcon', null),
    };
    // The fixture was written by PEFT itself; our writer gives the same tensors under the same names.
    const ours = new SafetensorsFile(peftAdapterModel(data));
    for (const k of file.names) expect(Array.from(ours.f32(k))).toEqual(Array.from(file.f32(k)));
    expect(JSON.parse(peftAdapterConfig({ r: 4, alpha: 8, dropout: 0, targetModules: targets }, targets, 'tiny-falcon', null))).toEqual(JSON.parse(readFileSync(`${DIR}/adapter_config.json`, 'utf8')));
    const a = ggufExport(input, { prompt: { format: { kind: 'text' }, eosToken: '</s>' } });
    const b = ggufExport(fromTensors, { prompt: { format: { kind: 'text' }, eosToken: '</s>' } });
    expect(await collect(b[0])).toEqual(await collect(a[0]));
  });
});
