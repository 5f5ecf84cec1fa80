/** What the page's controls do: engine calls through comlink, results into the store. */
import { engine, engineReady, onEngineCrash, Comlink } from './engine-client';
import { useStudio, type ModelChoice } from './store';
import { explain } from './explain';
import { forgetRememberedToken, rememberToken, rememberedToken } from './hub-token';
import { validateRunSettings } from '../workers/run/settings';
import type { ColumnMapping, EngineEvent, ExportFormat, LoadOptions, ModelCardFacts, ModelSource, Section, RunSettings } from '../workers/protocol';
import { canWriteFolders, folderTarget, zipTarget, ZIP_LIMIT_BYTES, type ExportTarget } from './export-writer';

const get = () => useStudio.getState();
const set = (patch: Partial<ReturnType<typeof get>>) => useStudio.setState(patch);

function fail(section: Section, err: unknown): void {
  get().setError(section, explain(err));
}

export function modelSource(choice: ModelChoice = get().model): ModelSource {
  if (choice.kind === 'preset') return { kind: 'preset', name: choice.name };
  if (choice.kind === 'hub') return { kind: 'hub', id: choice.id };
  return { kind: 'local', files: choice.files };
}

/** How the engine loads the base: the page's choice of storage, and whether to load regardless of the plan. */
function loadOptions(anyway = false): LoadOptions {
  return { anyway, quantize: get().quantizeBase };
}

/** Quantize the base to NF4 (QLoRA) or keep it unquantized (plain LoRA): the gauge is asked again, the next load uses it. */
export async function setQuantizeBase(quantize: boolean): Promise<void> {
  set({ quantizeBase: quantize, modelInfo: null });
  get().setError('model', null);
  await replan();
}

let booting: Promise<void> | null = null;

/** Start the engine once (React's StrictMode mounts effects twice in development). */
export function boot(): Promise<void> {
  booting ??= start();
  return booting;
}

async function start(): Promise<void> {
  const { setInit, onEvent } = get();
  resumeWhenOnline();
  onEngineCrash((message) =>
    set({ problem: `The engine stopped: ${message}. Reload the page; an interrupted run resumes from its last checkpoint.` }),
  );
  let init;
  try {
    await engineReady();
    init = await engine().init(
      Comlink.proxy((event: EngineEvent) => {
        onEvent(event);
        // Another tab opened or closed a run: the resume banner follows.
        if (event.type === 'runs-changed') void checkResumable();
      }),
    );
  } catch (err) {
    setInit('no-webgpu', null, `The engine could not start: ${(err as Error).message}`);
    return;
  }
  setInit(init.status, init.adapter, init.problem);
  if (init.status !== 'ready') return;
  // A token remembered in this browser reaches the engine before anything is read from the hub.
  const remembered = rememberedToken();
  if (remembered) {
    set({ hubToken: remembered, rememberToken: true });
    await sendToken(remembered);
  }
  try {
    const presets = await engine().presets();
    set({ presets });
    const demo = presets.find((p) => p.name === 'demo') ?? presets[0];
    if (demo) set({ settings: { ...demo.defaults } });
  } catch (err) {
    fail('model', err);
  }
  await Promise.all([replan(), refreshStorage(), checkResumable()]);
}

export async function chooseModel(choice: ModelChoice): Promise<void> {
  const preset = choice.kind === 'preset' ? get().presets.find((p) => p.name === choice.name) : undefined;
  set({ model: choice, plan: null, modelInfo: null });
  get().setError('model', null);
  if (preset) set({ settings: { ...preset.defaults } });
  await replan();
}

async function sendToken(token: string): Promise<void> {
  try {
    await engine().setHubToken(token.trim() || null);
  } catch (err) {
    fail('model', err);
  }
}

let tokenReplanTimer: ReturnType<typeof setTimeout> | undefined;
/** A new token: the engine uses it from the next hub request; a hub model's gauge is asked again once typing stops. */
export async function setHubToken(token: string): Promise<void> {
  set({ hubToken: token });
  if (get().rememberToken) rememberToken(token.trim());
  get().setError('model', null);
  await sendToken(token);
  clearTimeout(tokenReplanTimer);
  if (get().model.kind === 'hub') tokenReplanTimer = setTimeout(() => void replan(), 500);
}

/** Remember the token in this browser (localStorage), or stop remembering it (removed from there). */
export function setRememberToken(remember: boolean): void {
  set({ rememberToken: remember });
  if (remember) rememberToken(get().hubToken.trim());
  else forgetRememberedToken();
}

/** Forget the token: out of the field, the engine and this browser's storage. */
export async function forgetHubToken(): Promise<void> {
  set({ hubToken: '', rememberToken: false });
  forgetRememberedToken();
  await sendToken('');
}

let planSeq = 0;
export async function replan(): Promise<void> {
  const { settings, model } = get();
  // Invalid values are explained next to their fields; the engine would only refuse them.
  if (!settings || validateRunSettings(settings).length) return;
  const seq = ++planSeq;
  try {
    const plan = await engine().plan(modelSource(model), settings, loadOptions());
    if (seq === planSeq) set({ plan });
  } catch (err) {
    if (seq === planSeq) {
      set({ plan: null });
      fail('model', err);
    }
  }
}

/** `anyway`: load even when the memory planner predicts it does not fit (the "Load anyway" button). */
export async function loadModel(anyway = false): Promise<void> {
  const settings = get().settings;
  if (!settings) return;
  get().setError('model', null);
  set({ interruptedLoad: null, loadingFor: 'model' });
  try {
    const modelInfo = await engine().loadModel(modelSource(), settings, loadOptions(anyway));
    set({ modelInfo });
    await refreshStorage();
  } catch (err) {
    fail('model', err);
  } finally {
    set({ loadingFor: null });
  }
}

/** Runs the interrupted load again: what it kept is read from the cache, the rest downloads. */
export async function resumeLoad(): Promise<void> {
  const interrupted = get().interruptedLoad;
  if (!interrupted) return;
  set({ interruptedLoad: null });
  await (interrupted.action === 'train' ? startTraining() : loadModel());
}

/** The connection came back: an interrupted load resumes by itself. */
function resumeWhenOnline(): void {
  if (typeof window === 'undefined') return;
  window.addEventListener('online', () => {
    if (get().interruptedLoad && !get().loadingFor) void resumeLoad();
  });
}

export async function refreshStorage(): Promise<void> {
  try {
    const [cached, storage] = await Promise.all([engine().cachedModels(), engine().storage()]);
    set({ cached, storage });
  } catch (err) {
    fail('model', err);
  }
}

export async function deleteCached(key: string): Promise<void> {
  try {
    await engine().deleteCachedModel(key);
  } catch (err) {
    fail('model', err);
  }
  await refreshStorage();
}

export function updateSettings(patch: Partial<RunSettings>): void {
  const settings = get().settings;
  if (!settings) return;
  set({ settings: { ...settings, ...patch } });
  if ('seqLength' in patch || 'batchSize' in patch || 'rank' in patch || 'targetModules' in patch) void replan();
  if ('seqLength' in patch || 'validationFraction' in patch || 'seed' in patch) retokenizeSoon();
}

let retokenizeTimer: ReturnType<typeof setTimeout> | undefined;
/** The preview, statistics and split follow the length, split fraction and seed as they are typed. */
function retokenizeSoon(): void {
  clearTimeout(retokenizeTimer);
  retokenizeTimer = setTimeout(() => {
    const { dataset, settings } = get();
    if (!dataset?.mapping || !settings) return;
    const ok = settings.seqLength >= 8 && Number.isInteger(settings.seqLength) && settings.validationFraction >= 0 && settings.validationFraction <= 0.5;
    if (ok) void remapDataset(dataset.mapping, dataset.template);
  }, 400);
}

export async function loadDataset(source: { file: File } | { hubId: string }): Promise<void> {
  const { settings, model } = get();
  if (!settings) return;
  const name = 'file' in source ? source.file.name : source.hubId;
  set({ datasetFile: name, dataBusy: true, dataError: null, dataset: null });
  get().setError('data', null);
  try {
    const result = await engine().loadDataset({
      source: 'file' in source ? { kind: 'file', file: source.file } : { kind: 'hub', id: source.hubId },
      template: templateFor(model),
      mapping: null,
      seqLength: settings.seqLength,
      validationFraction: settings.validationFraction,
      seed: settings.seed,
      model: modelSource(model),
    });
    if (result.ok) set({ dataset: result.summary });
    else set({ dataError: result.error });
  } catch (err) {
    set({ dataError: { file: name, line: null, column: null, message: explain(err).message } });
  } finally {
    set({ dataBusy: false });
  }
}

/** Re-map or re-split the loaded dataset; a template keeps its own layout. */
export async function remapDataset(mapping: ColumnMapping, template: string | null = null): Promise<void> {
  const { settings, model, datasetFile } = get();
  if (!settings || !datasetFile) return;
  set({ dataBusy: true, dataError: null });
  try {
    const result = await engine().loadDataset({
      source: null,
      template,
      mapping: template ? null : mapping,
      seqLength: settings.seqLength,
      validationFraction: settings.validationFraction,
      seed: settings.seed,
      model: modelSource(model),
    });
    if (result.ok) set({ dataset: result.summary });
    else set({ dataError: result.error });
  } catch (err) {
    set({ dataError: { file: datasetFile, line: null, column: null, message: explain(err).message } });
  } finally {
    set({ dataBusy: false });
  }
}

function templateFor(model: ModelChoice): string | null {
  if (model.kind !== 'preset') return null;
  return get().presets.find((p) => p.name === model.name)?.template ?? null;
}

/** `anyway`: train even when the memory planner predicts the model does not fit (the "Train anyway" button). */
export async function startTraining(anyway = false): Promise<void> {
  const { settings, model } = get();
  if (!settings) return;
  get().setError('train', null);
  set({ metrics: [], samples: [], resumable: null, interruptedLoad: null, loadingFor: 'train' });
  try {
    await engine().train(modelSource(model), settings, loadOptions(anyway));
    await refreshStorage();
  } catch (err) {
    fail('train', err);
  } finally {
    set({ loadingFor: null });
  }
}

export async function control(action: 'pause' | 'resume' | 'stop'): Promise<void> {
  try {
    await engine()[action]();
  } catch (err) {
    fail('train', err);
  }
}

export async function checkResumable(): Promise<void> {
  try {
    set({ resumable: await engine().resumable() });
  } catch (err) {
    fail('train', err);
  }
}

export async function resumeRun(): Promise<void> {
  const run = get().resumable;
  if (!run) return;
  get().setError('train', null);
  set({ resumable: null, metrics: [], samples: [] });
  try {
    await engine().resumeRun(run.runId);
  } catch (err) {
    set({ resumable: run });
    fail('train', err);
  }
}

export async function discardRun(): Promise<void> {
  const run = get().resumable;
  if (!run) return;
  set({ resumable: null });
  try {
    await engine().discardRun(run.runId);
  } catch (err) {
    fail('train', err);
  }
}

export async function generate(prompt: string, temperature: number, topP: number, maxTokens: number): Promise<void> {
  get().setError('chat', null);
  set({ chat: { base: '', adapter: '', running: true } });
  try {
    await engine().generate({ prompt, temperature, topP, maxTokens, streams: ['base', 'adapter'] });
  } catch (err) {
    fail('chat', err);
  } finally {
    set({ chat: { ...get().chat, running: false } });
  }
}

/** What the model card says about the run: the last losses the page saw, the steps, the data file. */
function cardFacts(): ModelCardFacts {
  const { metrics, train, datasetFile } = get();
  const lastLoss = [...metrics].reverse().find((m) => m.loss !== undefined)?.loss ?? null;
  const lastVal = [...metrics].reverse().find((m) => m.valLoss !== undefined)?.valLoss ?? null;
  return { finalTrainLoss: lastLoss, finalValidationLoss: lastVal, steps: train.step, dataset: datasetFile ?? 'unknown' };
}

const setExporting = (patch: Partial<ReturnType<typeof get>['exporting']>) => set({ exporting: { ...get().exporting, ...patch } });

/** Chooses an export format and asks the engine what it will write (files, sizes, llama.cpp's refusals). */
export async function planExport(format: ExportFormat = get().exporting.format): Promise<void> {
  get().setError('export', null);
  setExporting({ format, plan: null, planning: true, written: null });
  try {
    const plan = await engine().exportPlan(format, cardFacts());
    if (get().exporting.format === format) setExporting({ plan });
  } catch (err) {
    fail('export', err);
  } finally {
    setExporting({ planning: false });
  }
}

/** Writes the planned export: into a folder where the browser can, else as one streamed zip. */
export async function writeExport(into: 'folder' | 'zip'): Promise<void> {
  get().setError('export', null);
  const { format, plan } = get().exporting;
  if (!plan || plan.refusals.length) return;
  let target: ExportTarget | null;
  try {
    if (into === 'folder' && canWriteFolders()) {
      target = await folderTarget();
      if (!target) return;
    } else {
      if (plan.totalBytes > ZIP_LIMIT_BYTES) throw new Error(`This export is ${plan.totalBytes} bytes: more than a zip can hold. Write it to a folder instead (Chrome or Edge).`);
      target = zipTarget(`qlora-${format}.zip`);
    }
  } catch (err) {
    fail('export', err);
    return;
  }
  setExporting({ writing: true, written: null });
  try {
    await engine().exportWrite(format, cardFacts(), Comlink.proxy((chunk) => target.write(chunk)));
    await target.finish();
    setExporting({ written: target.kind === 'folder' ? `${plan.files.length} files written to the folder` : `qlora-${format}.zip downloaded` });
  } catch (err) {
    await target.abort().catch(() => {});
    fail('export', err);
  } finally {
    setExporting({ writing: false });
  }
}

export async function downloadAdapter(): Promise<void> {
  get().setError('export', null);
  try {
    const zip = await engine().exportAdapter(cardFacts());
    const url = URL.createObjectURL(new Blob([zip as Uint8Array<ArrayBuffer>], { type: 'application/zip' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = 'adapter.zip';
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    fail('export', err);
  }
}

/** A run bundle (folder or zip): Train offers to continue it, Chat uses its adapter. */
export async function importRun(files: File[]): Promise<void> {
  get().setError('export', null);
  try {
    const { run, adapter } = await engine().importRun(files);
    set({ resumable: run, imported: adapter });
  } catch (err) {
    fail('export', err);
  }
}

export async function importAdapter(files: File[]): Promise<void> {
  get().setError('export', null);
  try {
    set({ imported: await engine().importAdapter(files) });
  } catch (err) {
    fail('export', err);
  }
}
