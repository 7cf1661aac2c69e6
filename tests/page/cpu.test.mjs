// The playground's CPU fallback: Chromium without WebGPU, the engine's CPU executor compiled to wasm.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PAGE_URL, launch } from './harness.mjs';
import { playgroundTests } from './playground.mjs';

playgroundTests('cpu');

test('cpu: the browser benchmark page measures every configuration and refuses bad parameters', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const page = await browser.newPage();
    await page.goto(`${PAGE_URL}bench.html?backends=cpu&steps=1&batch=1&seq=16`);
    await page.waitForFunction(() => document.body.dataset.bench, null, { timeout: 120000 });
    const { results } = JSON.parse(await page.textContent('[data-testid=bench-json]'));
    assert.deepEqual(results.map((r) => `${r.backend} ${r.method} ${r.format}`), ['cpu lora fp32', 'cpu qlora nf4', 'cpu full fp32']);
    for (const r of results) assert.ok(r.ms_per_step > 0 && Math.abs(r.tokens_per_s - 16000 / r.ms_per_step) < 1e-6, JSON.stringify(r));
    await page.goto(`${PAGE_URL}bench.html?steps=0`);
    await page.waitForFunction(() => document.body.dataset.bench === 'failed');
    assert.match(await page.textContent('[data-testid=error]'), /steps must be a whole number from 1 to 1000/);
  } finally {
    await browser.close();
  }
});
