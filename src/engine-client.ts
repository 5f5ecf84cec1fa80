/** The page's handle on the engine worker (comlink). The only way the page reaches the GPU. */
import * as Comlink from 'comlink';
import { ENGINE_READY, type EngineApi } from '../workers/protocol';
import { installErrorTransfer } from '../workers/errors';

// A failed engine call rejects with a RemoteEngineError carrying the engine's ErrorInfo.
installErrorTransfer(Comlink.transferHandlers);

let remote: Comlink.Remote<EngineApi> | null = null;
let ready: Promise<void> | null = null;
let onCrash: (message: string) => void = () => {};

/** Called if the worker itself fails (an uncaught error or a module that does not load). */
export function onEngineCrash(handler: (message: string) => void): void {
  onCrash = handler;
}

function start(): void {
  const worker = new Worker(new URL('../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'engine' });
  // The worker says when its API is listening: a message sent before that would be lost
  // if the worker's module graph is still loading (e.g. when wrapped by another script).
  ready = new Promise((resolve) => {
    const onMessage = (event: MessageEvent) => {
      if (event.data === ENGINE_READY) {
        worker.removeEventListener('message', onMessage);
        resolve();
      }
    };
    worker.addEventListener('message', onMessage);
  });
  worker.addEventListener('error', (event) => onCrash(event.message || 'the engine worker failed to start'));
  remote = Comlink.wrap<EngineApi>(worker);
}

export function engine(): Comlink.Remote<EngineApi> {
  if (!remote) start();
  return remote!;
}

/** Resolves once the engine worker is listening; await before the first call. */
export function engineReady(): Promise<void> {
  if (!ready) start();
  return ready!;
}

export { Comlink };
