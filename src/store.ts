/** The page's state, driven by engine events. */
import { create } from 'zustand';
import type { AdapterDescription } from '../workers/gpu/device';
import type { EngineEvent, EngineStatus } from '../workers/protocol';
import type { PoolStats } from '../workers/gpu/pool';

export interface StudioState {
  status: EngineStatus;
  adapter: AdapterDescription | null;
  problem: string | null;
  memory: PoolStats | null;
  log: { level: string; message: string }[];
  setInit(status: EngineStatus, adapter: AdapterDescription | null, problem?: string): void;
  onEvent(event: EngineEvent): void;
}

export const useStudio = create<StudioState>((set) => ({
  status: 'starting',
  adapter: null,
  problem: null,
  memory: null,
  log: [],
  setInit: (status, adapter, problem) => set({ status, adapter, problem: problem ?? null }),
  onEvent: (event) =>
    set((s) => {
      switch (event.type) {
        case 'status':
          return { status: event.status };
        case 'memory':
          return { memory: event.stats };
        case 'log':
          return { log: [...s.log.slice(-199), { level: event.level, message: event.message }] };
        case 'error':
          return { log: [...s.log.slice(-199), { level: 'error', message: `${event.where}: ${event.message}` }] };
        case 'device-lost':
          return { status: 'device-lost', problem: `The GPU device was lost (${event.reason}): ${event.message}` };
        default:
          return {};
      }
    }),
}));
