/**
 * A dataset on the Hugging Face hub by id: its Parquet files (the hub converts every public
 * dataset to Parquet) are listed through the dataset viewer, or the hub's own parquet endpoint
 * when the viewer does not answer, and read by HTTP range requests one row group at a time.
 */
import { asyncBufferFromUrl } from 'hyparquet';
import { DatasetError } from './errors';
import { parseParquet } from './parquet';
import { setRowLine } from './row-line';
import type { Row } from './types';

export interface HubOptions {
  /** The hub (default https://huggingface.co). */
  endpoint?: string;
  /** The dataset viewer API (default https://datasets-server.huggingface.co). */
  viewerEndpoint?: string;
  /** A token for gated or private datasets. */
  token?: string;
  /** Only this config (subset); default: the first one listed. */
  config?: string;
  /** Only this split (e.g. 'train'); default: every split of the config. */
  split?: string;
  fetch?: typeof fetch;
}

export interface HubParquetFile {
  config: string;
  split: string;
  url: string;
  filename: string;
  /** Bytes, when the listing says; otherwise asked with a HEAD request. */
  size?: number;
}

const DATASET_ID = /^[\w.-]+(\/[\w.-]+)?$/;

function headers(options: HubOptions): HeadersInit {
  return options.token ? { Authorization: `Bearer ${options.token}` } : {};
}

async function getJson(url: string, options: HubOptions, id: string): Promise<{ status: number; body: unknown }> {
  const fetchFn = options.fetch ?? fetch;
  let res: Response;
  try {
    res = await fetchFn(url, { headers: headers(options) });
  } catch (err) {
    throw new DatasetError(id, null, null, `cannot reach ${new URL(url).host} for dataset ${id}: ${(err as Error).message}`);
  }
  if (!res.ok) return { status: res.status, body: null };
  try {
    return { status: res.status, body: await res.json() };
  } catch {
    throw new DatasetError(id, null, null, `${new URL(url).host} answered with something that is not JSON for dataset ${id}`);
  }
}

function problemFor(id: string, status: number): string {
  if (status === 401 || status === 403) return `dataset ${id} is gated or private: accept its terms on its hub page and paste an access token with read access into the Access token field of the Model section`;
  if (status === 404) return `no dataset ${id} on the hub (or it has no Parquet conversion)`;
  return `the hub answered HTTP ${status} for dataset ${id}`;
}

/** The dataset's Parquet files, filtered by config and split. */
export async function listHubParquetFiles(id: string, options: HubOptions = {}): Promise<HubParquetFile[]> {
  if (!DATASET_ID.test(id)) throw new DatasetError(id, null, null, `"${id}" is not a hub dataset id (expected owner/name)`);
  const viewer = (options.viewerEndpoint ?? 'https://datasets-server.huggingface.co').replace(/\/$/, '');
  const hub = (options.endpoint ?? 'https://huggingface.co').replace(/\/$/, '');
  let files: HubParquetFile[] = [];
  const fromViewer = await getJson(`${viewer}/parquet?dataset=${encodeURIComponent(id)}`, options, id);
  const listed = (fromViewer.body as { parquet_files?: unknown } | null)?.parquet_files;
  if (Array.isArray(listed)) {
    files = listed
      .filter((f): f is Record<string, unknown> => typeof f === 'object' && f !== null && typeof f.url === 'string')
      .map((f) => ({ config: String(f.config ?? 'default'), split: String(f.split ?? 'train'), url: f.url as string, filename: String(f.filename ?? (f.url as string).split('/').pop()), size: typeof f.size === 'number' ? f.size : undefined }));
  } else {
    // The hub's own listing: {config: {split: [url, ...]}}.
    const fromHub = await getJson(`${hub}/api/datasets/${id}/parquet`, options, id);
    if (fromHub.body === null) throw new DatasetError(id, null, null, problemFor(id, fromHub.status === 404 && fromViewer.status !== 404 ? fromViewer.status : fromHub.status));
    for (const [config, splits] of Object.entries(fromHub.body as Record<string, Record<string, string[]>>)) {
      for (const [split, urls] of Object.entries(splits ?? {})) {
        for (const url of Array.isArray(urls) ? urls : []) files.push({ config, split, url, filename: url.split('/').pop() ?? url });
      }
    }
  }
  const config = options.config ?? files[0]?.config;
  files = files.filter((f) => f.config === config && (options.split === undefined || f.split === options.split));
  if (files.length === 0) {
    const what = options.split ? `split "${options.split}" of config "${config}"` : `config "${config}"`;
    throw new DatasetError(id, null, null, `dataset ${id} lists no Parquet files for ${what}`);
  }
  return files;
}

/** Rows of a hub dataset, file after file, each file read by range requests. */
export async function* hubRows(id: string, options: HubOptions = {}): AsyncGenerator<Row> {
  const files = await listHubParquetFiles(id, options);
  let index = 0;
  for (const f of files) {
    const name = `${id}/${f.config}/${f.split}/${f.filename}`;
    let buffer;
    try {
      buffer = await asyncBufferFromUrl({ url: f.url, byteLength: f.size, requestInit: { headers: headers(options) }, fetch: options.fetch });
    } catch (err) {
      throw new DatasetError(name, null, null, `cannot open ${name}: ${(err as Error).message}`);
    }
    for await (const row of parseParquet(buffer, name)) yield setRowLine(row, ++index);
  }
}
