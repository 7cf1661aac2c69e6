// Nothing lost: the run is autosaved to IndexedDB and offered back after a reload or a crash, exports as a zip
// (PEFT adapter, history, state) that imports into another browser, and a storage refusal is reported while training
// goes on. On the CPU fallback (no WebGPU): the path under test is the page's, not the executor's.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, FIREFOX, NAVIGATION, PAGE_URL, attr, launch, modelLoaded, open, ready, text } from './harness.mjs';

/// A crash and a storage quota are made through Chromium's DevTools protocol, which WebDriver BiDi has no twin of;
/// the page code under test there (the periodic autosave, the refused save's message) is the same in every browser.
const DEVTOOLS_ONLY = FIREFOX && 'needs Chromium\'s DevTools protocol (Page.crash, Storage.overrideQuotaForOrigin)';

let browser;
before(async () => { browser = await launch({ webgpu: false }); });
after(async () => { await browser.close(); });

const stepOf = (page) => page.evaluate(() => Number(document.querySelector('[data-testid=step]').dataset.value));
const waitStep = (page, atLeast, timeout = 120000) =>
  page.waitForFunction((n) => Number(document.querySelector('[data-testid=step]').dataset.value) >= n, atLeast, { timeout });

/// Pauses and waits for the save that follows a pause; returns the step saved.
async function pauseAndSave(page) {
  await page.evaluate(() => { delete document.body.dataset.saved; });
  await page.click('[data-testid=pause]');
  await page.waitForFunction(() => document.querySelector('[data-testid=pause]').textContent === 'Resume', null, { timeout: 60000 });
  await page.waitForFunction(() => document.body.dataset.saved, null, { timeout: 60000 });
  const saved = Number(await page.evaluate(() => document.body.dataset.saved));
  assert.equal(saved, await stepOf(page), 'the save holds the step on screen');
  return saved;
}

/// Waits for the page to have read the kept run (the init message comes before the first counts are drawn).
async function reopened(page, how) {
  await how();
  await ready(page);
}

test('cpu: a reload restores the autosaved run, Resume continues it, Discard forgets it', { timeout: 300000 }, async () => {
  const { page, context, errors } = await open(browser, '?steps=400&batch=1&seq=8&r=4');
  await modelLoaded(page);
  assert.equal(await page.isVisible('[data-testid=restore-bar]'), false, 'a fresh browser has nothing to restore');
  await page.click('[data-testid=train]');
  await waitStep(page, 3);
  const saved = await pauseAndSave(page);
  const loss = await attr(page, 'loss');
  const points = Number(await page.getAttribute('#loss-chart', 'data-points'));

  await reopened(page, () => page.reload(NAVIGATION));
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  await page.screenshot({ path: join(ARTIFACTS, 'cpu-restore-offered.png') });
  assert.match(await text(page, 'restore-bar'), new RegExp(`QLoRA r=4 nf4\\+dq, step ${saved} of 400`));
  assert.ok([null, '0'].includes(await attr(page, 'step')), 'nothing is restored until asked');
  await page.click('[data-testid=restore-run]');
  await page.waitForFunction(() => document.body.dataset.restored, null, { timeout: 120000 });
  assert.equal(await stepOf(page), saved);
  assert.equal(await attr(page, 'loss'), loss, 'the last loss is back on screen');
  assert.equal(Number(await page.getAttribute('#loss-chart', 'data-points')), points, 'and the whole curve');
  assert.equal(await page.inputValue('#rank'), '4', 'the controls show the run\'s settings');
  assert.equal(await text(page, 'pause'), 'Resume');
  await page.screenshot({ path: join(ARTIFACTS, 'cpu-restored.png'), fullPage: true });
  await page.click('[data-testid=pause]');
  await waitStep(page, saved + 2);
  const later = await pauseAndSave(page);

  await reopened(page, () => page.reload(NAVIGATION));
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  assert.match(await text(page, 'restore-bar'), new RegExp(`step ${later} of 400`), 'the resumed run is kept as it went on');
  await page.click('[data-testid=discard-run]');
  await page.waitForSelector('[data-testid=restore-bar]', { state: 'hidden' });
  // The page decides on the restore bar while it starts, before it shows any count (which reopened waits for).
  await reopened(page, () => page.reload(NAVIGATION));
  assert.equal(await page.isVisible('[data-testid=restore-bar]'), false, 'a discarded run is not offered again');
  assert.deepEqual(errors, []);
  await context.close();
});

test('cpu: a reload in a run\'s first seconds offers it back, and says how many steps after its last save are not kept', { timeout: 300000 }, async () => {
  const { page, context, errors } = await open(browser, '?steps=5000&batch=1&seq=8&r=4');
  await modelLoaded(page);
  await page.click('[data-testid=train]');
  // The first step is saved at once (the periodic saves come seconds apart).
  await page.waitForFunction(() => document.body.dataset.saved, null, { timeout: 120000 });
  assert.equal(Number(await page.evaluate(() => document.body.dataset.saved)), 1, 'the first save holds the first step');
  await waitStep(page, 3);
  const before = await stepOf(page);
  await reopened(page, () => page.reload(NAVIGATION));
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  const offered = await text(page, 'restore-bar');
  const saved = Number(offered.match(/step (\d+) of 5000/)[1]);
  // The save asked for as the page hides may or may not finish before the reload ends the worker: where it did not,
  // the bar counts the steps it lacks.
  const lost = offered.match(/You left it at step (\d+): the (\d+) steps? after its last save are not kept/);
  if (lost) {
    assert.ok(Number(lost[1]) >= before, `left at ${lost[1]}, seen at ${before}`);
    assert.equal(Number(lost[2]), Number(lost[1]) - saved, offered);
  } else {
    assert.ok(saved >= before, `saved ${saved}, seen at ${before}, and no steps said lost: ${offered}`);
  }
  // Read once: the next reload (nothing running) says nothing about steps lost.
  await reopened(page, () => page.reload(NAVIGATION));
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  assert.doesNotMatch(await text(page, 'restore-bar'), /You left it/);
  assert.deepEqual(errors, []);
  await context.close();
});

/// The note a page leaves as it hides with a run going (saved-runs.js), written before the next visit's scripts run
/// and at that visit only: every reload's pagehide rewrites the note, so a note made by hand must come in after it,
/// and an init script stays for every later navigation (a flag per note in the tab's sessionStorage stops it).
async function leaveNote(page, note) {
  await page.addInitScript((n) => {
    const flag = `test-note:${JSON.stringify(n)}`;
    if (sessionStorage.getItem(flag)) return;
    sessionStorage.setItem(flag, '1');
    localStorage.setItem('qlora-playground:left-at', JSON.stringify(n));
  }, note);
}

test('cpu: the steps a reader lost are counted against the run they left, not against an older saved run', { timeout: 300000 }, async () => {
  const { page, context, errors } = await open(browser, '?steps=5000&batch=1&seq=8&r=4');
  await modelLoaded(page);
  await page.click('[data-testid=train]');
  await waitStep(page, 2);
  const saved = await pauseAndSave(page);
  const runId = await page.evaluate(() => document.body.dataset.runId);
  assert.ok(runId, 'the page knows its run\'s id');

  // Left 5 steps past its save (the save as the page hid did not finish): those 5 are said to be lost, once.
  await leaveNote(page, { model: 'shakespeare', runId, step: saved + 5 });
  await reopened(page, () => page.reload(NAVIGATION));
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  assert.match(await text(page, 'restore-bar'), new RegExp(`step ${saved} of 5000\\. You left it at step ${saved + 5}: the 5 steps after its last save are not kept\\.`));
  assert.equal(await page.evaluate(() => localStorage.getItem('qlora-playground:left-at')), null, 'the note is read once');
  await reopened(page, () => page.reload(NAVIGATION));
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  assert.doesNotMatch(await text(page, 'restore-bar'), /You left it/);

  // A newer run left before its first save: the older saved run is offered as itself, and the notice says the run
  // left is gone.
  await leaveNote(page, { model: 'shakespeare', runId: 'a-run-never-saved', step: saved + 40 });
  await reopened(page, () => page.reload(NAVIGATION));
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  const offered = await text(page, 'restore-bar');
  assert.match(offered, new RegExp(`step ${saved} of 5000\\.`));
  assert.doesNotMatch(offered, /You left it/);
  assert.match(await page.textContent('#notice'), new RegExp(`The run you left at step ${saved + 40} had not been saved yet, so it cannot be restored \\(the run offered is an earlier one\\)\\.`));
  assert.deepEqual(errors, []);
  await context.close();
});

test('cpu: after a crash the periodic autosave offers the run back', { timeout: 300000, skip: DEVTOOLS_ONLY }, async () => {
  const { page, context, errors } = await open(browser, '?steps=400&batch=1&seq=8&r=4');
  await modelLoaded(page);
  await page.click('[data-testid=train]');
  await waitStep(page, 3);
  const later = await pauseAndSave(page);

  // A crash (no pagehide): the periodic autosave has kept the run a few seconds behind at most.
  await page.click('[data-testid=pause]');
  await page.waitForFunction((s) => Number(document.body.dataset.saved) > s, later, { timeout: 120000 });
  const autosaved = Number(await page.evaluate(() => document.body.dataset.saved));
  const cdp = await context.newCDPSession(page);
  // The crash never answers: the renderer it would answer from is gone. The page's 'crash' event says it happened.
  const crashed = new Promise((resolve) => page.once('crash', resolve));
  cdp.send('Page.crash').catch(() => {});
  await crashed;
  const again = await context.newPage();
  await reopened(again, () => again.goto(`${PAGE_URL}?steps=400&batch=1&seq=8&r=4`, NAVIGATION));
  await again.waitForSelector('[data-testid=restore-bar]:not([hidden])');
  const offered = Number(/step (\d+) of 400/.exec(await text(again, 'restore-bar'))[1]);
  assert.ok(offered >= autosaved, `offered step ${offered}, autosaved ${autosaved}`);
  assert.deepEqual(errors.filter((e) => !/crash/i.test(e)), []);
  await context.close();
});

test('cpu: an engine that stops mid-run (out of memory aborts it) says so once, offers a reload, and the kept run comes back', { timeout: 300000 }, async () => {
  const { page, context, errors } = await open(browser, '?steps=400&batch=1&seq=8&r=4');
  await modelLoaded(page);
  await page.click('[data-testid=train]');
  await waitStep(page, 3);
  const saved = await pauseAndSave(page);
  await page.click('[data-testid=pause]');
  await waitStep(page, saved + 1);
  // As Rust's allocation failure does when the tab's memory runs out: the engine traps.
  await page.evaluate(() => window.__qlora.worker.postMessage({ type: 'abort-engine' }));
  await page.waitForSelector('[data-testid=engine-stopped]:not([hidden])');
  assert.match(await page.textContent('#engine-stopped-text'), /^The engine stopped \(.+\): this tab most likely ran out of memory.*Reload the page/);
  assert.equal((await text(page, 'reload-page')).trim(), 'Reload');
  assert.ok(await page.isHidden('[data-testid=error]'), 'one message');
  const step = await stepOf(page);
  assert.ok(step > saved, 'the curve stays on screen');
  assert.ok(await page.isDisabled('[data-testid=train]') && await page.isDisabled('[data-testid=pause]') && await page.isDisabled('[data-testid=generate]'));
  assert.match(await page.textContent('#train-why'), /waits for a reload/);
  // A control changed afterwards gets the same single message, not a second one.
  await page.fill('[data-testid=rank]', '6');
  await page.dispatchEvent('[data-testid=rank]', 'input');
  await page.waitForTimeout(500);
  assert.ok(await page.isHidden('[data-testid=error]'));
  assert.equal(await stepOf(page), step, 'nothing trains any more');
  await page.screenshot({ path: join(ARTIFACTS, 'cpu-engine-stopped.png') });

  // Reload: the run this browser kept comes back (the autosave, a few seconds behind at most).
  await page.click('[data-testid=reload-page]');
  await page.waitForSelector('[data-testid=restore-bar]:not([hidden])', { timeout: 120000 });
  await ready(page);
  const offered = Number(/step (\d+) of 400/.exec(await text(page, 'restore-bar'))[1]);
  assert.ok(offered >= saved && offered <= step, `offered step ${offered}: saved ${saved}, stopped at ${step}`);
  await page.click('[data-testid=restore-run]');
  await page.waitForFunction(() => document.body.dataset.restored, null, { timeout: 120000 });
  assert.equal(await stepOf(page), offered);
  assert.ok(await page.isHidden('[data-testid=engine-stopped]'));
  assert.deepEqual(errors, []);
  await context.close();
});

test('cpu: a run exports as a zip with a PEFT adapter, and imports into another browser', { timeout: 300000 }, async () => {
  const { page, context } = await open(browser, '?steps=30&batch=1&seq=8&r=4&targets=q,v');
  await modelLoaded(page);
  await page.click('[data-testid=train]');
  await waitStep(page, 3);
  const step = await pauseAndSave(page);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-run]')]);
  assert.equal(download.suggestedFilename(), `qlora-run-qlora-r4-nf4-dq-step${step}.zip`);
  // Kept outside the browser context, which deletes its downloads when it closes.
  const zipPath = join(mkdtempSync(join(tmpdir(), 'qlora-export-')), download.suggestedFilename());
  await download.saveAs(zipPath);
  const zip = readFileSync(zipPath);
  assert.equal(zip.subarray(0, 2).toString(), 'PK');
  for (const name of ['README.txt', 'run.json', 'state.safetensors', 'adapter_config.json', 'adapter_model.safetensors']) {
    assert.ok(zip.includes(Buffer.from(name)), `the archive holds ${name}`);
  }
  const loss = await attr(page, 'loss');
  await context.close();

  // Another browser profile: empty storage, default settings.
  const fresh = await open(browser, '');
  await modelLoaded(fresh.page);
  await fresh.page.setInputFiles('[data-testid=import-run]', zipPath);
  await fresh.page.waitForFunction(() => document.body.dataset.restored, null, { timeout: 120000 });
  assert.equal(await stepOf(fresh.page), step);
  assert.equal(await attr(fresh.page, 'loss'), loss);
  assert.equal(await fresh.page.isChecked('#targets-q'), true);
  assert.equal(await fresh.page.isChecked('#targets-k'), false);
  assert.match(await fresh.page.textContent('#notice'), new RegExp(`Restored the run from the file: step ${step} of 30`));
  // A file that is not a run: one message, beside the Import button where the reader is looking, and the imported
  // run stays.
  await fresh.page.setInputFiles('[data-testid=import-run]', { name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('hello') });
  await fresh.page.waitForFunction(() => /^This file is neither an exported run/.test(document.querySelector('[data-testid=file-error]').textContent));
  assert.ok(await fresh.page.isHidden('[data-testid=error]'), 'said once, at the control');
  assert.equal(await stepOf(fresh.page), step);
  await fresh.page.click('[data-testid=pause]');
  await waitStep(fresh.page, step + 1);
  assert.deepEqual(fresh.errors, []);
  await fresh.context.close();
});

test('cpu: a refused save (storage quota) is reported, and training goes on', { timeout: 300000, skip: DEVTOOLS_ONLY }, async () => {
  const { page, context } = await open(browser, '?steps=400&batch=1&seq=8');
  await modelLoaded(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(PAGE_URL).origin, quotaSize: 4096 });
  await page.click('[data-testid=train]');
  await waitStep(page, 1);
  await page.click('[data-testid=pause]');
  await page.waitForFunction(() => /refused to store the run/.test(document.querySelector('[data-testid=error]').textContent), null, { timeout: 60000 });
  const message = await text(page, 'error');
  assert.match(message, /QuotaExceededError/);
  assert.match(message, /Export the run as a file to keep it/);
  const step = await stepOf(page);
  await page.click('[data-testid=pause]');
  await waitStep(page, step + 1);
  await context.close();
});
