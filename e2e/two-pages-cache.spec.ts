/**
 * Two pages of the studio in one browser load the same model at the same moment (the built-in
 * demo, whose copy the cache keeps under the hash of its files): both end with the model
 * loaded, the browser holds one complete copy, and a third load takes it from the cache with
 * no model file downloaded.
 */
import { test, expect, type Page } from '@playwright/test';

async function openStudio(page: Page): Promise<void> {
  await page.goto('/');
  await expect(page.getByTestId('engine-status')).toHaveText('ready');
  await expect(page.getByLabel('Preset')).toHaveValue('demo');
  await expect(page.getByTestId('verdict')).toHaveText(/Fits on this GPU/);
}

test('two pages load the same model at once and both leave one complete cached copy', async ({ context }) => {
  const a = await context.newPage();
  const b = await context.newPage();
  await Promise.all([openStudio(a), openStudio(b)]);
  const weights: string[] = [];
  context.on('request', (req) => {
    if (req.url().includes('/demo/model/') && req.url().endsWith('.safetensors')) weights.push(req.url());
  });

  await Promise.all([a.getByRole('button', { name: 'Load model' }).click(), b.getByRole('button', { name: 'Load model' }).click()]);
  for (const page of [a, b]) {
    await expect(page.getByTestId('model-loaded')).toContainText('Loaded', { timeout: 240_000 });
    await expect(page.getByTestId('section-model').getByRole('alert')).toHaveCount(0);
  }
  expect(weights.length).toBeGreaterThan(0);

  // One copy, listed in both pages.
  for (const page of [a, b]) {
    await page.reload();
    await expect(page.getByTestId('engine-status')).toHaveText('ready');
    await expect(page.getByText(/Models stored in this browser \(1\)/)).toBeVisible();
  }

  // And it is whole: a third load reads it from the cache, downloading no model file.
  weights.length = 0;
  await a.getByRole('button', { name: 'Load model' }).click();
  await expect(a.getByTestId('model-loaded')).toContainText('from this browser’s cache', { timeout: 240_000 });
  expect(weights).toEqual([]);
});
