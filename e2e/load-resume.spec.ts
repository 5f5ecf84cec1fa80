/**
 * A model download that loses the connection half-way: the page says the download stopped and
 * offers Resume; when the browser is back online it resumes by itself, and the tensors that had
 * finished are not downloaded again (the demo model, its weights cut after a few ranges).
 */
import { test, expect } from '@playwright/test';

test('a failed load shows Resume and resumes when the connection returns, keeping what finished', async ({ page, context }) => {
  await page.goto('/');
  await expect(page.getByTestId('engine-status')).toHaveText('ready');
  await expect(page.getByLabel('Preset')).toHaveValue('demo');
  await expect(page.getByTestId('verdict')).toHaveText(/Fits on this GPU/);

  const served: string[] = [];
  const refused: string[] = [];
  let cutAfter = 5;
  await context.route('**/demo/model/*.safetensors', async (route) => {
    const range = route.request().headers().range ?? 'whole file';
    if (served.length >= cutAfter) {
      refused.push(range);
      return route.abort('internetdisconnected');
    }
    served.push(range);
    return route.continue();
  });

  await page.getByRole('button', { name: 'Load model' }).click();
  await expect.poll(() => refused.length, { timeout: 60_000 }).toBeGreaterThan(0);
  await context.setOffline(true);
  const notice = page.getByTestId('load-interrupted');
  await expect(notice).toBeVisible({ timeout: 120_000 });
  await expect(notice).toContainText('The model download stopped');
  await expect(notice.getByRole('button', { name: 'Resume download' })).toBeVisible();
  await expect(page.getByTestId('model-loaded')).toHaveCount(0);
  const before = [...served];
  console.log(`load-resume: ${before.length} ranges served before the cut: ${before.join(' | ')}`);

  // Back online: the load resumes by itself and completes; what had finished is not fetched again.
  cutAfter = Infinity;
  await context.setOffline(false);
  await expect(page.getByTestId('model-loaded')).toContainText('Loaded', { timeout: 120_000 });
  await expect(notice).toHaveCount(0);
  const after = served.slice(before.length);
  console.log(`load-resume: ${after.length} ranges after resuming: ${after.join(' | ')}`);
  expect(after.length).toBeGreaterThan(0);
  // The file's size and header are read again; the tensors that finished before the cut are not.
  const finished = before.filter((r) => !r.startsWith('bytes=0-'));
  expect(finished.length).toBeGreaterThan(0);
  expect(after.filter((r) => finished.includes(r))).toEqual([]);
});
