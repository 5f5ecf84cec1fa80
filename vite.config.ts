import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';
import { playwright } from '@vitest/browser-playwright';
import { localFilePlugin } from './scripts/local-files-plugin.ts';

// Chromium for browser tests and the CLI: Debian's package by default, any Chrome by env var.
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const chromiumArgs = ['--enable-unsafe-webgpu', '--enable-precise-memory-info', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

export default defineConfig({
  plugins: [react(), localFilePlugin()],
  worker: { format: 'es' },
  // Every bare import, listed: a dependency discovered at run time re-optimizes the shared cache
  // and reloads pages, which breaks other dev servers (CLI runs, tests) using it at that moment.
  optimizeDeps: { include: ['comlink', 'idb', 'react', 'react-dom', 'react-dom/client', 'zustand', 'zustand/react/shallow', 'uplot', 'fflate', '@huggingface/transformers', 'hyparquet', 'onnxruntime-web/webgpu'] },
  server: { fs: { allow: ['.', '..'] } },
  build: {
    target: 'es2022',
    rollupOptions: { input: { main: 'index.html', cli: 'cli.html' } },
  },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          include: ['tests/node/**/*.test.ts', 'workers/**/*.node.test.ts'],
          environment: 'node',
        },
      },
      {
        // Interoperability with the Python reference stack (../shared/pyref): skipped, saying so, where it is absent.
        extends: true,
        test: {
          name: 'interop',
          include: ['tests/interop/**/*.test.ts'],
          environment: 'node',
          testTimeout: 600_000,
          hookTimeout: 600_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['tests/gpu/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          browser: {
            enabled: true,
            headless: true,
            screenshotFailures: false,
            provider: playwright({ launchOptions: { executablePath: chromiumPath, args: chromiumArgs } }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
