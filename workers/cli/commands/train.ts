import { chatStopTokenIds } from '../../tokenizer/chat-turns';
import { Gpu } from '../../gpu/runtime';
import type { HubClient } from '../../load/hub';
import { filesFor } from '../../load/model-source';
import { hubFileSet, readConfig, type ModelFileSet } from '../../load/sources';
import { DEFAULT_QUANT, NO_QUANT, presetNamed, type Preset, type QuantSettings } from '../../load/presets';
import { crc32 } from '../../util/crc32';
import { allLinearNames } from '../../model/architecture';
import { parseModelConfig } from '../../model/config';
import type { CausalLM } from '../../model/causal-lm';
import { readRows, type PresetName } from '../../data';
import type { Example } from '../../data/types';
import type { ModelConfig } from '../../model/config';
import { checkAgainstModel, readRunBundle, RunBundleError, type BundleFiles, type ReadRunBundle } from '../../export/run-bundle/reader';
import { tokenizerFromFiles, type TextTokenizer } from '../../tokenizer';
import { CheckpointStore } from '../../train/checkpoint-store';
import type { Trainer } from '../../train/trainer';
import { checkRunSettings, runSettings, SCHEDULE_NAMES, type RunSettings, type Schedule } from '../../run/settings';
import { EngineError } from '../../errors';
import { TEMPLATE_NAMES, prepareForRun } from '../../session/datasets';
import { loadRunModel, quantizerFor } from '../../session/models';
import { assembleRun, runExamples, samplePrompts } from '../../session/runs';
import { presetTokenizer } from '../../session/tokenizers';
import { cliFileSet, folderCommit } from '../model-files';
import { cliHubClient, isHubRepoId } from '../hub-access';
import { baseModelName } from '../../export/model-card';
import { exportBase } from '../../session/export';
import { parseMapping } from './data-check';
import { Sha256 } from '../../util/sha256';
import { RunBundleStore } from '../../export/run-bundle/run-record';
import { runTemplateName, STUDIO_VERSION, type RunFacts } from '../../export/run-bundle/run-facts';
import { quantFromRunJson, runQuantization } from '../../export/run-bundle/quantization';
import { CliInputError, joinPath, type CliArgs, type CliCommand, type CliIo } from '../io';
import { checkArgs, type ArgSpec } from '../flags';

const USAGE =
  'usage: train --model <hf-folder|preset|owner/name on the hub> --data <file> | --from-run <run bundle folder> [--model M] [--token T (or HF_TOKEN) for gated models] [--revision R] [--steps N] [--epochs E] [--seed S] [--out DIR] [--resume] [--profile DIR] ' +
  '[--lr X] [--schedule cosine|linear|constant|constant_with_warmup] [--warmup-ratio F] [--warmup-steps N] [--batch B] [--accum A] [--max-length T] ' +
  '[--template ds1000|counseling | --map prompt=COL,response=COL] [--tokenizer DIR] [--r R] [--alpha A] [--dropout P] [--targets a,b] ' +
  '[--validation F] [--weight-decay X] [--max-grad-norm X] [--eval-every N] [--sample-every N] [--sample-tokens N] [--checkpoint-every N] [--stop-after N] [--optimizer-budget BYTES] ' +
  '[--no-quantize (plain LoRA: the base unquantized, f32 on the GPU, 4 bytes per parameter)]';

/** Flags that set a run setting (workers/run/settings.ts checks their values). */
const SETTING_FLAGS: Record<string, Exclude<keyof RunSettings, 'schedule' | 'targetModules'>> = {
  r: 'rank',
  alpha: 'alpha',
  dropout: 'dropout',
  lr: 'learningRate',
  'warmup-ratio': 'warmupRatio',
  'warmup-steps': 'warmupSteps',
  'weight-decay': 'weightDecay',
  'max-grad-norm': 'maxGradNorm',
  epochs: 'epochs',
  steps: 'maxSteps',
  batch: 'batchSize',
  accum: 'gradAccum',
  'max-length': 'seqLength',
  seed: 'seed',
  'eval-every': 'evalEvery',
  'sample-every': 'sampleEvery',
  'sample-tokens': 'sampleTokens',
  'checkpoint-every': 'checkpointEvery',
  validation: 'validationFraction',
};

/** Every flag `train` understands: anything else (a misspelt flag) is refused before any work. */
const ARGS: ArgSpec = {
  usage: USAGE,
  values: [
    ...Object.keys(SETTING_FLAGS),
    'model', 'data', 'token', 'revision', 'out', 'profile', 'schedule', 'template', 'map', 'tokenizer', 'targets', 'stop-after', 'optimizer-budget', 'from-run',
  ],
  needs: { token: 'the access token (or set HF_TOKEN in the environment instead)', 'from-run': 'a run bundle folder (what export-run wrote)', revision: 'a branch, tag or commit' },
  switches: ['resume', 'no-quantize'],
};

/** Refuses unknown flags, a value after a switch, a value flag without one and stray arguments, naming them. */
export function checkTrainArgs(args: CliArgs): void {
  checkArgs(args, ARGS);
}

/** How the base is stored: NF4 (the preset's settings, else the default), or not quantized with --no-quantize. */
export function quantFromFlags(args: CliArgs, preset: Preset | null): QuantSettings {
  return args.flags['no-quantize'] === true ? NO_QUANT : (preset?.quant ?? DEFAULT_QUANT);
}

/** A command-line run reports evaluations, samples and checkpoints only when asked. */
const CLI_QUIET = { evalEvery: 0, sampleEvery: 0, checkpointEvery: 0 } as const;

function num(args: CliArgs, name: string): number | undefined {
  const v = args.flags[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || v.trim() === '' || Number.isNaN(n)) throw new CliInputError(`--${name} needs a number, got ${JSON.stringify(v)}`);
  return n;
}

/** Flags over the preset's settings (or the run defaults with every linear layer) — the same contract the page edits. */
function settingsFrom(args: CliArgs, preset: Preset | null, modules: string[]): RunSettings {
  const base: RunSettings = preset ? structuredClone(preset.settings) : runSettings({ targetModules: modules });
  const s: RunSettings = { ...base, ...CLI_QUIET };
  for (const [flag, key] of Object.entries(SETTING_FLAGS)) {
    const v = num(args, flag);
    if (v !== undefined) s[key] = v;
  }
  if (typeof args.flags.schedule === 'string') s.schedule = args.flags.schedule as Schedule;
  if (typeof args.flags.targets === 'string') s.targetModules = args.flags.targets.split(',').filter(Boolean);
  try {
    return checkRunSettings(s, modules);
  } catch (err) {
    if (!(err instanceof EngineError)) throw err;
    const setting = err.info.setting;
    const flag = Object.entries(SETTING_FLAGS).find(([, k]) => k === setting)?.[0] ?? (setting === 'targetModules' ? 'targets' : setting);
    const known = setting === 'schedule' ? ` (${SCHEDULE_NAMES.join(', ')})` : '';
    throw new CliInputError(`--${flag}: ${err.message}${known}`);
  }
}

/**
 * Where the model's files are: a built-in preset (the demo served by the studio, the others
 * downloaded from the hub), a hub repo `owner/name` (streamed from the hub; gated ones need
 * --token or HF_TOKEN), or a folder read through the CLI.
 */
function modelFiles(spec: string, io: CliIo, hub: HubClient, revision: string | undefined): { files: ModelFileSet; hubRepo: string | null; preset: Preset | null } {
  const preset = presetNamed(spec) ?? null;
  if (preset) {
    const { files } = filesFor({ kind: 'preset', name: spec, revision }, hub, location.origin);
    return { files, hubRepo: null, preset };
  }
  if (isHubRepoId(spec)) return { files: hubFileSet(hub, spec, revision ?? 'main'), hubRepo: spec, preset: null };
  return { files: cliFileSet(io, spec), hubRepo: null, preset: null };
}

/** The tokenizer, and its tokenizer.json text where it was read here (a run bundle names its sha256). */
async function loadTokenizer(args: CliArgs, files: ModelFileSet, preset: Preset | null, io: CliIo, hub: HubClient): Promise<{ tokenizer: TextTokenizer; json: string | null }> {
  const dir = typeof args.flags.tokenizer === 'string' ? args.flags.tokenizer : null;
  if (!dir && preset) return { tokenizer: await presetTokenizer(preset, location.origin, hub), json: null };
  const read = async (name: string) => {
    if (!dir) return files.text(name);
    const path = joinPath(dir, name);
    return (await io.exists(path)) ? io.readText(path) : null;
  };
  const json = await read('tokenizer.json');
  if (!json) throw new CliInputError(`no tokenizer.json in ${dir ?? files.label}; pass --tokenizer DIR`);
  return { tokenizer: tokenizerFromFiles(json, await read('tokenizer_config.json')), json };
}

function pagingOf(args: CliArgs): { budgetBytes: number | undefined; pageElems: number } | undefined {
  const paging = args.flags['optimizer-budget'] !== undefined ? { budgetBytes: num(args, 'optimizer-budget'), pageElems: 1 << 16 } : undefined;
  if (paging && !(paging.budgetBytes! > 0)) throw new CliInputError('--optimizer-budget needs a positive number of bytes');
  return paging;
}

/** A run bundle folder read through the CLI, every file checked (workers/export/run-bundle/reader.ts). */
async function readCliBundle(io: CliIo, dir: string): Promise<ReadRunBundle> {
  const files: BundleFiles = { label: dir, read: async (path) => ((await io.exists(joinPath(dir, path))) ? io.readFile(joinPath(dir, path)) : null) };
  try {
    return await readRunBundle(files);
  } catch (err) {
    if (err instanceof RunBundleError) throw new CliInputError(err.message);
    throw err;
  }
}

/** The bundle's base config and the model's must describe the same network. */
function sameBase(runConfig: Record<string, unknown>, config: ModelConfig, label: string, dir: string): void {
  let theirs: ModelConfig;
  try {
    theirs = parseModelConfig(JSON.stringify(runConfig), `${dir}/run.json base.config`);
  } catch (err) {
    throw new CliInputError((err as Error).message);
  }
  const a = config as unknown as Record<string, unknown>;
  const b = theirs as unknown as Record<string, unknown>;
  const differs = Object.keys(b).find((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  if (differs) throw new CliInputError(`${dir}/run.json (base.config): the run's base has ${differs} = ${JSON.stringify(b[differs])}, ${label} has ${JSON.stringify(a[differs])}; pass the run's base with --model`);
}

function bundleSettings(settings: RunSettings, modules: string[], dir: string): RunSettings {
  try {
    return checkRunSettings(settings, modules);
  } catch (err) {
    if (err instanceof EngineError) throw new CliInputError(`${dir}/run.json (settings.${err.info.setting}): ${err.message}`);
    throw err;
  }
}

/** How the run's base was stored, as the loader takes it; --no-quantize must agree with it. */
function quantOfRun(run: ReadRunBundle['run'], dir: string, noQuantize: boolean): QuantSettings {
  let q: QuantSettings;
  try {
    q = quantFromRunJson(run.quantization, `${dir}/run.json`);
  } catch (err) {
    throw new CliInputError((err as Error).message);
  }
  if (noQuantize && q.type !== 'none') throw new CliInputError(`--no-quantize: ${dir}/run.json (quantization.type) says the run trained on the NF4 base; continue it without --no-quantize`);
  return q;
}

/**
 * `train`: fine-tunes LoRA adapters on a dataset with the studio's own run assembly
 * (workers/session: the same model load, data preparation and trainer wiring as the page),
 * checkpointing to IndexedDB (use --profile so checkpoints survive between runs, --resume to
 * continue one). One JSON line per step, eval and sample lines, and
 * `{"ok":true,"steps","final_loss","adapter"}`.
 */
export const train: CliCommand = async (args, io) => {
  checkTrainArgs(args);
  const f = args.flags;
  const fromRun = typeof f['from-run'] === 'string' ? f['from-run'] : null;
  if (fromRun) {
    // The bundle holds the run's settings and data: flags that would change them are refused.
    const clashing = ['data', 'template', 'map', 'resume', 'schedule', 'targets', 'tokenizer', ...Object.keys(SETTING_FLAGS)].filter((k) => f[k] !== undefined);
    if (clashing.length) throw new CliInputError(`--from-run continues the bundle's own settings and data: drop ${clashing.map((k) => `--${k}`).join(', ')}`);
  }
  const bundle = fromRun ? await readCliBundle(io, fromRun) : null;
  const modelSpec = typeof f.model === 'string' ? f.model : (bundle?.run.base.id ?? null);
  if (!modelSpec || (!bundle && typeof f.data !== 'string')) throw new CliInputError(USAGE);
  const hub = cliHubClient(args, { onRetry: (file, attempt, why) => io.log(`${file}: retry ${attempt} (${why})`) });
  const { files, hubRepo, preset } = modelFiles(modelSpec, io, hub, typeof f.revision === 'string' ? f.revision : (bundle?.run.base.commit ?? undefined));
  const { config: rawConfig } = await readConfig(files);
  // The adapter names its base as the page's would: a preset by its hub id or name, a folder by
  // its config's hub id or its own name, a hub repo by its id; and the commit where the folder
  // records one (a hub model's is the one it was loaded at).
  const base = preset
    ? exportBase({ kind: 'preset', name: preset.name }, rawConfig, modelSpec)
    : hubRepo
      ? baseModelName({ kind: 'hub', id: hubRepo })
      : baseModelName({ kind: 'folder', folderName: modelSpec, config: rawConfig });
  const folderRevision = preset || hubRepo ? null : await folderCommit(io, modelSpec);
  const config = parseModelConfig(JSON.stringify(rawConfig), joinPath(files.label, 'config.json'));
  if (bundle) sameBase(bundle.run.base.config, config, files.label, fromRun!);
  const settings = bundle ? bundleSettings(bundle.run.settings, allLinearNames(config), fromRun!) : settingsFrom(args, preset, allLinearNames(config));
  const { tokenizer, json: tokenizerJson } = await loadTokenizer(args, files, preset, io, hub);
  const sha = (bytes: Uint8Array) => new Sha256().update(bytes).hex();
  const tokenizerSha = tokenizerJson === null ? null : sha(new TextEncoder().encode(tokenizerJson));

  let examples: { train: Example[]; validation: Example[] };
  let dataFacts: RunFacts['data'];
  let runKey: Record<string, unknown>;
  if (bundle) {
    const d = bundle.run.data;
    if (tokenizer.padTokenId !== d.pad_token_id) throw new CliInputError(`${fromRun}/run.json (data.pad_token_id): the run padded with ${d.pad_token_id}, this tokenizer pads with ${tokenizer.padTokenId}`);
    if (tokenizerSha && d.tokenizer_sha256 && tokenizerSha !== d.tokenizer_sha256) throw new CliInputError(`${fromRun}/run.json (data.tokenizer_sha256): the run was tokenized with another tokenizer.json than ${files.label}'s`);
    examples = { train: bundle.train, validation: bundle.validation };
    dataFacts = { template: d.template, template_sha256: d.template_sha256, tokenizer_sha256: d.tokenizer_sha256, pad_token_id: d.pad_token_id, dataset_sha256: d.dataset_sha256 };
    io.log(`run bundle ${fromRun}: step ${bundle.run.step} of ${bundle.run.schedule.total_steps}, ${bundle.train.length} training and ${bundle.validation.length} validation examples`);
    runKey = { model: files.label, run: bundle.run.exported_at, step: bundle.run.step, settings, bundle: fromRun };
  } else {
    const dataPath = f.data as string;
    // Data: template from the flag, else the preset's; or an explicit mapping.
    const template = (typeof f.template === 'string' ? f.template : preset?.template) as PresetName | undefined;
    if (template && !TEMPLATE_NAMES.includes(template)) throw new CliInputError(`--template must be ${TEMPLATE_NAMES.join(' or ')}, got "${template}"`);
    const dataName = dataPath.split(/[\\/]/).pop() ?? dataPath;
    const mapping = typeof f.map === 'string' ? parseMapping(f.map, dataName) : null;
    if (!template && !mapping) throw new CliInputError('say how rows become text: --template ds1000|counseling or --map prompt=COL,response=COL');
    const dataBytes = await io.readFile(dataPath);
    const format = { template: mapping ? null : (template ?? null), mapping };
    const data = await prepareForRun(readRows(new Blob([dataBytes as BlobPart]), dataName), format, tokenizer, settings, dataName);
    for (const w of data.stats.warnings) io.log(`data: ${w}`);
    // The CLI holds its examples in memory (and keeps them with the run for export-run).
    const listed = runExamples(data, dataName, settings.seqLength);
    examples = { train: await listed.train.slice(0), validation: await listed.validation.slice(0) };
    const dropped = listed.dropped;
    if (dropped) io.log(`data: ${dropped} training examples without learned tokens are left out`);
    io.log(`data: ${data.train.length} training and ${data.validation.length} validation examples, ${data.stats.tokens.labelTokens} learned tokens`);
    dataFacts = { template: runTemplateName(format, tokenizer), template_sha256: null, tokenizer_sha256: tokenizerSha, pad_token_id: tokenizer.padTokenId, dataset_sha256: sha(dataBytes) };
    runKey = { model: files.label, data: dataName, bytes: dataBytes.byteLength, crc: crc32(dataBytes), settings, template, mapping, paging: pagingOf(args) };
  }
  const paging = pagingOf(args);
  const stopAfterFlag = num(args, 'stop-after') ?? 0;
  if (!Number.isInteger(stopAfterFlag) || stopAfterFlag < 0) throw new CliInputError('--stop-after needs a whole number of steps');
  // Same model, data, seed, settings and base storage → the same run id, so --resume finds its
  // checkpoints (an NF4 run's id is what it was before the base could stay unquantized).
  const runIdOf = (q: QuantSettings) =>
    `${bundle ? 'from-run' : 'train'}-${crc32(new TextEncoder().encode(JSON.stringify({ ...runKey, ...(q.type === 'none' ? { base: 'none' } : {}) }))).toString(16)}`;
  // A bundle continues on the base storage it was trained on.
  let quant = bundle ? quantOfRun(bundle.run, fromRun!, f['no-quantize'] === true) : quantFromFlags(args, preset);
  const gpu = await Gpu.create();
  const store = await CheckpointStore.open();
  const bundles = new RunBundleStore();
  let model: CausalLM | null = null;
  let trainer: Trainer | null = null;
  try {
    if (f.resume) quant = await resumedQuant(store, quant, runIdOf, preset, io);
    const runId = runIdOf(quant);
    const baseNote = quant.type === 'none' ? 'unquantized base (plain LoRA, f32 on the GPU)' : 'NF4 base';
    io.log(`model ${files.label}: ${config.arch}, ${config.layers} layers, hidden ${config.hidden}; ${baseNote}, LoRA r ${settings.rank} on ${settings.targetModules.join(', ')}; run ${runId}`);
    const loaded = await loadRunModel(gpu, { files, quant, settings, quantizer: quantizerFor(gpu), baseModel: base.name });
    model = loaded.model;
    let stopAfter = stopAfterFlag;
    const t: Trainer = assembleRun({
      gpu,
      model,
      tokenizer,
      stopTokenIds: chatStopTokenIds(tokenizer, loaded.endTokenSources),
      settings,
      train: examples.train,
      validation: examples.validation,
      samplePrompts: await samplePrompts(examples.validation.length ? examples.validation : examples.train),
      checkpoints: store.sink(runId),
      paging,
      onEvent: (e) => {
        if (e.type === 'step') {
          io.line({ step: e.step + 1, loss: e.loss, lr: e.lr, grad_norm: e.gradNorm, tokens_per_s: Math.round(e.tokensPerS * 10) / 10, gpu_bytes: e.gpuBytes });
          io.log(`step ${e.step + 1}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} grad_norm ${e.gradNorm.toFixed(3)}`);
          if (stopAfter && e.step + 1 >= stopAfter) t.stop();
        } else if (e.type === 'eval') io.line({ step: e.step, eval_loss: e.loss, eval_tokens: e.tokens });
        else if (e.type === 'sample') io.line({ step: e.step, sample: e.index, text: e.text });
        else if (e.type === 'checkpoint') io.log(`checkpoint at step ${e.step} (${e.reason})`);
        else if (e.type === 'status' && e.message) io.log(`${e.status}: ${e.message}`);
      },
    });
    trainer = t;
    // What `export-run` needs besides the checkpoint: the run's facts and its examples as trained.
    const facts: RunFacts = {
      studioVersion: STUDIO_VERSION,
      base: { id: base.name, revision: typeof f.revision === 'string' ? f.revision : (bundle?.run.base.revision ?? (preset || hubRepo ? 'main' : null)), commit: loaded.commit ?? folderRevision ?? bundle?.run.base.commit ?? null, config: rawConfig },
      quantization: runQuantization(quant),
      settings,
      data: dataFacts,
    };
    if (!f.resume || !(await bundles.get(runId))) await bundles.put({ runId, facts, train: examples.train, validation: examples.validation, savedAt: Date.now() });
    if (bundle) {
      try {
        checkAgainstModel(bundle, model.lora, fromRun!);
      } catch (err) {
        throw err instanceof RunBundleError ? new CliInputError(err.message) : err;
      }
      await store.deleteRun(runId);
      t.restore(bundle.snapshot);
      io.line({ resumed_from_step: bundle.run.step, from_run: fromRun });
      if (stopAfter && stopAfter <= bundle.run.step) stopAfter = 0;
    } else if (f.resume) {
      const loaded = await store.loadLatest(runId);
      if (!loaded) throw new CliInputError(`no checkpoint of this run (same model, data, seed and settings) to resume; run without --resume first (and keep the same --profile)`);
      for (const w of loaded.warnings) {
        io.log(`warning: ${w}`);
        io.line({ warning: w });
      }
      t.restore(loaded.snapshot);
      io.line({ resumed_from_step: loaded.info.step });
      if (stopAfter && stopAfter <= loaded.info.step) stopAfter = 0;
    } else {
      await store.deleteRun(runId);
    }
    const result = await t.run();
    if (result.status === 'error' || result.status === 'device-lost') return { exitCode: 1, result: { ok: false, status: result.status, steps: result.step, error: result.message } };
    const finalLoss = result.history.length ? result.history[result.history.length - 1].loss : null;
    let adapter: string | null = null;
    if (typeof f.out === 'string') {
      const exported = await model.exportAdapter(base.name, loaded.commit ?? folderRevision);
      await io.writeFile(joinPath(f.out, 'adapter_model.safetensors'), exported.adapterModel);
      await io.writeFile(joinPath(f.out, 'adapter_config.json'), exported.adapterConfig);
      adapter = f.out;
      io.log(`adapter written to ${f.out}`);
    }
    const evalLoss = result.evals.length ? result.evals[result.evals.length - 1].loss : null;
    return { exitCode: 0, result: { ok: true, status: result.status, steps: result.step, final_loss: finalLoss, eval_loss: evalLoss, adapter, quantization: quant.type } };
  } finally {
    trainer?.dispose();
    model?.dispose();
    store.close();
    await bundles.close();
    gpu.destroy();
  }
};

/**
 * The base storage a resumed run continues on: the one its checkpoints were made with. Without
 * --no-quantize, a run whose only checkpoints are of an unquantized base reloads it unquantized;
 * with --no-quantize, a run trained on the NF4 base is refused (its adapter fits that base).
 */
async function resumedQuant(store: CheckpointStore, asked: QuantSettings, runIdOf: (q: QuantSettings) => string, preset: Preset | null, io: CliIo): Promise<QuantSettings> {
  const other = asked.type === 'none' ? (preset?.quant ?? DEFAULT_QUANT) : NO_QUANT;
  if ((await store.list(runIdOf(asked))).length || !(await store.list(runIdOf(other))).length) return asked;
  if (asked.type === 'none') throw new CliInputError('--resume --no-quantize: this run was trained on the NF4 base (QLoRA); resume it without --no-quantize');
  io.log('resuming on the unquantized base this run was trained on (it was started with --no-quantize)');
  return other;
}
