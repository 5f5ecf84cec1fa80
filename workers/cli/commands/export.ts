import { SafetensorsFile } from '../../formats/safetensors';
import { presetNamed, type Preset } from '../../load/presets';
import { crc32 } from '../../util/crc32';
import { CheckpointStore } from '../../train/checkpoint-store';
import type { TrainerSnapshot } from '../../train/trainer';
import { tokenizerFromFiles, tokenizerFromUrl, type TextTokenizer } from '../../tokenizer';
import type { PresetName } from '../../data';
import { ggufExport, peftExport, type ExportFile, type ExportInput } from '../../export/bundle';
import { ggufRefusals } from '../../export/gguf-lora';
import { baseModelName, modelCard, type BaseModelName } from '../../export/model-card';
import type { PromptFormat } from '../../export/modelfile';
import { peftAdapterConfig, targetModuleNames, tensorsInMemory, type LoraTensorData } from '../../export/peft';
import { mergedFiles, type BaseWeights, type MergedDType } from '../../export/merged';
import { parseMapping } from './data-check';
import { folderCommit } from '../model-files';
import { CliInputError, joinPath, type CliArgs, type CliCommand, type CliIo } from '../io';
import { checkArgs, type ArgSpec } from '../flags';
import { writeExportFiles } from '../export-files';
import { chooseRun } from '../choose-run';

const USAGE =
  'usage: export --format peft|gguf|merged --out DIR --model <hf-folder|demo> (--profile DIR [--run ID] [--alpha A] [--dropout P] | --adapter DIR) ' +
  '[--revision COMMIT] [--data FILE] [--template ds1000|counseling | --map prompt=COL,response=COL|text=COL|messages=COL] [--tokenizer DIR] [--outtype f32|f16] [--dtype f16|bf16] ' +
  '[--no-quantize (the run trained on the unquantized base: the card says so)]';

/** Every flag the command reads: anything else is a typo and an error. */
const ARGS: ArgSpec = {
  usage: USAGE,
  values: ['format', 'out', 'model', 'profile', 'run', 'alpha', 'dropout', 'adapter', 'revision', 'data', 'template', 'map', 'tokenizer', 'outtype', 'dtype'],
  switches: ['no-quantize'],
};

type Json = Record<string, unknown>;

function stringFlag(args: CliArgs, name: string): string | undefined {
  const v = args.flags[name];
  if (v === undefined) return undefined;
  if (v === true || v === '') throw new CliInputError(`--${name} needs a value`);
  return v;
}

function numberFlag(args: CliArgs, name: string, fallback: number, check: (n: number) => boolean): number {
  const v = stringFlag(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!check(n)) throw new CliInputError(`--${name} needs a valid number, got ${JSON.stringify(v)}`);
  return n;
}

/** The base model's files: the studio's own folders (presets with a URL) by HTTP, others through the CLI. */
interface BaseFiles {
  label: string;
  preset: Preset | null;
  read(name: string): Promise<Uint8Array | null>;
}

function baseFiles(spec: string, io: CliIo): BaseFiles {
  const preset = presetNamed(spec) ?? null;
  if (preset) {
    if (preset.model.kind !== 'url') throw new CliInputError(`preset "${spec}" is downloaded from the hub (${preset.model.repo}); download it and pass its folder with --model`);
    const base = preset.model.baseUrl;
    return {
      label: spec,
      preset,
      read: async (name) => {
        const res = await fetch(base + name);
        const type = res.headers.get('content-type') ?? '';
        return res.ok && !type.includes('text/html') ? new Uint8Array(await res.arrayBuffer()) : null;
      },
    };
  }
  return { label: spec, preset: null, read: async (name) => ((await io.exists(joinPath(spec, name))) ? io.readFile(joinPath(spec, name)) : null) };
}

async function readJson(read: () => Promise<Uint8Array | null>, label: string): Promise<Json> {
  const bytes = await read();
  if (!bytes) throw new CliInputError(`${label} is missing`);
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Json;
  } catch (err) {
    throw new CliInputError(`${label}: not valid JSON (${(err as Error).message})`);
  }
  throw new CliInputError(`${label}: not a JSON object`);
}

/** The newest checkpoint of the run `--run` names, or of the only (else the newest) run in the profile. */
async function latestCheckpoint(args: CliArgs, io: CliIo): Promise<{ runId: string; snapshot: TrainerSnapshot }> {
  const store = await CheckpointStore.open();
  try {
    const runId = await chooseRun(store, stringFlag(args, 'run'), String(args.flags.profile), io);
    const loaded = await store.loadLatest(runId);
    if (!loaded) throw new CliInputError(`run ${runId} has no checkpoint`);
    for (const w of loaded.warnings) io.log(`warning: ${w}`);
    io.log(`run ${runId}: checkpoint at step ${loaded.info.step} (${loaded.info.reason})`);
    return { runId, snapshot: loaded.snapshot };
  } finally {
    store.close();
  }
}

/** How the run laid prompts out, for the Modelfile: the flags as `train` takes them, else the preset's. */
function promptFormat(args: CliArgs, files: BaseFiles, tokenizer: () => Promise<TextTokenizer>): Promise<PromptFormat> | PromptFormat {
  const template = stringFlag(args, 'template') ?? (args.flags.map === undefined ? files.preset?.template : undefined);
  const map = stringFlag(args, 'map');
  if (template && map) throw new CliInputError('give --template or --map, not both');
  if (template) {
    if (template !== 'ds1000' && template !== 'counseling') throw new CliInputError(`--template must be ds1000 or counseling, got "${template}"`);
    return { kind: 'preset', preset: template as PresetName };
  }
  if (!map) throw new CliInputError('the Modelfile needs the prompt format the run trained on: --template ds1000|counseling or --map (as given to train)');
  const mapping = parseMapping(map, '--map');
  // Prompt/response rows were rendered with the chat template when the tokenizer has one (workers/data/templates.ts).
  if (mapping.kind === 'prompt-response') return tokenizer().then((t): PromptFormat => (t.hasChatTemplate ? { kind: 'chat', tokenizer: t } : { kind: 'instruction' }));
  if (mapping.kind === 'text') return { kind: 'text' };
  return tokenizer().then((t) => ({ kind: 'chat' as const, tokenizer: t }));
}

async function loadTokenizer(args: CliArgs, files: BaseFiles, io: CliIo): Promise<TextTokenizer> {
  const dir = stringFlag(args, 'tokenizer');
  if (!dir && files.preset?.tokenizer.kind === 'url') return tokenizerFromUrl(new URL(files.preset.tokenizer.baseUrl, location.origin).href);
  const read = async (name: string) => {
    if (dir) return (await io.exists(joinPath(dir, name))) ? io.readText(joinPath(dir, name)) : null;
    const bytes = await files.read(name);
    return bytes ? new TextDecoder().decode(bytes) : null;
  };
  const json = await read('tokenizer.json');
  if (!json) throw new CliInputError(`no tokenizer.json in ${dir ?? files.label}; pass --tokenizer DIR`);
  return tokenizerFromFiles(json, await read('tokenizer_config.json'));
}

/** The base model's safetensors (one file, or the shards its index names), each read whole. */
async function baseWeights(files: BaseFiles): Promise<BaseWeights> {
  const indexBytes = await files.read('model.safetensors.index.json');
  let shardNames = ['model.safetensors'];
  if (indexBytes) {
    const index = JSON.parse(new TextDecoder().decode(indexBytes)) as { weight_map?: Record<string, string> };
    if (!index.weight_map || typeof index.weight_map !== 'object') throw new CliInputError(`${files.label}/model.safetensors.index.json has no weight_map`);
    shardNames = [...new Set(Object.values(index.weight_map))];
  }
  const shards = new Map<string, SafetensorsFile>();
  const tensors: BaseWeights['tensors'] = [];
  for (const name of shardNames) {
    const bytes = await files.read(name);
    if (!bytes) throw new CliInputError(`${joinPath(files.label, name)} is missing`);
    const file = new SafetensorsFile(bytes, joinPath(files.label, name));
    for (const t of [...file.header.tensors.values()].sort((a, b) => a.begin - b.begin)) {
      shards.set(t.name, file);
      tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape });
    }
  }
  return {
    tensors,
    read: async (name, start, end) => {
      const file = shards.get(name)!;
      const t = file.info(name);
      const size = (t.end - t.begin) / t.shape.reduce((a, b) => a * b, 1);
      return file.bytes.slice(t.begin + start * size, t.begin + end * size);
    },
  };
}

/** Files a merged folder carries over from the base as they are. */
const PASS_THROUGH = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'added_tokens.json'];

async function mergedExport(args: CliArgs, files: BaseFiles, baseConfig: Json, input: ExportInput, io: CliIo): Promise<ExportFile[]> {
  const stored = String(baseConfig.torch_dtype);
  const dtypeFlag = stringFlag(args, 'dtype');
  if (dtypeFlag !== undefined && dtypeFlag !== 'f16' && dtypeFlag !== 'bf16') throw new CliInputError(`--dtype must be f16 or bf16, got "${dtypeFlag}"`);
  const dtype: MergedDType = dtypeFlag ? (dtypeFlag === 'f16' ? 'F16' : 'BF16') : stored === 'bfloat16' ? 'BF16' : 'F16';
  const config = JSON.parse(input.adapterConfig) as Json;
  const tokenizerUrl = !stringFlag(args, 'tokenizer') && files.preset?.tokenizer.kind === 'url' ? files.preset.tokenizer.baseUrl : null;
  const passThrough: { name: string; data: Uint8Array }[] = [];
  for (const name of PASS_THROUGH) {
    let data = await files.read(name);
    const tokDir = stringFlag(args, 'tokenizer');
    if (!data && tokDir && (await io.exists(joinPath(tokDir, name)))) data = await io.readFile(joinPath(tokDir, name));
    if (!data && tokenizerUrl) {
      const res = await fetch(tokenizerUrl + name);
      if (res.ok && !(res.headers.get('content-type') ?? '').includes('text/html')) data = new Uint8Array(await res.arrayBuffer());
    }
    if (data) passThrough.push({ name, data });
  }
  const targets = config.target_modules;
  const card = modelCard({
    base: input.base,
    revision: input.revision,
    architecture: Array.isArray(baseConfig.architectures) ? String(baseConfig.architectures[0]) : undefined,
    lora: { r: Number(config.r), alpha: Number(config.lora_alpha ?? 8), dropout: Number(config.lora_dropout ?? 0), targetModules: typeof targets === 'string' ? targets : Array.isArray(targets) ? targets.map(String) : [], useRslora: config.use_rslora === true },
    ...input.card,
    merged: { into: 'original', dtype: dtype === 'F16' ? 'float16' : 'bfloat16' },
  });
  passThrough.push({ name: 'README.md', data: new TextEncoder().encode(card) });
  io.log(`merging into ${files.label} in ${dtype} (alpha ${config.lora_alpha}, r ${config.r}${config.use_rslora ? ', rsLoRA' : ''})`);
  const weights = await baseWeights(files);
  try {
    const { files: out, stats } = mergedFiles(weights, input.tensors, baseConfig, { alpha: Number(config.lora_alpha ?? 8), r: Number(config.r), useRslora: config.use_rslora === true, dtype }, passThrough);
    const last = out[out.length - 1];
    // Report the merge's own byte accounting once the shards are written.
    out[out.length - 1] = { ...last, chunks: async function* () { yield* last.chunks(); io.log(`merge held at most ${stats.peakHeldBytes} bytes of model data at once (largest tensor ${stats.largestTensorBytes} bytes)`); } };
    return out;
  } catch (err) {
    if ((err as Error).name === 'MergeError') throw new CliInputError((err as Error).message);
    throw err;
  }
}


/**
 * `export`: the adapter of a `train` run (its newest checkpoint in the --profile, or the PEFT
 * folder train wrote with --out) as a PEFT folder with a model card, as a llama.cpp GGUF
 * adapter with an Ollama Modelfile, or merged into the base's own 16-bit weights. LoRA settings a checkpoint does not hold (alpha, dropout)
 * default as in `train`; pass the same flags.
 */
export const exportCommand: CliCommand = async (args, io) => {
  checkArgs(args, ARGS);
  const format = stringFlag(args, 'format');
  const out = stringFlag(args, 'out');
  const model = stringFlag(args, 'model');
  if (!format || !out || !model) throw new CliInputError(USAGE);
  if (format !== 'peft' && format !== 'gguf' && format !== 'merged') throw new CliInputError(`--format must be peft, gguf or merged, got "${format}"`);
  const fromProfile = args.flags.profile !== undefined;
  const adapterDir = stringFlag(args, 'adapter');
  if (fromProfile === (adapterDir !== undefined)) throw new CliInputError(`give exactly one of --profile (a train run's checkpoints) and --adapter (a PEFT folder)\n${USAGE}`);
  const outtype = stringFlag(args, 'outtype') ?? 'f32';
  // A checkpoint does not say how the base was stored: like alpha and dropout, the flag train had.
  const baseQuantization = args.flags['no-quantize'] === true ? 'none' : 'nf4';
  if (outtype !== 'f32' && outtype !== 'f16') throw new CliInputError(`--outtype must be f32 or f16, got "${outtype}"`);

  const files = baseFiles(model, io);
  const baseConfig = await readJson(() => files.read('config.json'), joinPath(files.label, 'config.json'));
  const base: BaseModelName = files.preset ? baseModelName({ kind: 'bundled', name: files.preset.name }) : baseModelName({ kind: 'folder', folderName: model, config: baseConfig });
  const revision = stringFlag(args, 'revision') ?? (files.preset ? (files.preset.model.kind === 'url' ? (files.preset.model.revision ?? null) : null) : await folderCommit(io, model));

  let input: ExportInput;
  if (adapterDir) {
    const configText = new TextDecoder().decode(await io.readFile(joinPath(adapterDir, 'adapter_config.json')));
    const modelBytes = await io.readFile(joinPath(adapterDir, 'adapter_model.safetensors'));
    input = { adapterConfig: configText, tensors: new SafetensorsFile(modelBytes, joinPath(adapterDir, 'adapter_model.safetensors')), adapterModel: modelBytes, baseConfig, base, revision, card: { training: { baseQuantization } } };
  } else {
    const { snapshot } = await latestCheckpoint(args, io);
    const tensorData: LoraTensorData[] = snapshot.lora.map((l) => ({ key: l.key, shape: l.shape, data: l.data }));
    const first = tensorData.find((t) => t.key.endsWith('.lora_A.weight'));
    if (!first) throw new CliInputError('the checkpoint holds no LoRA tensors');
    const settings = {
      r: first.shape[0],
      alpha: numberFlag(args, 'alpha', files.preset?.settings.alpha ?? 16, (n) => n > 0),
      dropout: numberFlag(args, 'dropout', files.preset?.settings.dropout ?? 0.05, (n) => n >= 0 && n < 1),
      targetModules: targetModuleNames(tensorData.map((t) => t.key)),
    };
    const s = snapshot.settings;
    const last = snapshot.history[snapshot.history.length - 1];
    const lastEval = snapshot.evals[snapshot.evals.length - 1];
    input = {
      adapterConfig: peftAdapterConfig(settings, settings.targetModules, base.name, revision),
      tensors: tensorsInMemory(tensorData),
      tensorData,
      baseConfig,
      base,
      revision,
      card: {
        training: { baseQuantization, learningRate: s.lr, schedule: s.schedule.name, warmupRatio: s.schedule.warmupRatio, epochs: s.epochs, steps: snapshot.totalSteps, gradAccumulation: s.gradAccum, seed: s.seed, weightDecay: s.weightDecay, maxGradNorm: s.maxGradNorm },
        results: { finalTrainLoss: last?.loss ?? null, finalEvalLoss: lastEval?.loss ?? null, steps: snapshot.step },
      },
    };
  }
  const dataPath = stringFlag(args, 'data');
  if (dataPath) {
    const bytes = await io.readFile(dataPath);
    const name = dataPath.split(/[\\/]/).pop() ?? dataPath;
    input.card = { ...input.card, data: { name, fingerprint: `crc32:${crc32(bytes).toString(16).padStart(8, '0')}`, template: stringFlag(args, 'template') ?? stringFlag(args, 'map') ?? files.preset?.template } };
  }

  let written;
  if (format === 'merged') {
    written = await writeExportFiles(out, await mergedExport(args, files, baseConfig, input, io), io);
  } else if (format === 'peft') {
    written = await writeExportFiles(out, peftExport(input), io);
  } else {
    const refusals = ggufRefusals(input.adapterConfig, input.tensors, baseConfig);
    if (refusals.length) throw new CliInputError(`llama.cpp cannot load this adapter:\n- ${refusals.join('\n- ')}`);
    let tokenizer: Promise<TextTokenizer> | null = null;
    const getTokenizer = () => (tokenizer ??= loadTokenizer(args, files, io));
    const promptFmt = await promptFormat(args, files, getTokenizer);
    const eosToken = (await getTokenizer()).eosToken;
    written = await writeExportFiles(out, ggufExport(input, { prompt: { format: promptFmt, eosToken }, tensorType: outtype === 'f16' ? 'F16' : 'F32' }), io);
  }
  return { exitCode: 0, result: { ok: true, format, out, base_model: base.name, revision, files: written } };
};
