// Builds the Node + Dawn benchmark bundle, and finds a Vulkan driver for Dawn.
import { build } from 'vite';
import { existsSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { resolve } from 'node:path';

/** One ES module with the engine, the suites and their WGSL inlined; only `webgpu` stays external. */
export async function buildNodeBench(root, outDir = resolve(root, 'bench/dist')) {
  await build({
    root,
    configFile: false,
    logLevel: 'warn',
    build: {
      ssr: resolve(root, 'bench/node-entry.ts'),
      outDir,
      emptyOutDir: true,
      target: 'node20',
      rollupOptions: { output: { entryFileNames: 'node-bench.mjs' } },
    },
    ssr: { noExternal: true, external: ['webgpu'] },
  });
  return resolve(outDir, 'node-bench.mjs');
}

/**
 * Dawn needs libvulkan and a driver. A machine with a system Vulkan loader uses its own
 * drivers (a real GPU); otherwise fall back to the SwiftShader CPU driver that Chromium ships.
 */
export function vulkanEnv() {
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return {};
  let systemLoader = false;
  try {
    systemLoader = execSync('ldconfig -p', { encoding: 'utf8' }).includes('libvulkan.so.1');
  } catch {
    systemLoader = false;
  }
  const chromiumDir = '/usr/lib/chromium';
  if (!systemLoader && existsSync(`${chromiumDir}/vk_swiftshader_icd.json`)) {
    return {
      VK_ICD_FILENAMES: `${chromiumDir}/vk_swiftshader_icd.json`,
      LD_LIBRARY_PATH: [chromiumDir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    };
  }
  return {};
}
