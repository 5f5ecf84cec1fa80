/**
 * Errors as they cross the engine's boundary (to the page through comlink, to the CLI's
 * output): a code that says what kind of failure it is, the fields that locate it (file, line,
 * column, field, tensor, setting and its limit), the section of the studio it belongs to, and
 * a hint that names something the page offers. The page explains by `code`, never by reading
 * the message. Plain data: structured-clone safe.
 */
import type { Section } from './protocol';

export type ErrorCode =
  /** A run setting outside its limits: `setting`, `limit`. */
  | 'invalid-setting'
  /** A dataset problem: `file`, `line`, `column`, `field`. */
  | 'invalid-data'
  /** A model's files (config.json, weights) the engine cannot use: `file`, `field`, `tensor`. */
  | 'invalid-model'
  /** A PEFT adapter that does not fit the model: `file`, `tensor`. */
  | 'invalid-adapter'
  /** The hub answered, but not with the file (missing, moved): `file`. */
  | 'hub'
  /** The hub refused access (401/403: a gated or private repo, no token or a refused one): `file`. */
  | 'hub-access'
  /** No answer from the network: `file`. */
  | 'network'
  /** The browser's storage quota is spent. */
  | 'storage-full'
  | 'out-of-memory'
  | 'gpu'
  | 'device-lost'
  | 'no-webgpu'
  /** Training produced a non-finite loss or gradient norm. */
  | 'diverged'
  /** The memory planner predicts the model with these settings does not fit this GPU, at any shorter setting either. */
  | 'does-not-fit'
  /** A request that needs an earlier step (a loaded dataset, a model, an idle GPU). */
  | 'not-ready'
  | 'internal';

export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  /** What to do about it, naming something the page offers. */
  hint?: string;
  /** The studio section the error belongs to. */
  section?: Section;
  file?: string;
  /** 1-based. */
  line?: number;
  column?: number;
  /** A dataset column or a config.json key. */
  field?: string;
  tensor?: string;
  /** A run setting (RunSettings key) and the limit it broke. */
  setting?: string;
  limit?: string;
}

/** Where each kind of error is shown, and the hint it gets unless the thrower gives a better one. */
const DEFAULTS: Record<ErrorCode, { section: Section; hint?: string }> = {
  'invalid-setting': { section: 'settings', hint: 'Change that value in the Settings section.' },
  'invalid-data': { section: 'data', hint: 'Fix the file at that place and choose it again, or map other columns in the Data section.' },
  'invalid-model': { section: 'model', hint: 'Choose another model in the Model section.' },
  'invalid-adapter': { section: 'export', hint: 'Import the adapter_config.json and adapter_model.safetensors PEFT wrote for this base model.' },
  hub: { section: 'model', hint: 'Check the model id in the Model section.' },
  'hub-access': {
    section: 'model',
    hint: 'Paste an access token with read access (huggingface.co/settings/tokens) into the Access token field of the Model section; for a gated model, log in on the hub and accept its license on the model page first.',
  },
  network: { section: 'model', hint: 'Check the connection and load the model again: the download resumes where it stopped.' },
  'storage-full': { section: 'model', hint: 'Delete cached models you no longer need (Model section), or free disk space, then try again.' },
  'out-of-memory': { section: 'train', hint: 'Lower the sequence length, the batch size or the LoRA rank in the Settings section; the memory gauge in the Model section predicts what fits.' },
  gpu: { section: 'train', hint: 'Reload the page; an interrupted run resumes from its last checkpoint.' },
  'device-lost': { section: 'train', hint: 'Reload the page and resume from the last checkpoint.' },
  'no-webgpu': { section: 'model', hint: 'Open the studio in a browser with WebGPU (Chrome or Edge 113 or later).' },
  diverged: { section: 'train', hint: 'Lower the learning rate in the Settings section and train again.' },
  'does-not-fit': { section: 'model', hint: 'Lower the sequence length, the batch size or the LoRA rank in the Settings section, or choose a smaller preset in the Model section; "Load anyway" tries it regardless.' },
  'not-ready': { section: 'train' },
  internal: { section: 'train' },
};

export type ErrorFields = Omit<ErrorInfo, 'code' | 'message'>;

export class EngineError extends Error {
  readonly info: ErrorInfo;

  constructor(code: ErrorCode, message: string, fields: ErrorFields = {}) {
    super(message);
    this.name = 'EngineError';
    const defaults = DEFAULTS[code];
    this.info = { code, message, section: defaults.section, ...(defaults.hint ? { hint: defaults.hint } : {}), ...dropUndefined(fields) };
  }
}

function dropUndefined(fields: ErrorFields): ErrorFields {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && v !== null)) as ErrorFields;
}

/** The fields a module's own error class carries, read by class (never from the message). */
interface Located {
  file?: unknown;
  line?: unknown;
  column?: unknown;
  tensor?: unknown;
  status?: unknown;
  page?: unknown;
  outOfMemory?: unknown;
}

/**
 * Any failure as an ErrorInfo: engine errors as they are, the modules' error classes by their
 * class and fields; `section` places an error that does not say where it belongs.
 */
export function errorInfo(err: unknown, section?: Section): ErrorInfo {
  if (err instanceof EngineError) return err.info;
  if (isErrorInfo(err)) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const f = e as Error & Located;
  const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
  const n = (v: unknown) => (typeof v === 'number' ? v : undefined);
  const make = (code: ErrorCode, fields: ErrorFields = {}) => new EngineError(code, e.message, { ...(section && code === 'internal' ? { section } : {}), ...fields }).info;
  switch (e.name) {
    case 'DatasetError':
      return make('invalid-data', { file: str(f.file), line: n(f.line), column: n(f.column) });
    case 'ConfigError':
    case 'WeightError':
    case 'ModelInputError':
    case 'CacheError':
      return make('invalid-model');
    case 'SafetensorsError':
      return make(section === 'export' ? 'invalid-adapter' : 'invalid-model', { file: str(f.file), tensor: str(f.tensor) });
    case 'AdapterError':
      return make('invalid-adapter');
    case 'HubError':
      if (f.status === 401 || f.status === 403) {
        const page = str(f.page);
        const license = page ? `for a gated model, log in on the hub and accept its license at ${page} first.` : 'for a gated model, log in on the hub and accept its license on the model page first.';
        return make('hub-access', { file: str(f.file), hint: `Paste an access token with read access (huggingface.co/settings/tokens) into the Access token field of the Model section; ${license}` });
      }
      return make(f.status === null ? 'network' : 'hub', { file: str(f.file) });
    case 'ChecksumError':
      // Refused twice in a row: the bytes arriving are not the hub's; the next load fetches that file again.
      return make('network', { file: str(f.file) });
    case 'QuotaError':
    case 'QuotaExceededError':
      return make('storage-full');
    case 'GpuError':
      return make(f.outOfMemory ? 'out-of-memory' : 'gpu');
    case 'WebGpuUnavailableError':
      return make('no-webgpu');
    case 'TypeError':
      // fetch rejects with a TypeError when the network is unreachable.
      return e.message === 'Failed to fetch' || e.message.startsWith('NetworkError') ? make('network') : make('internal');
    default:
      return make('internal');
  }
}

function isErrorInfo(v: unknown): v is ErrorInfo {
  return !!v && typeof v === 'object' && !(v instanceof Error) && typeof (v as ErrorInfo).code === 'string' && typeof (v as ErrorInfo).message === 'string';
}

/** An Error that carries its ErrorInfo (what the page receives for a failed engine call). */
export class RemoteEngineError extends Error {
  constructor(readonly info: ErrorInfo) {
    super(info.message);
    this.name = 'EngineError';
  }
}

interface TransferHandler {
  canHandle(value: unknown): boolean;
  serialize(value: never): [unknown, Transferable[]];
  deserialize(value: never): unknown;
}

/**
 * Replaces comlink's 'throw' transfer handler (pass `Comlink.transferHandlers`) on both ends:
 * the worker sends the ErrorInfo (comlink's own keeps only name, message and stack) and the
 * page's call rejects with a RemoteEngineError that carries it.
 */
export function installErrorTransfer(handlers: Map<string, TransferHandler>): void {
  const base = handlers.get('throw');
  if (!base) throw new Error('comlink has no "throw" transfer handler to replace');
  handlers.set('throw', {
    canHandle: (value) => base.canHandle(value),
    serialize: ({ value }: { value: unknown }): [ErrorInfo, Transferable[]] => [errorInfo(value), []],
    deserialize: (info: ErrorInfo): never => {
      throw new RemoteEngineError(info);
    },
  });
}
