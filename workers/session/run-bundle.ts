/**
 * The studio's side of run bundles (docs/RUN-BUNDLE.md): the facts a run keeps from its start,
 * its bundle from the newest checkpoint (the Export section's "run" format), and a bundle read
 * back from a picked folder or zip into a run record and a checkpoint that "resume" continues.
 */
import { unzipSync } from 'fflate';
import type { HfConfig } from '../load/presets';
import { presetNamed, type QuantSettings } from '../load/presets';
import type { CheckpointStore } from '../train/checkpoint-store';
import type { TextTokenizer } from '../tokenizer';
import type { ModelSource } from '../protocol';
import type { RunSettings } from '../run/settings';
import { EngineError } from '../errors';
import type { ExportFile } from '../export/bundle';
import { bundleOfRun, type RunBundleStore } from '../export/run-bundle/run-record';
import { runTemplateName, STUDIO_VERSION, type RunFacts } from '../export/run-bundle/run-facts';
import { quantFromRunJson, runQuantization } from '../export/run-bundle/quantization';
import { readRunBundle, RunBundleError, type BundleFiles, type ReadRunBundle } from '../export/run-bundle/reader';
import type { RowFormat } from './datasets';
import type { RunRecord } from './run-store';
import { samplePrompts, type RunExamples } from './runs';

/** What a page run's bundle will say about it, fixed when the run starts. */
export function pageRunFacts(o: { baseName: string; source: ModelSource; commit: string | null; config: HfConfig; quant: QuantSettings; settings: RunSettings; format: RowFormat | null; tokenizer: TextTokenizer }): RunFacts {
  const revision = o.source.kind === 'local' ? null : (o.source.revision ?? 'main');
  return {
    studioVersion: STUDIO_VERSION,
    base: { id: o.baseName, revision, commit: o.commit, config: o.config },
    quantization: runQuantization(o.quant),
    settings: o.settings,
    data: { template: o.format ? runTemplateName(o.format, o.tokenizer) : 'unknown', template_sha256: null, tokenizer_sha256: null, pad_token_id: o.tokenizer.padTokenId, dataset_sha256: null },
  };
}

/** The bundle of a page run at its newest checkpoint; its examples are the run's (its stored dataset). */
export async function pageRunBundle(run: RunRecord, examples: RunExamples, bundles: RunBundleStore, checkpoints: CheckpointStore): Promise<ExportFile[]> {
  const stored = await bundles.get(run.runId);
  if (!stored) throw new EngineError('not-ready', 'This run was started before runs kept what a run bundle needs: start it again to export it as a run.', { section: 'export' });
  const checkpoint = await checkpoints.openLatest(run.runId);
  if (!checkpoint) throw new EngineError('not-ready', 'This run has no checkpoint yet: pause or stop it first.', { section: 'export' });
  return bundleOfRun({ facts: stored.facts, train: examples.train, validation: examples.validation }, checkpoint);
}

/**
 * A picked bundle as paths → files: a folder (each file's path below the picked folder) or one
 * zip (its entries, under an optional top folder).
 */
export async function bundleFilesOf(files: File[]): Promise<BundleFiles> {
  const byPath = new Map<string, () => Promise<Uint8Array>>();
  let label = 'run bundle';
  if (files.length === 1 && files[0].name.endsWith('.zip')) {
    label = files[0].name;
    const entries = unzipSync(new Uint8Array(await files[0].arrayBuffer()));
    for (const [name, data] of Object.entries(entries)) byPath.set(name, async () => data);
  } else {
    for (const f of files) {
      const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
      byPath.set(rel, async () => new Uint8Array(await f.arrayBuffer()));
      if (rel.includes('/')) label = rel.split('/')[0];
    }
  }
  // The bundle's own paths start below a top folder when every entry shares one that holds run.json.
  const top = [...byPath.keys()].find((p) => p.endsWith('/run.json') && p.split('/').length === 2)?.split('/')[0];
  return {
    label,
    read: async (path) => {
      const get = byPath.get(path) ?? (top ? byPath.get(`${top}/${path}`) : undefined);
      return get ? get() : null;
    },
  };
}

/** Where a bundle's base comes from in the studio: a preset by name, else a hub repo pinned to the run's commit. */
export function bundleSource(run: ReadRunBundle['run'], label: string): Extract<ModelSource, { kind: 'preset' | 'hub' }> {
  if (presetNamed(run.base.id)) return { kind: 'preset', name: run.base.id };
  if (/^[\w.-]+\/[\w.-]+$/.test(run.base.id)) return { kind: 'hub', id: run.base.id, revision: run.base.commit ?? run.base.revision ?? undefined };
  throw new EngineError('invalid-adapter', `${label}/run.json (base.id): "${run.base.id}" is neither a preset nor a hub model; the studio can only continue runs on those`, { section: 'export', file: `${label}/run.json`, field: 'base.id' });
}

/** Reads and checks a picked bundle; errors name the file and the field. */
export async function readPickedBundle(files: File[]): Promise<{ bundle: ReadRunBundle; label: string }> {
  const picked = await bundleFilesOf(files);
  try {
    return { bundle: await readRunBundle(picked), label: picked.label };
  } catch (err) {
    if (err instanceof RunBundleError) throw new EngineError('invalid-adapter', err.message, { section: 'export', file: err.file, field: err.field ?? undefined });
    throw err;
  }
}

/** The run record a bundle continues as (its examples, settings and position). */
export async function recordOfBundle(bundle: ReadRunBundle, label: string, runId: string): Promise<RunRecord> {
  const { run } = bundle;
  let quant: QuantSettings;
  try {
    quant = quantFromRunJson(run.quantization, `${label}/run.json`);
  } catch (err) {
    throw new EngineError('invalid-adapter', (err as Error).message, { section: 'export', file: `${label}/run.json`, field: 'quantization' });
  }
  return {
    runId,
    model: bundleSource(run, label),
    quant,
    modelLabel: run.base.id,
    dataset: `${label} (run bundle)`,
    settings: run.settings,
    totalSteps: run.schedule.total_steps,
    train: bundle.train,
    validation: bundle.validation,
    samplePrompts: await samplePrompts(bundle.validation.length ? bundle.validation : bundle.train),
    state: 'active',
    step: run.step,
    savedAt: Date.now(),
  };
}
