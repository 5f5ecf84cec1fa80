/**
 * Every benchmark suite at `smoke` size in both runtimes (headless Chromium and Node + Dawn):
 * the result JSON has the schema and its numbers are finite and positive. No timing thresholds.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SUITES } from '../../bench/suites';
import { validateReport } from '../../bench/run';
import type { BenchReport } from '../../bench/suite';

const RUNTIMES = ['browser', 'node'] as const;

describe('benchmark suites at smoke size', () => {
  it('has every suite the README lists', () => {
    expect(Object.keys(SUITES).sort()).toEqual(expect.arrayContaining(['matmul', 'train-step', 'decode', 'quantize', 'memory']));
  });

  for (const suite of Object.keys(SUITES).sort()) {
    for (const runtime of RUNTIMES) {
      it(`${suite} in ${runtime}`, () => {
        const dir = mkdtempSync(join(tmpdir(), 'qlora-bench-'));
        try {
          const r = spawnSync(process.execPath, ['bench/bench.mjs', suite, '--runtime', runtime, '--size', 'smoke', '--results', dir], {
            encoding: 'utf8',
            timeout: 540_000,
          });
          const lines = r.stdout.trim().split('\n');
          const last = JSON.parse(lines[lines.length - 1]);
          expect(last.ok, r.stderr.slice(-2000)).toBe(true);
          expect(r.status).toBe(0);
          const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
          expect(files).toHaveLength(1);
          const report = JSON.parse(readFileSync(join(dir, files[0]), 'utf8')) as BenchReport;
          expect(report.suite).toBe(suite);
          expect(report.runtime).toBe(runtime);
          expect(report.size).toBe('smoke');
          expect(typeof report.adapter.vendor).toBe('string');
          expect(report.adapter.limits.maxBufferSize).toBeGreaterThan(0);
          expect(['timestamp-query', 'submitted-work-done']).toContain(report.rows[0].timing.method);
          expect(validateReport(report)).toEqual([]);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }, 600_000);
    }
  }
});
