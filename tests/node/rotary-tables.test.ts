import { describe, expect, it } from 'vitest';
import ref from '../fixtures/rope/transformers-4.44.json';
import { rotaryInvFreq, rotaryTables, type RopeScaling } from '../../workers/kernels/rotary';
import { ropeScalingFromConfig } from '../../workers/model/rope-scaling';

/*
 * tests/fixtures/rope/transformers-4.44.json holds inv_freq (as float32 bit patterns) and the cos/sin
 * tables at a few positions, computed by transformers 4.44.0's own LlamaRotaryEmbedding
 * (modeling_rope_utils: _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
 * _compute_llama3_parameters) in float32 on the CPU with torch 1.13.1; make_rope_tables.py beside it
 * made them. inv_freq must match bit for bit; cos/sin within torch's float32 sin/cos rounding.
 */

const f32Bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

interface RefCase {
  headDim: number;
  ropeTheta: number;
  ropeScaling: Record<string, unknown> | null;
  invFreqBits: number[];
  cos: number[][];
  sin: number[][];
}

const cases = Object.entries(ref.cases as Record<string, RefCase>);

describe('rotary tables against transformers 4.44', () => {
  for (const [name, c] of cases) {
    it(`${name}: inv_freq bit-exact, cos/sin at positions ${ref.positions.join(', ')}`, () => {
      const scaling = ropeScalingFromConfig(c.ropeScaling);
      expect(f32Bits(rotaryInvFreq(c.headDim, c.ropeTheta, scaling))).toEqual(c.invFreqBits);
      const positions = Math.max(...ref.positions) + 1;
      const t = rotaryTables(c.headDim, c.ropeTheta, positions, scaling);
      const half = c.headDim / 2;
      let err = 0;
      ref.positions.forEach((p, k) => {
        for (let i = 0; i < half; i++) {
          err = Math.max(err, Math.abs(t.cos[p * half + i] - c.cos[k][i]), Math.abs(t.sin[p * half + i] - c.sin[k][i]));
        }
      });
      expect(err).toBeLessThan(2.5e-7);
    });
  }

  it("tiny-llama3's inv_freq as its golden fixture's README prints it", () => {
    // ../shared/fixtures/hf-golden/tiny-llama3/README.md, "Rotary": float32 values to 9 digits.
    const readme = [1, 0.193922758, 0.0376060307, 0.00729266508, 0.000429556705, 8.57025589e-6, 1.66196742e-6, 3.22293289e-7];
    const got = rotaryInvFreq(16, 500000, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    got.forEach((v, i) => expect(Math.abs(v - readme[i]) / readme[i]).toBeLessThan(5e-9));
  });
});

describe('rotary scaling semantics (float64, written out independently)', () => {
  const plain = (d: number, theta: number) => Array.from({ length: d / 2 }, (_, i) => 1 / theta ** ((2 * i) / d));

  it('llama3: high frequencies kept, low ones divided by factor, a linear blend in wavelength between', () => {
    const s: RopeScaling = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    const f = plain(64, 500000);
    const want = f.map((freq) => {
      const wavelen = (2 * Math.PI) / freq;
      if (wavelen < 8192 / 4) return freq;
      if (wavelen > 8192 / 1) return freq / 32;
      const smooth = (8192 / wavelen - 1) / (4 - 1);
      return (1 - smooth) * (freq / 32) + smooth * freq;
    });
    const got = rotaryInvFreq(64, 500000, s);
    want.forEach((w, i) => expect(Math.abs(got[i] - w) / w).toBeLessThan(1e-6));
    // Llama-3.2-1B (head_dim 64) has all three regimes: wavelength 2π·θ^(i/32) < 2048 for i ≤ 14, > 8192 for i ≥ 18.
    const kept = f.filter((freq) => (2 * Math.PI) / freq < 2048).length;
    const divided = f.filter((freq) => (2 * Math.PI) / freq > 8192).length;
    expect([kept, divided, 32 - kept - divided]).toEqual([15, 14, 3]);
  });

  it('linear: the table at position p is the plain table at position p / factor', () => {
    const factor = 2.5;
    const scaled = rotaryTables(24, 10000, 50, { type: 'linear', factor });
    const f = plain(24, 10000);
    for (const p of [1, 7, 49])
      f.forEach((freq, i) => {
        expect(Math.abs(scaled.cos[p * 12 + i] - Math.cos((p / factor) * freq))).toBeLessThan(1e-6);
        expect(Math.abs(scaled.sin[p * 12 + i] - Math.sin((p / factor) * freq))).toBeLessThan(1e-6);
      });
  });

  it('no scaling (omitted or null) is the plain table', () => {
    const a = rotaryTables(16, 10000, 9);
    const b = rotaryTables(16, 10000, 9, null);
    expect(b.cos).toEqual(a.cos);
    expect(b.sin).toEqual(a.sin);
    expect(Math.abs(a.sin[3 * 8 + 1] - Math.sin(3 / 10000 ** (2 / 16)))).toBeLessThan(1e-7);
  });

  it('refuses what it cannot build, naming the field', () => {
    expect(() => rotaryInvFreq(15, 10000)).toThrow(/rotDim = 15/);
    expect(() => rotaryInvFreq(16, 0)).toThrow(/rope_theta = 0/);
    expect(() => rotaryInvFreq(16, 1e4, { type: 'linear', factor: 0 })).toThrow(/factor = 0/);
    expect(() => rotaryInvFreq(16, 1e4, { type: 'llama3', factor: 8, lowFreqFactor: 4, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 })).toThrow(/high_freq_factor 4 is not above/);
    expect(() => rotaryInvFreq(16, 1e4, { type: 'yarn', factor: 4 } as unknown as RopeScaling)).toThrow(/"yarn" is not one of linear, llama3/);
  });
});

describe('rope_scaling from config.json', () => {
  it('reads null, default, linear (rope_type or the older type) and llama3', () => {
    expect(ropeScalingFromConfig(null)).toBeNull();
    expect(ropeScalingFromConfig(undefined)).toBeNull();
    expect(ropeScalingFromConfig({ rope_type: 'default' })).toBeNull();
    expect(ropeScalingFromConfig({ type: 'linear', factor: 4 })).toEqual({ type: 'linear', factor: 4 });
    expect(ropeScalingFromConfig({ rope_type: 'linear', factor: 2.5 })).toEqual({ type: 'linear', factor: 2.5 });
    expect(ropeScalingFromConfig(ref.cases['llama-3.2-1b'].ropeScaling)).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
  });

  it('refuses other types and bad fields, naming them', () => {
    expect(() => ropeScalingFromConfig({ type: 'dynamic', factor: 2 })).toThrow(/config.json: "rope_scaling.type" = "dynamic" is not supported \(supported: linear, llama3/);
    expect(() => ropeScalingFromConfig({ rope_type: 'longrope', short_factor: [1] }, 'm/config.json')).toThrow(/m\/config.json: "rope_scaling.rope_type" = "longrope"/);
    expect(() => ropeScalingFromConfig({ rope_type: 'linear' })).toThrow(/"rope_scaling.factor" is missing/);
    expect(() => ropeScalingFromConfig({ rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 })).toThrow(/"rope_scaling.original_max_position_embeddings" is missing/);
    expect(() => ropeScalingFromConfig({ rope_type: 'llama3', factor: '8', low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 })).toThrow(/"rope_scaling.factor" must be a positive number, found "8"/);
    expect(() => ropeScalingFromConfig({ rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 })).toThrow(/high_freq_factor" \(1\) must be above low_freq_factor \(4\)/);
    expect(() => ropeScalingFromConfig([1, 2])).toThrow(/"rope_scaling" must be an object or null/);
  });
});
