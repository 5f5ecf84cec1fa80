/**
 * The studio as a person uses it, on the built-in demo preset, in headless Chromium with
 * WebGPU: sections, dataset drop (and a malformed one), settings validation, training with a
 * live chart and samples, resume after a reload, and the downloaded PEFT adapter.
 */
import { test, expect, type Page, type BrowserContext } from '@playwright/test';
import { readFileSync } from 'node:fs';

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
  await expect(preset.locator('option')).toHaveText(['demo', 'phi-1_5', 'falcon-7b']);

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
  expect(foreign).toEqual([]);
});
