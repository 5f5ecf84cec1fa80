import { describe, expect, it } from 'vitest';
import { hasOwnKey, ownEntry } from '../../workers/util/own';
import { getPreset, presetNamed } from '../../workers/load/presets';
import { formatFromName } from '../../workers/data/source';

// Names that come from files or from the page must never find what every object inherits.
const INHERITED = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];

describe('own-key table lookups', () => {
  it('finds own entries only', () => {
    const table: Record<string, number> = { F32: 4 };
    expect(ownEntry(table, 'F32')).toBe(4);
    for (const key of INHERITED) {
      expect(ownEntry(table, key)).toBeUndefined();
      expect(hasOwnKey(table, key)).toBe(false);
    }
    expect(hasOwnKey(table, 7)).toBe(false);
  });

  it('a preset, a dataset extension named like an inherited member is unknown', () => {
    for (const key of INHERITED) {
      expect(presetNamed(key)).toBeUndefined();
      expect(() => getPreset(key)).toThrow(`unknown preset "${key}"`);
      expect(formatFromName(`data.${key}`)).toBeNull();
    }
    expect(presetNamed('demo')?.name).toBe('demo');
    expect(formatFromName('x.JSONL')).toBe('jsonl');
  });
});
