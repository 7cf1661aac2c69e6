// Real GPT-2 models in the tab: the reader's own files, and GPT-2 from the Hugging Face hub on a click. The model is
// a random-initialised GPT-2 with the real 50,257-token vocabulary and tokenizer (2 layers × 8 wide,
// tests/fixtures/hf-gpt2, made by transformers; the tokenizer files ship in assets/gpt2). The hub is never reached:
// its URLs are intercepted in the browser and answered from those files.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ARTIFACTS, FIREFOX, NAVIGATION, attr, expectedTrainable, launch, modelLoaded, open, ready, text, trainToEnd, webgpuLeftOut } from './harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FILES = {
  'config.json': join(ROOT, 'tests/fixtures/hf-gpt2/config.json'),
  'model.safetensors': join(ROOT, 'tests/fixtures/hf-gpt2/model.safetensors'),
  'vocab.json': join(ROOT, 'assets/gpt2/vocab.json'),
  'merges.txt': join(ROOT, 'assets/gpt2/merges.txt'),
};
const TINY = JSON.parse(readFileSync(FILES['config.json'], 'utf8'));
const HUB = 'https://huggingface.co/openai-community/gpt2/resolve/main/';
/// GPT-2 124M as published: 124,439,808 parameters in fp32 and twelve 1024 × 1024 fp32 causal-mask buffers.
const GPT2_FILE_BYTES = 4 * 124439808 + 12 * 1024 * 1024 * 4;

const status = (page) => page.evaluate(() => {
  const s = document.querySelector('[data-testid=model-status]');
  return { value: s.dataset.value, text: s.textContent };
});
/// Waits for the model control's status; on a timeout, says where it stood.
async function statusIs(page, value) {
  try {
    await page.waitForFunction((v) => document.querySelector('[data-testid=model-status]').dataset.value === v, value, { timeout: 120000 });
  } catch (e) {
    throw new Error(`model status never became ${value}: ${JSON.stringify(await status(page))}, bar ${await page.evaluate(() => JSON.stringify({ ...document.querySelector('[data-testid=model-progress]').dataset }))} (${e.message})`);
  }
}

/// The trainable count follows r at once: the page is live.
async function live(page, config, r) {
  await page.fill('[data-testid=rank]', String(r));
  await page.dispatchEvent('[data-testid=rank]', 'input');
  const want = String(expectedTrainable(config, r, ['q', 'v']));
  await page.waitForFunction((w) => document.querySelector('[data-testid=trainable-params]').dataset.value === w, want);
}

/// Drops files on `selector` as a reader drags them from a file manager: a DataTransfer holding them, through
/// dragenter, dragover and drop.
async function drop(page, selector, paths) {
  const files = paths.map((p) => ({ name: p.split('/').pop(), base64: readFileSync(p).toString('base64') }));
  await page.evaluate(({ selector, files }) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name));
    }
    const target = document.querySelector(selector);
    for (const type of ['dragenter', 'dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }, { selector, files });
}

// Firefox's release builds before WebGPU shipped on Linux have none (harness.mjs): their WebGPU test is skipped, saying so.
const LEFT_OUT = await webgpuLeftOut();

for (const backend of ['cpu', 'webgpu']) {
  const skip = backend === 'webgpu' && LEFT_OUT;
  test(`${backend}: your own GPT-2 files: each wrong or missing file is named, then the model loads in the tab and trains`, { timeout: 600000, skip: skip || false }, async () => {
    const browser = await launch({ webgpu: backend === 'webgpu' });
    try {
      const { page, context, requests, errors } = await open(browser, '?model=files&r=4&targets=q,v&steps=4&batch=2&seq=16');
      assert.equal(await page.inputValue('[data-testid=model]'), 'files');
      assert.match((await status(page)).text, /choose your model's files/);
      assert.ok(await page.isDisabled('[data-testid=train]'));
      assert.match(await page.textContent('#train-why'), /choose its files/);
      // Until the files are read, the numbers are the built-in model's, and say so.
      assert.match(await page.textContent('#trainable-detail'), /^Counted on the built-in Shakespeare model until your model's files are read: /);

      // Only the weights: config.json is named as missing; the page stays live.
      await page.setInputFiles('[data-testid=model-files]', [FILES['model.safetensors']]);
      await statusIs(page, 'error');
      assert.match((await status(page)).text, /^config\.json is missing/);
      assert.ok(await page.isHidden('[data-testid=error]'), 'the message is at the model control only');
      const shakespeare = JSON.parse(readFileSync(join(ROOT, 'www/models/shakespeare/config.json'), 'utf8'));
      await live(page, shakespeare, 6);

      // Another model's config.json with these weights: model.safetensors is named, with the tensor that differs.
      await page.setInputFiles('[data-testid=model-files]', [join(ROOT, 'www/models/shakespeare/config.json'), FILES['model.safetensors'], FILES['vocab.json'], FILES['merges.txt']]);
      await page.waitForFunction(() => /model\.safetensors/.test(document.querySelector('[data-testid=model-status]').textContent) && document.querySelector('[data-testid=model-status]').dataset.value === 'error');
      assert.match((await status(page)).text, /^model\.safetensors: tensor \S+ has shape/);

      // No tokenizer files for a 50,257-token vocabulary.
      await page.setInputFiles('[data-testid=model-files]', [FILES['config.json'], FILES['model.safetensors']]);
      await page.waitForFunction(() => /no tokenizer files/.test(document.querySelector('[data-testid=model-status]').textContent));

      // 48 layers × 1280 (1,009 M parameters): with the base in fp32 it is too large for a tab, said before a byte of
      // the weights is read, with the format it fits in; in nf4 it fits, and the weights are checked next (these are
      // not its weights).
      const large = Buffer.from(JSON.stringify({ ...TINY, n_layer: 48, n_embd: 1280, n_head: 20 }));
      // (Playwright takes either paths or buffers in one call, not both.)
      const asFile = (file) => ({ name: file, mimeType: 'application/octet-stream', buffer: readFileSync(FILES[file]) });
      const largeFiles = [{ name: 'config.json', mimeType: 'application/json', buffer: large }, ...['model.safetensors', 'vocab.json', 'merges.txt'].map(asFile)];
      const format = async (f) => {
        await page.selectOption('[data-testid=format]', f);
        await page.waitForFunction(() => document.body.dataset.accountShown === document.body.dataset.accountSent);
      };
      await format('fp32');
      assert.equal(await page.inputValue('[data-testid=method]'), 'lora', 'the method follows the base format');
      await page.setInputFiles('[data-testid=model-files]', largeFiles);
      await page.waitForFunction(() => /it loads with its base in/.test(document.querySelector('[data-testid=model-status]').textContent));
      assert.match((await status(page)).text, /^config\.json: this model has 1009 M parameters: with its base kept in fp32 they take 3,848 MiB, and with the smallest run beside them they need more than the 3,072 MiB the page's engine can use in a tab; it loads with its base in .*nf4\+dq \(QLoRA, [\d,]+ MiB\)$/);
      await format('nf4');
      assert.equal(await page.inputValue('[data-testid=method]'), 'qlora');
      await page.setInputFiles('[data-testid=model-files]', largeFiles);
      await page.waitForFunction(() => /^model\.safetensors/.test(document.querySelector('[data-testid=model-status]').textContent));
      assert.match((await status(page)).text, /^model\.safetensors: tensor \S+ has shape/);
      assert.ok(await page.isChecked('[data-testid=double-quant]'), 'nf4 takes double quantization by default');

      // The whole directory dropped on the page, with a file the page does not need.
      await drop(page, '#model-drop', [...Object.values(FILES), join(ROOT, 'assets/gpt2/README.md')]);
      await statusIs(page, 'loaded');
      const loaded = (await status(page)).text;
      assert.match(loaded, /2 layers × 8, a vocabulary of 50,257/);
      assert.doesNotMatch(await page.textContent('#trainable-detail'), /built-in Shakespeare/);
      assert.match(loaded, /ignored: README\.md/);
      assert.match(loaded, /the frozen base kept in nf4\+dq/);
      // Before any run, "base" text comes from the base as loaded, and its caption says which.
      await page.fill('#gen-tokens', '4');
      // Every click the page receives, for the message below if the generation never starts (a click that landed
      // beside a button that moved once did exactly that).
      await page.evaluate(() => { window.__clicks = []; document.addEventListener('click', (e) => window.__clicks.push(`${e.target.tagName}#${e.target.id} ${e.clientX},${e.clientY} trusted=${e.isTrusted}`), true); });
      await page.click('[data-testid=generate]');
      await page.waitForFunction(() => /^\d+ tokens$/.test(document.querySelector('[data-testid=gen-progress]').textContent), null, { timeout: 120000 })
        .catch(async (e) => {
          // What the page showed instead, so that a failure here says where the generation stopped.
          const seen = await page.evaluate(() => ({
            progress: document.querySelector('[data-testid=gen-progress]').textContent,
            generateDisabled: document.querySelector('[data-testid=generate]').disabled,
            error: document.querySelector('[data-testid=error]').textContent,
            fieldErrors: [...document.querySelectorAll('[data-testid=field-error]')].map((n) => n.textContent),
            tokens: document.querySelector('#gen-tokens').value,
            status: document.querySelector('[data-testid=model-status]').textContent,
            clicks: window.__clicks,
            button: JSON.stringify(document.querySelector('[data-testid=generate]').getBoundingClientRect()),
            scroll: window.scrollY,
          }));
          throw new Error(`${e.message}; the page showed ${JSON.stringify(seen)}`);
        });
      assert.equal(await page.textContent('#base-caption'), 'Base (nf4+dq, as loaded)');
      assert.equal(await page.textContent('#tuned-caption'), 'Fine-tuned (nothing trained yet: the base itself)');
      // Every count is now this model's.
      await live(page, TINY, 4);
      // The base was read straight into nf4 + dq (the link's format); the weight histogram reads its weight in fp32
      // from the reader's file again: fp32 is the reference, and nf4 moves it.
      await page.selectOption('#hist-weight', '1:proj');
      await page.waitForFunction(() => document.querySelectorAll('#quant-errors tbody tr').length >= 5, null, { timeout: 60000 });
      const errorOf = (format) => page.evaluate((f) => [...document.querySelectorAll('#quant-errors tbody tr')]
        .map((tr) => [...tr.children].map((td) => td.textContent))
        .find(([name]) => name.split(' ')[0] === f), format);
      assert.deepEqual((await errorOf('fp32')).slice(1), ['32.000', '0', '0']);
      assert.ok(Number((await errorOf('nf4'))[2]) > 0, JSON.stringify(await errorOf('nf4')));
      assert.equal(await page.getAttribute('#seq', 'max'), String(TINY.n_positions));
      assert.ok(await page.isEnabled('[data-testid=train]'));
      if (backend === 'cpu') {
        // Before Train: how long a step will take here, which follows the batch.
        await page.waitForSelector('[data-testid=step-estimate]');
        assert.match(await text(page, 'step-estimate'), /a step of 2 × 16 tokens takes about \d/);
        const estimate = () => page.evaluate(() => {
          const { seconds, flops, gflops } = document.querySelector('[data-testid=step-estimate]').dataset;
          return { seconds: Number(seconds), flops: Number(flops), gflops: Number(gflops) };
        });
        const one = await estimate();
        assert.ok(one.gflops > 0 && Math.abs(one.seconds - one.flops / (one.gflops * 1e9)) <= 1e-12 * one.seconds);
        await page.fill('[data-testid=batch]', '4');
        await page.dispatchEvent('[data-testid=batch]', 'input');
        await page.waitForFunction(() => /of 4 × 16 tokens/.test(document.querySelector('[data-testid=step-estimate]').textContent), null, { timeout: 60000 });
        const two = await estimate();
        // Twice the tokens, twice the products; the speed is timed again at the new number of rows.
        assert.equal(two.flops, 2 * one.flops);
        assert.ok(Math.abs(two.seconds - two.flops / (two.gflops * 1e9)) <= 1e-12 * two.seconds);
        await page.fill('[data-testid=batch]', '2');
        await page.dispatchEvent('[data-testid=batch]', 'input');
      } else {
        assert.ok(await page.isHidden('[data-testid=step-estimate]'), 'no CPU estimate where the GPU trains');
      }

      await trainToEnd(page, 300000);
      assert.equal(await attr(page, 'step'), '4');
      const loss = Number(await attr(page, 'loss'));
      // A random GPT-2 over 50,257 tokens starts near ln 50257 ≈ 10.8 nats.
      assert.ok(loss > 9 && loss < 12, `loss ${loss}`);
      await page.click('[data-testid=generate]');
      await page.waitForFunction(() => /^\d+ tokens$/.test(document.querySelector('[data-testid=gen-progress]').textContent), null, { timeout: 120000 });
      assert.ok((await text(page, 'output-tuned')).length > 0);
      await page.screenshot({ path: join(ARTIFACTS, `${backend}-own-files.png`), fullPage: true });

      // A reload: the run kept on the reader's files waits for the same files, then restores where it ended.
      await page.waitForFunction(() => document.body.dataset.saved === '4', null, { timeout: 60000 });
      const lossShown = await attr(page, 'loss');
      await page.reload(NAVIGATION);
      await ready(page);
      await page.waitForSelector('[data-testid=restore-bar]:not([hidden])');
      assert.match(await text(page, 'restore-bar'), /your own model files .*choose the same files above to restore it/);
      assert.ok(await page.isDisabled('[data-testid=restore-run]'), 'nothing to restore onto before the files are back');
      await page.setInputFiles('[data-testid=model-files]', Object.values(FILES));
      await statusIs(page, 'loaded');
      await page.waitForSelector('[data-testid=restore-run]:not([disabled])');
      assert.match(await text(page, 'restore-bar'), /step 4 of 4/);
      await page.click('[data-testid=restore-run]');
      await page.waitForFunction(() => document.body.dataset.restored === '4', null, { timeout: 120000 });
      assert.equal(await attr(page, 'loss'), lossShown, 'the run is back as it ended');
      assert.ok(await page.isHidden('[data-testid=error]'));
      // Runs in other base formats than the one the files were read in: the engine reads the base again from them
      // (int8 for QLoRA, fp32 for LoRA), and each trains.
      for (const format of ['int8', 'fp32']) {
        await page.selectOption('[data-testid=format]', format);
        await trainToEnd(page, 300000);
        assert.equal(await attr(page, 'step'), '4', format);
        const after = Number(await attr(page, 'loss'));
        assert.ok(after > 9 && after < 12, `${format}: loss ${after}`);
      }
      // Nothing of the reader's files left the tab: every request went to this page's own server.
      const origin = new URL(page.url()).origin;
      assert.deepEqual(requests.filter((r) => !r.url.startsWith(origin) && !/^(data|blob):/.test(r.url)), []);
      assert.deepEqual(errors, []);
      await context.close();
    } finally {
      await browser.close();
    }
  });
}

test('an embed that names GPT-2 shows its size and licence and fetches nothing until Load', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const hub = fakeHub();
    const { page, context, requests, errors } = await open(browser, '?model=gpt2&embed=1', {}, hub.setup);
    assert.match(await text(page, 'model-about'), /openai-community\/gpt2 · MIT licence · 522\.7 MiB download/);
    assert.ok(await page.isVisible('[data-testid=model-load]'));
    assert.equal((await status(page)).value, '');
    // GPT-2's defaults suit a laptop's integrated GPU: 4 × 64 tokens, 100 steps.
    assert.deepEqual(await page.evaluate(() => ['batch', 'seq', 'steps'].map((id) => document.querySelector(`[data-testid=${id}]`).value)), ['4', '64', '100']);
    await page.waitForTimeout(1000);
    assert.deepEqual(hub.log, []);
    // Nor anything else: the hub's routed files are not all a request could ask for.
    const origin = new URL(page.url()).origin;
    assert.deepEqual(requests.filter((r) => !r.url.startsWith(origin) && !/^(data|blob):/.test(r.url)), []);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
  }
});

/// The hub, answered from the fixture: every request logged; the first request for the weights is cut off half-way.
function fakeHub() {
  const log = [];
  let cutFirst = true;
  const handler = async (route) => {
    const file = route.request().url().slice(HUB.length);
    log.push(file);
    const path = FILES[file];
    if (!path) return route.fulfill({ status: 404, headers: { 'Access-Control-Allow-Origin': '*' }, body: 'Entry not found' });
    const body = readFileSync(path);
    const headers = { 'Access-Control-Allow-Origin': '*', 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length) };
    if (file === 'model.safetensors' && cutFirst) {
      cutFirst = false;
      // The connection drops half-way: the declared length never arrives.
      return route.fulfill({ status: 200, headers, body: body.subarray(0, body.length >> 1) });
    }
    return route.fulfill({ status: 200, headers, body });
  };
  return { log, setup: (context) => context.route(`${HUB}**`, handler) };
}

// The hub flow does not depend on where the page trains: each browser runs it on one backend, as the toggles.
const HUB_BACKEND = FIREFOX && !LEFT_OUT ? 'webgpu' : 'cpu';
test(`${HUB_BACKEND}: GPT-2 Large from the hub: refused with an fp32 base before anything is downloaded, with the format it fits in; Load comes back with a 16-, 8- or 4-bit base`, { timeout: 300000 }, async () => {
  const browser = await launch({ webgpu: HUB_BACKEND === 'webgpu' });
  try {
    // A link written by hand: LoRA over an fp32 base (r = 8 on all six matrices, the default).
    const { page, requests, errors } = await open(browser, '?model=gpt2-large&method=lora&format=fp32');
    assert.equal(await page.inputValue('[data-testid=model]'), 'gpt2-large');
    await statusIs(page, 'refused');
    assert.match((await status(page)).text, /^this model has 774 M parameters: with its base kept in fp32 they take 2,952 MiB, .*; it loads with its base in fp16 \(LoRA, [\d,]+ MiB\), int8 \(QLoRA, [\d,]+ MiB\) or nf4\+dq \(QLoRA, [\d,]+ MiB\)$/);
    assert.ok(await page.isDisabled('[data-testid=model-load]'));
    assert.match(await page.textContent('#train-why'), /does not fit this tab with this base format/);
    assert.ok(await page.isHidden('[data-testid=error]'), 'the message is at the model control only');
    // The rest of the page is live: gpt2-large's counts and download, from its published configuration.
    assert.equal(Number(await page.getAttribute('[data-testid=model-about]', 'data-bytes')), 4 * 774030080 + 36 * 1024 * 1024 * 4);
    assert.equal(await attr(page, 'trainable-params'), String(expectedTrainable({ n_layer: 36, n_embd: 1280 }, 8, ['q', 'k', 'v', 'o', 'fc', 'proj'])));
    // fp16, int8, nf4: each brings Load back; fp32 again takes it away.
    for (const [format, fits] of [['fp16', true], ['fp32', false], ['int8', true], ['nf4', true]]) {
      await page.selectOption('[data-testid=format]', format);
      await statusIs(page, fits ? '' : 'refused');
      assert.equal(await page.isEnabled('[data-testid=model-load]'), fits, format);
      if (fits) assert.equal((await status(page)).text, 'not loaded');
      assert.match(await page.textContent('#train-why'), fits ? /press Load above/ : /does not fit this tab/);
    }
    assert.equal(await page.inputValue('[data-testid=method]'), 'qlora');
    assert.ok(await page.isHidden('[data-testid=memory-fit]'));
    // Full fine-tuning of 774 M parameters fits no tab: the model control says so, once, before anything is loaded,
    // and Train's hint points at the method (the base format is greyed out for full fine-tuning).
    await page.selectOption('[data-testid=method]', 'full');
    await statusIs(page, 'refused');
    assert.match((await status(page)).text, /^full fine-tuning loads this model's 774 M parameters in fp32, 2,952 MiB, .*; it loads with its base in fp16 \(LoRA, [\d,]+ MiB\), int8 \(QLoRA, [\d,]+ MiB\) or nf4\+dq \(QLoRA, [\d,]+ MiB\)$/);
    assert.ok(await page.isHidden('[data-testid=memory-fit]'), 'the memory panel does not say it a second time');
    assert.match(await page.textContent('#train-why'), /full fine-tuning does not fit in this tab: choose LoRA or QLoRA/);
    await page.selectOption('[data-testid=method]', 'qlora');
    await page.waitForSelector('[data-testid=memory-fit]', { state: 'hidden' });
    await statusIs(page, '');
    assert.deepEqual(requests.filter((r) => r.url.includes('huggingface')), [], 'nothing is fetched from the hub before Load');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test(`${HUB_BACKEND}: GPT-2 from the hub: its size and licence first, nothing fetched before Load, an interrupted download restarts, the cache serves the next visit, Delete forgets it`, { timeout: 600000 }, async () => {
  const browser = await launch({ webgpu: HUB_BACKEND === 'webgpu' });
  try {
    const hub = fakeHub();
    const { page, context, requests, errors } = await open(browser, '?model=gpt2&r=8&targets=q,v&steps=3&batch=1&seq=16', {}, hub.setup);
    // Before any download: GPT-2 124M's numbers, from its published configuration.
    assert.equal(await page.inputValue('[data-testid=model]'), 'gpt2');
    assert.equal(Number(await page.getAttribute('[data-testid=model-about]', 'data-bytes')), GPT2_FILE_BYTES);
    assert.match(await text(page, 'model-about'), /openai-community\/gpt2 · MIT licence · 522\.7 MiB download/);
    assert.equal(await attr(page, 'trainable-params'), String(expectedTrainable({ n_layer: 12, n_embd: 768 }, 8, ['q', 'v'])));
    assert.match(await page.textContent('#snippet'), /from_pretrained\("openai-community\/gpt2"/);
    assert.ok(await page.isDisabled('[data-testid=train]'));
    assert.match(await page.textContent('#train-why'), /press Load/);
    await page.waitForTimeout(500);
    assert.deepEqual(hub.log, [], 'nothing is fetched from the hub before Load');

    // The first download breaks off in the weights: the reader is told, and nothing partial is kept.
    await page.click('[data-testid=model-load]');
    await statusIs(page, 'error');
    assert.match((await status(page)).text, /model\.safetensors .*nothing partial was kept, and Load fetches it again from the start/);
    const kept = await page.evaluate(async () => (await (await caches.open('qlora-models-v1')).keys()).map((r) => r.url.split('/').pop()));
    assert.ok(!kept.includes('model.safetensors'), `cached: ${kept}`);

    // Load again: the download starts again, says so, and the model loads.
    await page.click('[data-testid=model-load]');
    await page.waitForFunction(() => /started again from the beginning|starting it again/.test(document.querySelector('[data-testid=model-status]').textContent) || document.querySelector('[data-testid=model-status]').dataset.value === 'loaded');
    await statusIs(page, 'loaded');
    await modelLoaded(page);
    assert.match((await status(page)).text, /vocabulary of 50,257/);
    // The views follow the configuration that came with the download.
    await live(page, TINY, 8);
    assert.match(await page.textContent('#snippet'), /from_pretrained\("openai-community\/gpt2"/);
    await trainToEnd(page, 300000);
    const total = Object.values(FILES).reduce((a, f) => a + statSync(f).size, 0);
    assert.equal(await page.getAttribute('[data-testid=cached-model][data-name=gpt2]', 'data-bytes'), String(total));

    // The next visit loads from this browser's cache: not one request to the hub. (After the run's last save.)
    await page.waitForFunction(() => document.body.dataset.saved === '3', null, { timeout: 60000 });
    const before = hub.log.length;
    await page.reload(NAVIGATION);
    await ready(page);
    await statusIs(page, 'loaded');
    assert.equal(hub.log.length, before, `hub requests after the reload: ${hub.log.slice(before)}`);
    assert.equal(hub.log.filter((f) => f === 'model.safetensors').length, 2, hub.log.join(', '));
    // The run kept in this browser comes back on the cached model.
    await page.waitForSelector('[data-testid=restore-bar]', { timeout: 60000 }).catch(async (e) => {
      throw new Error(`no restore offer: ${JSON.stringify(await page.evaluate(() => ({ bar: document.querySelector('[data-testid=restore-bar]').hidden, text: document.querySelector('#restore-text').textContent, save: document.querySelector('#save-status')?.textContent })))} (${e.message})`);
    });
    await page.click('[data-testid=restore-run]');
    await page.waitForFunction(() => document.querySelector('[data-testid=step]').dataset.value === '3', null, { timeout: 120000 });
    assert.ok(await page.isHidden('[data-testid=error]'), await text(page, 'error'));
    await page.screenshot({ path: join(ARTIFACTS, `${HUB_BACKEND}-hub-gpt2.png`), fullPage: true });

    // Delete: the list empties and the cache holds nothing of the model.
    await page.click('[data-testid=delete-cached][data-name=gpt2]');
    await page.waitForSelector('[data-testid=cached-model]', { state: 'hidden' });
    assert.deepEqual(await page.evaluate(async () => (await (await caches.open('qlora-models-v1')).keys()).length), 0);
    assert.match(await text(page, 'model-about'), /download/);
    // Only the hub's and this page's own origins were contacted; the cut-off download's network error is the only log.
    const origin = new URL(page.url()).origin;
    assert.deepEqual(requests.filter((r) => !r.url.startsWith(origin) && !r.url.startsWith(HUB) && !/^(data|blob):/.test(r.url)), []);
    assert.deepEqual(errors.filter((e) => !/huggingface|CONTENT_LENGTH|network|Failed to load resource|the download of model\.safetensors/i.test(e)), []);
    await context.close();
  } finally {
    await browser.close();
  }
});


