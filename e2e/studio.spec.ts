/**
 * The studio as a person uses it, on the built-in demo preset, in headless Chromium with
 * WebGPU: sections, dataset drop (and a malformed one), settings validation, training with a
 * live chart and samples, resume after a reload, and the downloaded PEFT adapter.
 */
import { test, expect, type Page, type BrowserContext } from '@playwright/test';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { strFromU8, unzipSync } from 'fflate';

const DEMO_DATA = 'public/demo/data/ds1000-demo.jsonl';
const ART = 'e2e/artifacts';

/** Every request must stay on the page's own origin (workers included). */
function watchOrigins(context: BrowserContext, origin: string): string[] {
  const foreign: string[] = [];
  context.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(origin) && !url.startsWith('blob:') && !url.startsWith('data:')) foreign.push(url);
  });
  return foreign;
}

/** Drops a file on the "Dataset" drop zone the way a browser does (dragenter, dragover, drop). */
async function dropDataset(page: Page, name: string, content: string): Promise<void> {
  const transfer = await page.evaluateHandle(
    ([fileName, text]) => {
      const dt = new DataTransfer();
      dt.items.add(new File([text], fileName));
      return dt;
    },
    [name, content] as const,
  );
  const zone = page.getByRole('region', { name: 'Dataset', exact: true });
  for (const type of ['dragenter', 'dragover', 'drop']) await zone.dispatchEvent(type, { dataTransfer: transfer });
}

async function openStudio(page: Page): Promise<void> {
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'QLoRA Studio', exact: true })).toBeVisible();
  await expect(page.getByTestId('engine-status')).toHaveText('ready');
  await expect(page.getByLabel('Preset')).toHaveValue('demo');
}

test('sections, presets, a malformed dataset named by line, settings explained inline', async ({ page, context, baseURL }) => {
  const foreign = watchOrigins(context, baseURL!);
  await openStudio(page);
  for (const name of ['Model', 'Data', 'Settings', 'Train', 'Chat', 'Export']) {
    await expect(page.getByRole('region', { name: new RegExp(`^\\d ${name}$`) })).toBeVisible();
  }
  const preset = page.getByLabel('Preset');
  // Every family's presets, the offline demo first; the gauge answers for each before anything downloads.
  const targets: Record<string, number> = {
    'phi-1_5': 6,
    'falcon-7b': 4,
    'Qwen2.5-0.5B-Instruct': 7,
    'Qwen2.5-1.5B-Instruct': 7,
    'SmolLM2-360M-Instruct': 7,
    'TinyLlama-1.1B-Chat-v1.0': 7,
    'Llama-3.2-1B-Instruct': 7,
    'Phi-3-mini-4k-instruct': 4,
  };
  await expect(preset.locator('option')).toHaveText(['demo', ...Object.keys(targets)]);
  for (const [name, count] of Object.entries(targets)) {
    await preset.selectOption(name);
    await expect(page.getByTestId('verdict')).toHaveText(/Fits on this GPU|Does not fit on this GPU|Fits only with/);
    await expect(page.getByRole('group', { name: 'Target modules' }).getByRole('checkbox')).toHaveCount(count);
    await page.getByTestId('section-model').screenshot({ path: `${ART}/model-${name}.png` });
  }
  await preset.selectOption('demo');
  await expect(page.getByLabel('Rank (r)')).toHaveValue('16');

  // A JSONL file whose third line is broken: the error names the file and line 3.
  const broken = ['{"prompt": "a", "reference_code": "b", "metadata": {"library": "Pandas"}}', '{"prompt": "c", "reference_code": "d", "metadata": {"library": "Pandas"}}', '{"prompt": "e", "reference_code": '].join('\n');
  await dropDataset(page, 'broken.jsonl', broken);
  const error = page.getByTestId('data-error');
  await expect(error).toContainText('broken.jsonl');
  await expect(error).toContainText('line 3');
  await page.getByRole('region', { name: '2 Data' }).screenshot({ path: `${ART}/data-error.png` });

  // The demo dataset replaces it: rows, split, the masked preview and the histogram appear.
  await dropDataset(page, 'ds1000-demo.jsonl', readFileSync(DEMO_DATA, 'utf8'));
  await expect(page.getByTestId('data-error')).toHaveCount(0);
  await expect(page.getByTestId('split')).toContainText(/\d+ for training, \d+ held out for validation/);
  await expect(page.getByTestId('preview-masked')).not.toBeEmpty();
  await expect(page.getByTestId('preview-learned')).not.toBeEmpty();
  await expect(page.getByRole('figure', { name: 'Token lengths' })).toBeVisible();

  // An invalid value is explained next to its field, and Train waits for a fix.
  const rank = page.getByLabel('Rank (r)');
  await rank.fill('0');
  await expect(page.getByText('Rank must be a whole number of at least 1.')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Train', exact: true })).toBeDisabled();
  await rank.fill('8');
  await expect(page.getByText('Rank must be a whole number of at least 1.')).toHaveCount(0);
  await expect(page.getByTestId('accumulation-help')).toContainText('total number of learned (label) tokens');

  for (const id of ['model', 'data', 'settings', 'train', 'chat', 'export']) {
    await page.getByTestId(`section-${id}`).screenshot({ path: `${ART}/section-${id}.png` });
  }

  // A model folder from this computer: planned, then loaded and quantized in the worker.
  const folder = `${ART}/local-model`;
  mkdirSync(folder, { recursive: true });
  for (const f of ['model/config.json', 'model/model.safetensors', 'tokenizer/tokenizer.json', 'tokenizer/tokenizer_config.json']) {
    copyFileSync(`public/demo/${f}`, `${folder}/${f.split('/')[1]}`);
  }
  await page.getByLabel('Model folder').setInputFiles(folder);
  await expect(page.getByTestId('verdict')).toHaveText('Fits on this GPU');
  await page.getByRole('button', { name: 'Load model' }).click();
  await expect(page.getByTestId('model-loaded')).toContainText('local-model: llama, 4 layers');
  await expect(page.getByTestId('progress-quantize')).toContainText('done');
  expect(foreign).toEqual([]);
});

test('train on the demo preset, reload mid-run, resume from the checkpoint, download a PEFT adapter', async ({ page, context, baseURL }) => {
  test.setTimeout(1_200_000);
  const foreign = watchOrigins(context, baseURL!);
  const t0 = Date.now();
  const mark = (what: string) => console.log(`[studio e2e] ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await openStudio(page);
  await page.getByLabel('Preset').selectOption('demo');
  await dropDataset(page, 'ds1000-demo.jsonl', readFileSync(DEMO_DATA, 'utf8'));
  await expect(page.getByTestId('split')).toBeVisible();

  // A short run: few steps, eval/sample/checkpoint often, so SwiftShader gets through it.
  const TOTAL = 10;
  await page.getByLabel('Max steps').fill(String(TOTAL));
  await page.getByLabel('Gradient accumulation').fill('1');
  await page.getByLabel('Evaluate every').fill('4');
  await page.getByLabel('Sample every').fill('4');
  await page.getByLabel('Checkpoint every').fill('2');
  await page.getByRole('button', { name: 'Train', exact: true }).click();
  mark('Train pressed');
  await expect(page.getByTestId('train-state')).toContainText('Training', { timeout: 120_000 });
  mark('training started');

  const chart = page.getByTestId('loss-chart');
  await expect(page.getByTestId('train-step')).toContainText(/^[4-9]|^10/, { timeout: 300_000 });
  mark('step 4 reached');
  expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(4);
  // Sampling after the evaluation is slow on SwiftShader (about 0.6 s a token here).
  await expect(page.getByTestId('sample').first()).toContainText(/step \d+/, { timeout: 240_000 });
  await page.getByTestId('section-train').screenshot({ path: `${ART}/train-running.png` });

  // The quantized demo model is now in this browser's cache.
  await expect(page.getByTestId('section-model').getByText(/studio\/demo@sha256-[0-9a-f]{12}/)).toHaveCount(1);

  // Reload mid-run: the banner offers the last checkpoint; Resume continues from that step.
  const modelFetches: string[] = [];
  context.on('request', (req) => {
    if (req.url().includes('/demo/model/')) modelFetches.push(req.url());
  });
  await page.reload();
  await expect(page.getByTestId('engine-status')).toHaveText('ready');
  const banner = page.getByTestId('resume-banner');
  await expect(banner).toBeVisible();
  const savedStep = Number(await banner.locator('b').first().textContent());
  expect(savedStep).toBeGreaterThanOrEqual(2);
  expect(savedStep % 2).toBe(0);
  mark(`reloaded; checkpoint at step ${savedStep}`);
  await page.screenshot({ path: `${ART}/resume-banner.png` });
  await banner.getByRole('button', { name: /^Resume/ }).click();
  // The curve is redrawn up to the checkpoint, and training goes on from the step after it.
  await expect(page.getByTestId('train-step')).toContainText(new RegExp(`^(${savedStep}|${savedStep + 1}) of ${TOTAL}`), { timeout: 300_000 });
  // The resumed run's model came from the cache: not one request for the model files.
  expect(modelFetches).toEqual([]);

  // Pause saves a checkpoint and holds; Resume goes on.
  await expect(page.getByTestId('train-step')).toContainText(new RegExp(`^(${savedStep + 1}|${savedStep + 2}|${savedStep + 3}) of`), { timeout: 300_000 });
  await page.getByRole('button', { name: 'Pause', exact: true }).click();
  await expect(page.getByTestId('train-state')).toContainText('Paused', { timeout: 300_000 });
  const pausedAt = await page.getByTestId('train-step').textContent();
  mark(`paused at ${pausedAt}`);
  await page.getByRole('button', { name: 'Resume', exact: true }).click();
  await expect(page.getByTestId('train-state')).toContainText(/Training|Finished/);
  await expect(page.getByTestId('train-state')).toContainText('Finished', { timeout: 600_000 });
  mark('run finished');
  await expect(page.getByTestId('train-step')).toContainText(`${TOTAL} of ${TOTAL}`);
  expect(Number(await chart.getAttribute('data-points'))).toBe(TOTAL);
  // The loss falls: the mean of the last three steps is below the mean of the first three.
  const losses: number[] = JSON.parse((await chart.getAttribute('data-losses'))!);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  expect(mean(losses.slice(-3))).toBeLessThan(mean(losses.slice(0, 3)));
  await expect(page.getByTestId('val-loss')).not.toHaveText('–');
  await page.getByTestId('section-train').screenshot({ path: `${ART}/train-finished.png` });

  // Download adapter: one zip with PEFT's files, checked against the demo model's config.
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Download adapter' }).click();
  const zipPath = `${ART}/adapter.zip`;
  await (await download).saveAs(zipPath);
  mark('adapter downloaded');
  const files = unzipSync(new Uint8Array(readFileSync(zipPath)));
  expect(Object.keys(files).sort()).toEqual(['README.md', 'adapter_config.json', 'adapter_model.safetensors']);
  const config = JSON.parse(strFromU8(files['adapter_config.json']));
  const settings = { r: 16, alpha: 32, dropout: 0.05, targets: ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'] };
  expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: settings.r, lora_alpha: settings.alpha, lora_dropout: settings.dropout, bias: 'none' });
  expect([...config.target_modules].sort()).toEqual(settings.targets);
  // The demo is no hub repo: the adapter names it by its preset name (the card says the base is local).
  expect(config.base_model_name_or_path).toBe('demo');
  const model = JSON.parse(readFileSync('public/demo/model/config.json', 'utf8'));
  const tensors = safetensorsHeader(files['adapter_model.safetensors']);
  const h = model.hidden_size;
  const inter = model.intermediate_size;
  const kv = (h / model.num_attention_heads) * model.num_key_value_heads;
  const shapes: Record<string, [number, number]> = { q_proj: [h, h], k_proj: [h, kv], v_proj: [h, kv], o_proj: [h, h], gate_proj: [h, inter], up_proj: [h, inter], down_proj: [inter, h] };
  const paths: Record<string, string> = {
    q_proj: 'self_attn.q_proj', k_proj: 'self_attn.k_proj', v_proj: 'self_attn.v_proj', o_proj: 'self_attn.o_proj',
    gate_proj: 'mlp.gate_proj', up_proj: 'mlp.up_proj', down_proj: 'mlp.down_proj',
  };
  const expected: Record<string, number[]> = {};
  for (let layer = 0; layer < model.num_hidden_layers; layer++) {
    for (const [name, [inF, outF]] of Object.entries(shapes)) {
      const prefix = `base_model.model.model.layers.${layer}.${paths[name]}`;
      expected[`${prefix}.lora_A.weight`] = [settings.r, inF];
      expected[`${prefix}.lora_B.weight`] = [outF, settings.r];
    }
  }
  expect(Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.shape]))).toEqual(expected);
  for (const t of Object.values(tensors)) expect(t.dtype).toBe('F32');
  const card = strFromU8(files['README.md']);
  expect(card).toMatch(/^---\n/);
  expect(card).toContain('library_name: peft');
  expect(card).toContain('final training loss');
  expect(card).toContain(`- optimizer steps: ${TOTAL}`);

  // GGUF: the files and their sizes before writing, then the same files in a streamed zip.
  await page.getByRole('radio', { name: /GGUF LoRA adapter/ }).check();
  const plan = page.getByTestId('export-plan');
  await expect(plan).toContainText('adapter.gguf');
  await expect(plan).toContainText('Modelfile');
  const ggufDownload = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Download as zip' }).click();
  const ggufZip = `${ART}/qlora-gguf.zip`;
  await (await ggufDownload).saveAs(ggufZip);
  const gguf = unzipSync(new Uint8Array(readFileSync(ggufZip)));
  expect(Object.keys(gguf).sort()).toEqual(['Modelfile', 'README.md', 'adapter.gguf']);
  expect(strFromU8(gguf['adapter.gguf'].subarray(0, 4))).toBe('GGUF');
  expect(strFromU8(gguf['Modelfile'])).toContain('ADAPTER ./adapter.gguf');
  mark('gguf adapter downloaded');

  // Chat: the base model and the adapter answer side by side, streamed.
  await page.getByLabel('Prompt', { exact: true }).fill('import numpy as np');
  await page.getByLabel('Max tokens').fill('8');
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByTestId('chat-base')).not.toBeEmpty({ timeout: 120_000 });
  await expect(page.getByTestId('chat-adapter')).not.toBeEmpty({ timeout: 120_000 });
  await expect(page.getByRole('button', { name: 'Generate' })).toBeEnabled({ timeout: 120_000 });
  mark('chat answered');

  // Import the adapter just downloaded: the page reads its PEFT config back.
  const dir = `${ART}/adapter`;
  mkdirSync(dir, { recursive: true });
  for (const name of ['adapter_config.json', 'adapter_model.safetensors']) writeFileSync(`${dir}/${name}`, files[name]);
  await page.getByLabel('Import adapter').setInputFiles([`${dir}/adapter_config.json`, `${dir}/adapter_model.safetensors`]);
  await expect(page.getByTestId('imported-adapter')).toContainText(`r ${settings.r}, alpha ${settings.alpha}, ${Object.keys(expected).length} tensors`);

  for (const id of ['model', 'data', 'settings', 'train', 'chat', 'export']) {
    await page.getByTestId(`section-${id}`).screenshot({ path: `${ART}/trained-section-${id}.png` });
  }
  // The README's picture: the Train section after the run.
  await page.setViewportSize({ width: 1280, height: 1000 });
  await page.getByTestId('section-train').scrollIntoViewIfNeeded();
  await page.getByTestId('section-train').evaluate((el) => el.scrollIntoView());
  await expect(page.getByRole('button', { name: 'Train', exact: true })).toBeInViewport();
  await page.screenshot({ path: 'docs/studio.png' });
  expect(foreign).toEqual([]);
  mark('done');
});

/** The JSON header of a safetensors file: tensor name → dtype and shape. */
function safetensorsHeader(bytes: Uint8Array): Record<string, { dtype: string; shape: number[] }> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(strFromU8(bytes.subarray(8, 8 + n)));
  delete header.__metadata__;
  return header;
}
