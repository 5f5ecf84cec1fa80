/**
 * What a command-line command may do from inside the browser page: print progress (stderr),
 * print JSON lines (stdout), and read or write the files the user named. The Node side of
 * the runner (scripts/cli.mjs) carries these to the terminal and the file system.
 */

export interface CliIo {
  /** Human progress, printed on stderr. */
  log(message: string): void;
  /** One JSON object on its own stdout line (per-step records, per-case results). */
  line(value: unknown): void;
  readFile(path: string): Promise<Uint8Array>;
  readText(path: string): Promise<string>;
  /** Entries of a folder; `null` when the path is not a folder. */
  listDir(path: string): Promise<{ name: string; isDirectory: boolean }[] | null>;
  exists(path: string): Promise<boolean>;
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  /** Adds to the end of a file (a large file written a piece at a time); absent where the runner cannot. */
  appendFile?(path: string, data: Uint8Array): Promise<void>;
}

/** Bad arguments or bad input files: the runner exits with code 2. */
export class CliInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliInputError';
  }
}

export interface CliResult {
  /** The last stdout line. */
  result: Record<string, unknown>;
  /** 0 success, 1 failure, 2 invalid input. */
  exitCode: 0 | 1 | 2;
}

/** `env`: the environment variables the runner hands over (HF_TOKEN, HF_ENDPOINT only). */
export type CliArgs = { positional: string[]; flags: Record<string, string | true>; env?: { HF_TOKEN?: string; HF_ENDPOINT?: string } };
export type CliCommand = (args: CliArgs, io: CliIo) => Promise<CliResult>;

/** Reads files through the dev server the runner started (see scripts/local-files-plugin.ts). */
export function httpIo(emit: (stream: 'stderr' | 'stdout', text: string) => void): CliIo {
  const url = (path: string, query = '') => `/__local_file?path=${encodeURIComponent(path)}${query}`;
  const readFile = async (path: string) => {
    const res = await fetch(url(path));
    if (!res.ok) throw new CliInputError(`cannot read ${path}: ${await res.text()}`);
    return new Uint8Array(await res.arrayBuffer());
  };
  return {
    log: (message) => emit('stderr', message),
    line: (value) => emit('stdout', JSON.stringify(value)),
    readFile,
    readText: async (path) => new TextDecoder().decode(await readFile(path)),
    async listDir(path) {
      const res = await fetch(url(path, '&list'));
      return res.ok ? ((await res.json()) as { name: string; isDirectory: boolean }[]) : null;
    },
    async exists(path) {
      return (await fetch(url(path, '&stat'))).ok;
    },
    async writeFile(path, data) {
      const body = typeof data === 'string' ? new TextEncoder().encode(data) : data;
      const res = await fetch(url(path), { method: 'PUT', body: body as BodyInit });
      if (!res.ok) throw new Error(`cannot write ${path}: ${await res.text()}`);
    },
    async appendFile(path, data) {
      const res = await fetch(url(path, '&append'), { method: 'PUT', body: data as BodyInit });
      if (!res.ok) throw new Error(`cannot write ${path}: ${await res.text()}`);
    },
  };
}

/** Joins a folder and a name with '/', the separator the runner's file server accepts. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}
