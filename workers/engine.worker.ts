/**
 * The engine worker: owns the GPU device and serves the page's requests (workers/protocol.ts)
 * through comlink. DOM-free. Everything it does is the session's (workers/session/); this file
 * only connects it: errors cross as ErrorInfo (workers/errors.ts), the exported zip and export chunks are transferred.
 */
import * as Comlink from 'comlink';
import { installErrorTransfer } from './errors';
import { ENGINE_READY, type EngineApi } from './protocol';
import { Session } from './session/session';

installErrorTransfer(Comlink.transferHandlers);

const session = new Session({ origin: self.location.origin });

const api: EngineApi = {
  init: (listener) => session.init(listener),
  memory: () => session.memory(),
  presets: () => session.presets(),
  setHubToken: (token) => session.setHubToken(token),
  plan: (model, settings) => session.plan(model, settings),
  loadModel: (model, settings, options) => session.loadModel(model, settings, options),
  cachedModels: () => session.cachedModels(),
  deleteCachedModel: (key) => session.deleteCachedModel(key),
  storage: () => session.storage(),
  loadDataset: (request) => session.loadDataset(request),
  train: (model, settings, options) => session.train(model, settings, options),
  pause: () => session.pause(),
  resume: () => session.resume(),
  stop: () => session.stop(),
  resumable: () => session.resumable(),
  resumeRun: (runId) => session.resumeRun(runId),
  discardRun: (runId) => session.discardRun(runId),
  generate: (request) => session.generate(request),
  async exportAdapter(card) {
    const zip = await session.exportAdapter(card);
    return Comlink.transfer(zip, [zip.buffer]);
  },
  exportPlan: (format, card) => session.exportPlan(format, card),
  // Each chunk is the session's own copy: transferred to the page, not cloned.
  exportWrite: (format, card, sink) => session.exportWrite(format, card, (c) => (c.type === 'chunk' ? sink(Comlink.transfer(c, [c.data.buffer])) : sink(c))),
  importAdapter: (files) => session.importAdapter(files),
  importRun: (files) => session.importRun(files),
};

Comlink.expose(api);
self.postMessage(ENGINE_READY);
