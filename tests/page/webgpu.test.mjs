// The playground on WebGPU (headless Chromium on SwiftShader, headless Firefox on lavapipe: both emulate a GPU on
// the CPU).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIREFOX, launch, modelLoaded, open, text, trainToEnd, webgpuLeftOut } from './harness.mjs';
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
    assert.equal((await text(page, 'tagline-where')).trim(), '— on your processor (the WebGPU device was lost)');
    await page.waitForFunction(() => document.body.dataset.run === 'done', null, { timeout: 300000 });
    assert.equal(await page.getAttribute('[data-testid=step]', 'data-value'), '20');
    assert.ok(await page.isHidden('[data-testid=error]'), await text(page, 'error'));
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
  }
});

// Here WebGPU is software on the processor (SwiftShader, lavapipe), slower than the CPU executor: left to itself the
// page trains on the processor and says why; the link's backend=webgpu is how a reader trains through it anyway.
test('webgpu: on a software adapter the page trains on the processor unless the link asks for WebGPU', { skip: LEFT_OUT || false }, async (t) => {
  const browser = await launch({ webgpu: true });
  try {
    const { page, context, errors } = await open(browser, '?backend=auto&steps=2&batch=1&seq=16');
    // On a machine with a GPU the page rightly takes it. (The first playground test checks that Chromium's SwiftShader
    // is named as software, so a page that missed it would not pass for a GPU there.)
    if ((await text(page, 'tagline-where')).includes('on your GPU')) {
      t.skip('this machine\'s WebGPU adapter is a GPU');
      await context.close();
      return;
    }
    assert.equal(await text(page, 'backend'), 'cpu');
    const adapter = FIREFOX ? /lavapipe|llvmpipe|a software adapter/ : /SwiftShader/;
    const notice = await page.textContent('#notice');
    assert.match(notice, /^Training runs on your processor: this browser's WebGPU is /);
    assert.match(notice, adapter);
    assert.match(notice, /Add backend=webgpu to the link/);
    assert.match(await text(page, 'tagline-where'), /on your processor \(faster than this browser's WebGPU, /);
    await modelLoaded(page);
    await trainToEnd(page, 120000);
    assert.equal(await text(page, 'backend'), 'cpu');
    // The choice is the page's, not the link's: the link it keeps does not pin it.
    assert.match(page.url(), /steps=2/);
    assert.doesNotMatch(page.url(), /backend=/);
    await context.close();

    const forced = await open(browser, '?backend=webgpu&steps=2&batch=1&seq=16');
    assert.equal(await text(forced.page, 'backend'), 'webgpu');
    assert.match(await text(forced.page, 'tagline-where'), /through WebGPU \(.+, on your processor\)/);
    assert.doesNotMatch(await forced.page.textContent('#notice'), /Training runs on your processor/);
    assert.match(forced.page.url(), /backend=webgpu/);
    await modelLoaded(forced.page);
    await trainToEnd(forced.page, 300000);
    assert.equal(await text(forced.page, 'backend'), 'webgpu');
    await forced.context.close();
    assert.deepEqual([...errors, ...forced.errors], []);
  } finally {
    await browser.close();
  }
});
