import type { Plugin } from 'vite';
import { appendFile, readFile, writeFile, mkdir, stat, readdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * Dev-server only: lets the command-line runner's page read files the user named on the
 * command line (`GET /__local_file?path=...`) and write outputs (`PUT`). It is never part
 * of the built site, and only the dev server started by the CLI or the test runner has it.
 * `?list` lists a folder, `?stat` gives size and kind, `PUT ?append` adds to the end of a file.
 */
export function localFilePlugin(): Plugin {
  return {
    name: 'qlora-local-files',
    apply: 'serve',
    configureServer(server) {
      server.middlewares.use('/__local_file', async (req, res) => {
        const url = new URL(req.url ?? '', 'http://localhost');
        const path = url.searchParams.get('path');
        if (!path) {
          res.statusCode = 400;
          res.end('missing path');
          return;
        }
        const abs = resolve(process.cwd(), path);
        try {
          if (req.method === 'PUT') {
            const chunks: Buffer[] = [];
            for await (const chunk of req) chunks.push(chunk as Buffer);
            await mkdir(dirname(abs), { recursive: true });
            await (url.searchParams.has('append') ? appendFile : writeFile)(abs, Buffer.concat(chunks));
            res.statusCode = 204;
            res.end();
            return;
          }
          if (url.searchParams.has('list')) {
            const entries = await readdir(abs, { withFileTypes: true });
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify(entries.map((e) => ({ name: e.name, isDirectory: e.isDirectory() }))));
            return;
          }
          if (url.searchParams.has('stat')) {
            const s = await stat(abs);
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({ size: s.size, isDirectory: s.isDirectory() }));
            return;
          }
          const data = await readFile(abs);
          res.setHeader('content-type', 'application/octet-stream');
          res.setHeader('cache-control', 'no-store');
          res.end(data);
        } catch (err) {
          res.statusCode = 404;
          res.end(`cannot read ${abs}: ${(err as Error).message}`);
        }
      });
    },
  };
}
