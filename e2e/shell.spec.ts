import { test, expect } from '@playwright/test';

test('the studio opens and shows the WebGPU adapter', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'QLoRA Studio' })).toBeVisible();
  await expect(page.getByTestId('engine-status')).toHaveText('ready');
  await expect(page.getByTestId('adapter-name')).toContainText(/\S+ · \S+/);
  await page.screenshot({ path: 'e2e/artifacts/shell.png', fullPage: true });
});

test('a browser without WebGPU gets a page that says what to enable', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(navigator, 'gpu', { value: undefined, configurable: true });
    // Workers have their own navigator: remove gpu there too.
    const NativeWorker = window.Worker;
    window.Worker = class extends NativeWorker {
      constructor(url: string | URL, options?: WorkerOptions) {
        const shim = `Object.defineProperty(self.navigator, 'gpu', { value: undefined }); await import(${JSON.stringify(new URL(url, location.href).href)});`;
        super(URL.createObjectURL(new Blob([shim], { type: 'text/javascript' })), { ...options, type: 'module' });
      }
    } as typeof Worker;
  });
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'QLoRA Studio needs WebGPU' })).toBeVisible();
  await expect(page.getByRole('alert')).toContainText('WebGPU is not available');
});
