import { describe, expect, it } from 'vitest';
import { scoredRuns } from '../../workers/model/scored-rows';

describe('scoredRuns', () => {
  it('covers every scored row, bridges short gaps, leaves long ones out', () => {
    const t = (s: string) => Array.from(s, (ch) => (ch === '.' ? -100 : 1));
    expect(scoredRuns(t('....'))).toEqual([]);
    expect(scoredRuns(t('xxxx'))).toEqual([[0, 4]]);
    expect(scoredRuns(t('..xx..x.'), 1)).toEqual([[2, 4], [6, 7]]);
    expect(scoredRuns(t('..xx..x.'), 3)).toEqual([[2, 7]]);
    // A gap of exactly `bridge` rows is not bridged.
    expect(scoredRuns(t('x..x'), 2)).toEqual([[0, 1], [3, 4]]);
    expect(scoredRuns(t('x..x'), 3)).toEqual([[0, 4]]);
    // The default bridges fewer than 16 rows.
    expect(scoredRuns(t(`x${'.'.repeat(15)}x${'.'.repeat(16)}x`))).toEqual([[0, 17], [33, 34]]);
  });
});
