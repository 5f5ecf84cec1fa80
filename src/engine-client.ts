/** The page's handle on the engine worker (comlink). The only way the page reaches the GPU. */
import * as Comlink from 'comlink';
import type { EngineApi } from '../workers/protocol';

let remote: Comlink.Remote<EngineApi> | null = null;

export function engine(): Comlink.Remote<EngineApi> {
  if (!remote) {
    const worker = new Worker(new URL('../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'engine' });
    remote = Comlink.wrap<EngineApi>(worker);
  }
  return remote;
}

export { Comlink };
