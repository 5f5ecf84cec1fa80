import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../workers/kernels/shader-sources';
import { checkNf4Folder, type CheckResult } from '../../workers/nf4/check';
import { testGpu } from './helpers';
import { folderReader, nf4EdgeFolder, NO_FORWARD_STATE_DICT } from '../nf4-edge-folder';

const DIR = '/tests/fixtures/bnb-nf4';

async function fetchBytes(name: string): Promise<Uint8Array> {
  const res = await fetch(`${DIR}/${name}`);
  if (!res.ok) throw new Error(`${name}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

// The manifest lists every file of the folder (with its sha256): the browser cannot list folders.
const reader = {
  list: async () => Object.keys((JSON.parse(new TextDecoder().decode(await fetchBytes('manifest.json'))) as { files: Record<string, string> }).files),
  read: fetchBytes,
};

describe('nf4-check on tests/fixtures/bnb-nf4', () => {
  it('passes every case and state dict on the CPU reference and the GPU kernels', async () => {
    const gpu = await testGpu();
    const seen: CheckResult[] = [];
    const summary = await checkNf4Folder(reader, gpu, SHADERS, (r) => seen.push(r));
    const failures = summary.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.failures.join('; ')}`);
    expect(failures).toEqual([]);
    expect(summary.ok).toBe(true);
    expect(summary.cases).toBe(18);
    expect(seen.map((r) => r.name)).toContain('linear4bit_bf16_state_dict.safetensors');
  });

  it('fails a case whose packed bytes were altered', async () => {
    const gpu = await testGpu();
    const corrupt = {
      list: async () => ['randn_64x64.safetensors', 'odd_33x17.safetensors'],
      read: async (name: string) => {
        const bytes = await fetchBytes(name);
        if (name === 'randn_64x64.safetensors') bytes[bytes.length - 1] ^= 0x10; // `packed` is the last tensor
        return bytes;
      },
    };
    const summary = await checkNf4Folder(corrupt, gpu, SHADERS, () => {});
    expect(summary.ok).toBe(false);
    expect(summary.failed).toEqual(['randn_64x64.safetensors']);
  });

  it('passes a subnormal absmax\' zero block and a state dict without forward, on the GPU too', async () => {
    const gpu = await testGpu();
    const summary = await checkNf4Folder(folderReader(nf4EdgeFolder()), gpu, SHADERS, () => {});
    const failures = summary.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.failures.join('; ')}`);
    expect(failures).toEqual([]);
    expect(summary.cases).toBe(2);
    expect(summary.results.find((r) => r.name === NO_FORWARD_STATE_DICT)!.notes.join('; ')).toMatch(/forward not checked/);
  });
});
