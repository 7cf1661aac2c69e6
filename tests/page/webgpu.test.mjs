// The playground on WebGPU (headless Chromium on SwiftShader, headless Firefox on lavapipe: both emulate a GPU on
// the CPU).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launch, modelLoaded, open, text, webgpuLeftOut } from './harness.mjs';
import { playgroundTests } from './playground.mjs';
import { toggleTests } from './toggles.mjs';

// Firefox's release builds before WebGPU shipped on Linux have none: then every test here is skipped, saying so.
const LEFT_OUT = await webgpuLeftOut();
playgroundTests('webgpu', LEFT_OUT);
toggleTests('webgpu', LEFT_OUT);

test('webgpu: a lost device mid-run: training goes on on the CPU from the last snapshot, and the page says so', { skip: LEFT_OUT || false }, async () => {
  const browser = await launch({ webgpu: true });
  try {
    const { page, context, errors } = await open(browser, '?steps=20&batch=1&seq=16');
    assert.equal(await text(page, 'backend'), 'webgpu');
    await modelLoaded(page);
    await page.click('[data-testid=train]');
    // The snapshot is taken at the validation of step 10; lose the device after it.
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=step]').dataset.value) >= 11, null, { timeout: 300000 });
    await page.evaluate(() => window.__qlora.worker.postMessage({ type: 'lose-device' }));
    await page.waitForFunction(() => /device was lost/.test(document.querySelector('#notice').textContent), null, { timeout: 300000 });
    assert.match(await page.textContent('#notice'), /training continues on the CPU executor from step 10, the last snapshot/);
    assert.equal(await text(page, 'backend'), 'cpu');
    await page.waitForFunction(() => document.body.dataset.run === 'done', null, { timeout: 300000 });
    assert.equal(await page.getAttribute('[data-testid=step]', 'data-value'), '20');
    assert.ok(await page.isHidden('[data-testid=error]'), await text(page, 'error'));
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
  }
});
