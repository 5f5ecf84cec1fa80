/**
 * The kernel catalogue's naming holds (docs/ARCHITECTURE.md, "Kernel catalogue"): every WGSL
 * file is in the one registry under its camel-cased name, and every kernel module has its WGSL
 * and its parity test under the same name.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { SHADERS } from '../../workers/kernels/shader-sources';

const camel = (name: string) => name.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
const wgslFiles = readdirSync('shaders').filter((f) => f.endsWith('.wgsl'));
/** The registry's own modules, not kernels. */
const REGISTRY = ['shaders.ts', 'shader-sources.ts'];
const kernelModules = readdirSync('workers/kernels').filter((f) => f.endsWith('.ts') && !REGISTRY.includes(f));

describe('kernel catalogue', () => {
  it('registers every shaders/*.wgsl file under its camel-cased name, and nothing else', () => {
    const keys = Object.keys(SHADERS).sort();
    expect(keys).toEqual(wgslFiles.map((f) => camel(f.replace(/\.wgsl$/, ''))).sort());
    for (const f of wgslFiles) expect(SHADERS[camel(f.replace(/\.wgsl$/, '')) as keyof typeof SHADERS], `shaders/${f}`).toMatch(/@compute/);
  });

  it('gives each kernel module a WGSL file and a parity test of the same name', () => {
    for (const module of kernelModules) {
      const name = module.replace(/\.ts$/, '');
      const wgsl = wgslFiles.filter((f) => f === `${name}.wgsl` || f.startsWith(`${name}-`));
      expect(wgsl.length, `workers/kernels/${module}: no shaders/${name}.wgsl or shaders/${name}-<part>.wgsl`).toBeGreaterThan(0);
      expect(existsSync(`tests/gpu/${name}.test.ts`), `workers/kernels/${module}: no tests/gpu/${name}.test.ts`).toBe(true);
    }
  });
});
