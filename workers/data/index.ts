/**
 * The data pipeline: parse a file or a hub dataset into rows, map columns, apply a template,
 * tokenize with completion-only labels, split, pack, batch and measure.
 *
 *   const rows = readRows(file, file.name);                       // JSONL, JSON, CSV, TSV, Parquet
 *   const { train, validation, stats } = await prepareDataset(rows, { preset: 'ds1000', tokenizer, maxLength: 512, seed: 0 });
 *   const batch = makeBatch(train.slice(0, 4), tokenizer.padTokenId);
 *
 * Bad input throws DatasetError {file, line, column, message}; the *Result variants return it
 * as `{ok: false, error}` instead.
 */
export type { ByteSource, ColumnMapping, DataFormat, DataMapping, DatasetStats, Example, Histogram, PrepareOptions, PreparedDataset, PresetName, Preview, PreviewPart, Row, TokenStats } from './types';
export { DatasetError, asResult, toErrorInfo, type Result } from './errors';
export { readRows, collectRows, formatFromName } from './source';
export { rowLine } from './row-line';
export { detectColumns, getPath } from './columns';
export { PRESETS, chatSegments, formatRowFull, type FormattedRow, type Preset, type Segment } from './templates';
export { IGNORE_INDEX, formatDataset, packExamples, prepareDataset, prepareDatasetResult, previewOf, tokenizeChat, tokenizeRow, tokenizeSegments } from './prepare';
export { splitIndices, validationCount } from './split';
export { makeBatch } from './batch';
export { listHubParquetFiles, hubRows, type HubOptions, type HubParquetFile } from './hub';
