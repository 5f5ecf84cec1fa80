/**
 * The access token on the page: a gated hub model (the hub played by a route on huggingface.co)
 * answers 401 with what to do until the token is pasted, then the gauge answers; the token goes
 * only to huggingface.co; ticked, it survives a reload; Forget removes it from this browser.
 */
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';

const TOKEN = 'hf_e2eGatedToken42';
const REPO = 'meta-llama/Llama-3.2-1B-Instruct';

test('a gated hub model needs the token; the token is remembered only when ticked and forgotten on request', async ({ page, context, baseURL }) => {
  const authorized: string[] = [];
  context.on('request', (req) => {
    if (req.headers().authorization) authorized.push(req.url());
  });
  await context.route('https://huggingface.co/**', (route) => {
    const cors = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': 'Authorization, Range', 'Access-Control-Allow-Methods': 'GET, HEAD' };
    if (route.request().method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
    if (route.request().headers().authorization !== `Bearer ${TOKEN}`) return route.fulfill({ status: 401, headers: cors, body: 'gated' });
    return route.fulfill({ status: 200, headers: { ...cors, 'Content-Type': 'application/json' }, body: readFileSync('public/demo/model/config.json', 'utf8') });
  });
  await page.goto('/');
  await expect(page.getByTestId('engine-status')).toHaveText('ready');
  await expect(page.getByLabel('Preset')).toHaveValue('demo');

  await page.getByLabel('Hub model id').fill(REPO);
  await page.getByRole('button', { name: 'Use', exact: true }).click();
  const problem = page.getByTestId('section-model').getByRole('alert');
  await expect(problem).toContainText('The hub refused access');
  await expect(problem).toContainText(`https://huggingface.co/${REPO}`);
  await expect(problem).toContainText('Access token field of the Model section');

  const field = page.getByLabel('Access token', { exact: true });
  await expect(field).toHaveAttribute('type', 'password');
  await field.fill(TOKEN);
  await expect(page.getByTestId('verdict')).toHaveText(/Fits on this GPU|Does not fit on this GPU|Fits only with/);
  await expect(problem).toHaveCount(0);
  expect(authorized.length).toBeGreaterThan(0);
  expect(authorized.every((url) => url.startsWith('https://huggingface.co/'))).toBe(true);
  // Not remembered unless ticked.
  expect(await page.evaluate(() => localStorage.getItem('qlora-studio:hub-token'))).toBeNull();

  await page.getByLabel('Remember the access token in this browser').check();
  expect(await page.evaluate(() => localStorage.getItem('qlora-studio:hub-token'))).toBe(TOKEN);
  await page.reload();
  await expect(page.getByTestId('engine-status')).toHaveText('ready');
  await expect(page.getByLabel('Access token', { exact: true })).toHaveValue(TOKEN);
  await expect(page.getByLabel('Remember the access token in this browser')).toBeChecked();

  await page.getByRole('button', { name: 'Forget token' }).click();
  await expect(page.getByLabel('Access token', { exact: true })).toHaveValue('');
  expect(await page.evaluate(() => localStorage.getItem('qlora-studio:hub-token'))).toBeNull();
  expect(baseURL).toBeTruthy();
});
