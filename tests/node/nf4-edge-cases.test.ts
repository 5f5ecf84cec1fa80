import { describe, expect, it } from 'vitest';
import { checkNf4Folder, Checker, compareDequant } from '../../workers/nf4/check';
import { SafetensorsFile, writeSafetensors } from '../../workers/formats/safetensors';
import { dequantizeNF4, effectiveAbsmax, quantizeNF4, type Nf4Quantized } from '../../workers/nf4/reference';
import { NF4_CODE } from '../../workers/nf4/tables';
import { folderReader, nf4EdgeFolder, NO_FORWARD_STATE_DICT, SUBNORMAL_CASE } from '../nf4-edge-folder';

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The subnormal case's stored double-quantised state, as the GPU is given it. */
function subnormalState(): { q: Nf4Quantized; want: Uint8Array } {
  const file = new SafetensorsFile(nf4EdgeFolder().get(SUBNORMAL_CASE)!, SUBNORMAL_CASE);
  const input = file.f32('input');
  const dq = quantizeNF4(input, [3, 64], { doubleQuant: true, offset: file.f32('dq.offset')[0] });
  const q: Nf4Quantized = { shape: [3, 64], packed: file.raw('packed'), nested: dq.nested, quantMap: NF4_CODE };
  return { q, want: file.raw('dq.dequant') };
}

describe('nf4-check on what the format allows beyond the bitsandbytes fixtures', () => {
  it('the subnormal case really has a negative subnormal absmax and −0 outputs in its zero block', () => {
    const { q, want } = subnormalState();
    const a = effectiveAbsmax(q)[0];
    expect(a < 0 && a > -(2 ** -126)).toBe(true);
    const stored = new Float32Array(want.slice().buffer);
    expect(stored.slice(0, 64).every((v) => Object.is(v, -0))).toBe(true);
  });

  it('a GPU result with +0 for −0 in a block whose absmax is subnormal passes, and says so', () => {
    const { q, want } = subnormalState();
    const flushed = dequantizeNF4(q);
    flushed.fill(0, 0, 64); // what 0 × (subnormal flushed to +0) gives
    const c = new Checker();
    compareDequant(c, 'gpu dq.dequant', flushed, q, 'float32', want);
    expect(c.failures).toEqual([]);
    expect(c.notes).toEqual(['gpu dq.dequant: 64 element(s) in 1 block(s) whose absmax is subnormal (-1.6e-39) compared with +0 = −0']);
  });

  it('still fails any other difference, and a signed zero where the absmax is normal', () => {
    const { q, want } = subnormalState();
    const off = dequantizeNF4(q);
    off.fill(0, 0, 64);
    off[70] = -off[70] || 1;
    const c = new Checker();
    compareDequant(c, 'gpu dq.dequant', off, q, 'float32', want);
    expect(c.failures.join()).toMatch(/gpu dq.dequant: element 70 is/);

    // A plain (not double-quantised) state whose zero block has absmax 0: ±0 must match exactly.
    const input = new Float32Array(128).map((_, i) => (i < 64 ? 0 : Math.sin(i)));
    const plain = quantizeNF4(input, [2, 64], { doubleQuant: false });
    const ref = dequantizeNF4(plain);
    const negated = ref.slice();
    negated[3] = -0;
    const d = new Checker();
    compareDequant(d, 'gpu dequant', negated, plain, 'float32', bytesOf(ref));
    expect(d.failures.length).toBe(1);
  });

  it('a Linear4bit expected file without x and y checks the state dict and the dequantised weight alone', async () => {
    const files = nf4EdgeFolder();
    const summary = await checkNf4Folder(folderReader(files), null, null, () => {});
    // Results come in file-name order.
    expect(summary.results.map((r) => [r.name, r.ok, r.failures])).toEqual([
      [NO_FORWARD_STATE_DICT, true, []],
      [SUBNORMAL_CASE, true, []],
    ]);
    expect(summary.ok).toBe(true);
    const line = summary.results[0].notes.join('; ');
    expect(line).toContain('no "x", "y" in gen_linear4bit_noforward_state_dict.expected.safetensors: forward not checked (state dict and dequantised weight only)');
  });

  it('without x and y the dequantised weight is still compared: a wrong one fails', async () => {
    const files = nf4EdgeFolder();
    const expectedName = NO_FORWARD_STATE_DICT.replace(/\.safetensors$/, '.expected.safetensors');
    const expected = new SafetensorsFile(files.get(expectedName)!, expectedName);
    const tensors = expected.names.map((name) => ({ name, dtype: expected.info(name).dtype, shape: expected.info(name).shape, data: expected.raw(name) }));
    const wrong = tensors.map((t) => (t.name === 'dequant_weight' ? { ...t, data: t.data.map((b, i) => (i === 0 ? b ^ 1 : b)) } : t));
    files.set(expectedName, writeSafetensors(wrong));
    const summary = await checkNf4Folder(folderReader(files), null, null, () => {});
    expect(summary.failed).toEqual([NO_FORWARD_STATE_DICT]);
    expect(summary.results[0].failures.join()).toMatch(/cpu dequant_weight: first difference at index 0/);

    // x without y is a broken file, not a missing forward.
    files.set(expectedName, writeSafetensors([...tensors, { name: 'x', dtype: 'F32', shape: [1, 72], data: new Float32Array(72) }]));
    const half = await checkNf4Folder(folderReader(files), null, null, () => {});
    expect(half.results[0].failures).toEqual(['gen_linear4bit_noforward_state_dict.expected.safetensors: has "x" without "y"']);
  });
});
