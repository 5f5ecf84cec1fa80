/** The engine worker: owns the GPU device and runs everything that touches it. DOM-free. */
import * as Comlink from 'comlink';
import { Gpu } from './gpu/runtime';
import { WebGpuUnavailableError } from './gpu/device';
import type { EngineApi, EngineEvent, EngineInit } from './protocol';

let gpu: Gpu | null = null;
let emit: (event: EngineEvent) => void = () => {};

const api: EngineApi = {
  async init(listener) {
    emit = listener;
    emit({ type: 'status', status: 'starting' });
    try {
      gpu = await Gpu.create({
        onLost: (info) => {
          gpu = null;
          emit({ type: 'device-lost', reason: info.reason, message: info.message });
          emit({ type: 'status', status: 'device-lost' });
        },
      });
    } catch (err) {
      const problem = err instanceof WebGpuUnavailableError ? err.message : `Could not start WebGPU: ${(err as Error).message}`;
      emit({ type: 'status', status: 'no-webgpu' });
      return { status: 'no-webgpu', adapter: null, problem } satisfies EngineInit;
    }
    emit({ type: 'status', status: 'ready' });
    return { status: 'ready', adapter: gpu.adapter };
  },
  async memory() {
    return gpu ? gpu.pool.stats() : null;
  },
};

Comlink.expose(api);
