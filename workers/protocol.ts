/**
 * The engine worker's typed API and event stream, shared by the worker and the page.
 * The page never touches the GPU: it calls these methods through comlink and renders events.
 */
import type { AdapterDescription } from './gpu/device';
import type { PoolStats } from './gpu/pool';

export type EngineEvent =
  | { type: 'status'; status: EngineStatus }
  | { type: 'progress'; task: string; done: number; total: number; detail?: string }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  | { type: 'metrics'; step: number; values: Record<string, number> }
  | { type: 'memory'; stats: PoolStats }
  | { type: 'error'; where: string; message: string; hint?: string }
  | { type: 'device-lost'; reason: string; message: string };

export type EngineStatus = 'starting' | 'ready' | 'busy' | 'no-webgpu' | 'device-lost';

export interface EngineInit {
  status: EngineStatus;
  adapter: AdapterDescription | null;
  /** Why WebGPU is unavailable, in words for a person, when status is 'no-webgpu'. */
  problem?: string;
}

export interface EngineApi {
  /** Acquire the GPU and report the adapter. Events arrive through `listener`. */
  init(listener: (event: EngineEvent) => void): Promise<EngineInit>;
  memory(): Promise<PoolStats | null>;
}
