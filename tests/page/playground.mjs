// The end-to-end checks of the playground page, run once per backend by webgpu.test.mjs and cpu.test.mjs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARTIFACTS, FIREFOX, NAVIGATION, PAGE_URL, attr, expectedTrainable, launch, modelLoaded, open, ready, text, testsOrSkipped, trainToEnd } from './harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONFIG = JSON.parse(readFileSync(join(ROOT, 'www/models/shakespeare/config.json'), 'utf8'));

/// Short runs: SwiftShader and lavapipe run WebGPU on the CPU (up to seconds per step), so the tests train 20 steps
/// of 1 × 16 tokens.
const RUN = 'steps=20&batch=1&seq=16';

/// The Train button lies wholly inside the window as it is scrolled now.
async function trainInView(page, where) {
  const box = await page.evaluate(() => {
    const r = document.querySelector('[data-testid=train]').getBoundingClientRect();
    return { top: r.top, bottom: r.bottom, height: window.innerHeight };
  });
  assert.ok(box.top >= 0 && box.bottom <= box.height, `Train is out of view on ${where}: ${JSON.stringify(box)}`);
}

export function playgroundTests(backend, skip = null) {
  // Declared skipped, with the reason, where the browser has no such backend (harness.mjs: webgpuLeftOut).
  const test = testsOrSkipped(skip);
  const webgpu = backend === 'webgpu';
  let browser;
  test.before(async () => { browser = await launch({ webgpu }); });
  test.after(async () => { await browser.close(); });

  test(`${backend}: the page says where it trains, and changing r updates trainable parameters at once`, async () => {
    const { page, context, errors } = await open(browser, '?method=lora&format=fp32&dq=0');
    assert.equal(await text(page, 'backend'), backend);
    if (!webgpu) {
      // Before Train on the processor, how long a step of the shipped model's settings will take.
      await page.waitForSelector('[data-testid=step-estimate]:not([hidden])', { timeout: 60000 });
      assert.match(await text(page, 'step-estimate'), /^On this processor a step of \d+ × \d+ tokens takes about \d/);
    }
    if (!webgpu) assert.match(await page.textContent('#notice'), /Training runs on your processor/);
    // WebGPU here is SwiftShader (Chromium) or lavapipe (Firefox, which names no adapter but says it is a fallback
    // one), both on the processor: the page calls neither "your GPU" (and left to itself would train on its CPU
    // executor instead: webgpu.test.mjs).
    if (webgpu && !FIREFOX) assert.equal((await text(page, 'tagline-where')).trim(), '— through WebGPU (SwiftShader, on your processor)');
    if (webgpu && FIREFOX) assert.match((await text(page, 'tagline-where')).trim(), /^— through WebGPU \((lavapipe|llvmpipe|a software adapter), on your processor\)$/);
    for (const r of [1, 4, 64]) {
      await page.fill('[data-testid=rank]', String(r));
      await page.dispatchEvent('[data-testid=rank]', 'input');
      const want = expectedTrainable(CONFIG, r, ['q', 'k', 'v', 'o', 'fc', 'proj']);
      await page.waitForFunction((w) => document.querySelector('[data-testid=trainable-params]').dataset.value === String(w), want);
    }
    await page.uncheck('[data-testid=targets-fc]');
    await page.waitForFunction((w) => document.querySelector('[data-testid=trainable-params]').dataset.value === String(w),
      expectedTrainable(CONFIG, 64, ['q', 'k', 'v', 'o', 'proj']));
    // An impossible value is refused at its control, the numbers stay live, and fixing it clears the message.
    await page.fill('[data-testid=alpha]', '-3');
    await page.dispatchEvent('[data-testid=alpha]', 'change');
    await page.waitForFunction(() => /alpha must be/.test(document.querySelector('[data-testid=field-error][data-for=alpha]')?.textContent));
    assert.equal(await attr(page, 'trainable-params'), String(expectedTrainable(CONFIG, 64, ['q', 'k', 'v', 'o', 'proj'])));
    assert.ok(await page.isHidden('[data-testid=error]'));
    assert.ok(await page.isDisabled('[data-testid=train]'));
    assert.match(await text(page, 'train-why'), /alpha/);
    await page.fill('[data-testid=alpha]', '16');
    await page.dispatchEvent('[data-testid=alpha]', 'change');
    await page.waitForFunction(() => !document.querySelector('[data-testid=field-error]'));
    assert.ok(await page.isEnabled('[data-testid=train]'));
    // fp32 → nf4: the base's memory drops to about an eighth (nf4 values + absmax constants).
    const before = Number(await attr(page, 'memory-total'));
    await page.selectOption('[data-testid=format]', 'nf4');
    await page.waitForFunction((b) => Number(document.querySelector('[data-testid=memory-total]').dataset.value) < b, before);
    const after = Number(await attr(page, 'memory-total'));
    assert.ok(after < before, `${after} < ${before}`);
    // Where the bytes go is said in words and in the key, from the same figures as the bars.
    const share = await text(page, 'memory-share');
    assert.match(share, /^The frozen base \(with its quantization constants\) is [\d.]+ [KMG]iB of [\d.]+ [KMG]iB, \d+%\./);
    // This small model at r = 64 on five matrices: the activations outweigh an nf4 base, and the page says why that matters.
    assert.match(share, /The activations take more, [\d.]+ [KMG]iB \(\d+%\): they grow with batch × sequence, not with the base's bits/);
    assert.match(await page.textContent('#memory-legend [data-category=base_weights]'), /^base weights [\d.]+ [KMG]iB$/);
    // A rank per matrix: q at 2, the others follow r; the link carries it and a reload restores it.
    await page.check('[data-testid=rank-per-target]');
    await page.fill('[data-testid=rank-q]', '2');
    await page.dispatchEvent('[data-testid=rank-q]', 'input');
    const perTarget = expectedTrainable(CONFIG, { q: 2, k: 64, v: 64, o: 64, proj: 64 }, ['q', 'k', 'v', 'o', 'proj']);
    await page.waitForFunction((w) => document.querySelector('[data-testid=trainable-params]').dataset.value === String(w), perTarget);
    assert.match(page.url(), /ranks=q%3A2/);
    assert.match(await page.textContent('#explainer'), /q \(192→192\)192×192 = 36,864192×2 \+ 2×192 = 768/);
    await page.screenshot({ path: join(ARTIFACTS, `${backend}-settings.png`), fullPage: true });
    await page.goto(page.url(), NAVIGATION);
    await ready(page);
    await page.waitForFunction((w) => document.querySelector('[data-testid=trainable-params]').dataset.value === String(w), perTarget);
    assert.ok(await page.isChecked('[data-testid=rank-per-target]'));
    assert.equal(await page.inputValue('[data-testid=rank-q]'), '2');
    assert.equal(await page.inputValue('[data-testid=rank-k]'), '64');
    // The panels beside the settings hold still while the settings column grows (a note under the base format):
    // nothing moves under the reader's pointer.
    const generateAt = () => page.evaluate(() => document.querySelector('[data-testid=generate]').getBoundingClientRect().top + window.scrollY);
    const generateWas = await generateAt();
    const grown = await page.evaluate(() => {
      const controls = document.querySelector('#controls');
      const was = controls.offsetHeight;
      document.querySelector('#follow-note').textContent = 'A long note among the settings. '.repeat(40);
      return controls.offsetHeight - was;
    });
    assert.ok(grown > 100, `the settings column grew by ${grown}px`);
    assert.equal(await generateAt(), generateWas, 'Generate stays where it was when a note appears among the settings');
    await page.evaluate(() => { document.querySelector('#follow-note').textContent = ''; });
    // A laptop screen: Train is in view while the settings above it are read.
    await page.setViewportSize({ width: 1280, height: 800 });
    await trainInView(page, 'a 1280 × 800 screen');
    // Phone width: one column, nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page overflows a phone screen by ${overflow}px`);
    await page.screenshot({ path: join(ARTIFACTS, `${backend}-phone.png`), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: train 20 steps — loss falls, chart fills, text generates, the run is deterministic`, async () => {
    const { page, context, requests, errors } = await open(browser, `?${RUN}`);
    await modelLoaded(page);
    await trainToEnd(page, 600000);
    assert.equal(await attr(page, 'step'), '20');
    const points = Number(await page.getAttribute('#loss-chart', 'data-points'));
    assert.ok(points >= 20, `chart has ${points} train-loss points`);
    const val = await page.evaluate(() => Number(document.querySelector('[data-testid=val-loss]').dataset.value));
    const acc = await page.evaluate(() => Number(document.querySelector('[data-testid=accuracy]').dataset.value));
    // Validation before training (the base, ~5 nats on this task) and after 20 steps.
    const initial = Number(await attr(page, 'val-loss', 'data-initial'));
    assert.ok(val < initial - 1.0, `validation loss ${initial} → ${val}`);
    assert.ok(acc >= 0 && acc <= 1);
    const measured = Number(await attr(page, 'memory-measured'));
    const theory = Number(await attr(page, 'memory-total'));
    if (webgpu) {
      assert.ok(Math.abs(measured - theory) <= 0.05 * theory, `measured ${measured} vs theory ${theory}`);
    } else {
      // The CPU executor holds the theory's bytes, the nf4 base's included, plus the tied embedding in fp32 where the
      // theory counts 16 bits: 2 bytes per value of the shipped model's vocabulary × width.
      assert.equal(measured - theory, 2 * CONFIG.vocab_size * CONFIG.n_embd, `measured ${measured} vs theory ${theory}`);
      assert.match(await page.textContent('#memory-note'), /dequantized to fp32 only for its own product/);
    }
    await page.click('[data-testid=generate]');
    // The text streams in; the count reads "40 tokens" (no "/ 40") once both continuations are complete.
    await page.waitForFunction(() => document.querySelector('[data-testid=gen-progress]').textContent === '40 tokens', null, { timeout: 120000 });
    assert.ok((await text(page, 'output-tuned')).length > 0);
    assert.ok((await text(page, 'output-base')).length > 0);
    assert.equal(await text(page, 'tuned-caption'), 'Fine-tuned (after 20 steps)');
    // Under Train, which stays in view, the run's step and loss (the chart may be below the window).
    assert.match(await text(page, 'run-line'), /^step 20 \/ 20 · loss \d\.\d{4}/);
    assert.ok(await page.isVisible('[data-testid=run-line]'));
    await page.screenshot({ path: join(ARTIFACTS, `${backend}-trained.png`), fullPage: true });
    // Same link, same seed: the second run's losses equal the first's (the runs table keeps both).
    await trainToEnd(page, 600000);
    await page.click('[data-testid=reset]');
    // What the runs generated goes with them.
    await page.waitForFunction(() => document.querySelector('[data-testid=tuned-caption]').textContent === 'Fine-tuned', null, { timeout: 30000 });
    assert.deepEqual([await text(page, 'output-tuned'), await text(page, 'output-base')], ['', '']);
    // So does what they measured: the memory panel is back to the theory for the settings on screen.
    assert.equal(await text(page, 'memory-measured'), 'shown once training starts');
    assert.equal(await page.evaluate(() => document.querySelector('[data-testid=memory-measured]').dataset.value), undefined);
    const rows = await page.$$eval('#runs-table tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    assert.equal(rows.length, 2);
    assert.equal(rows[0][6], rows[1][6], `final losses ${rows[0][6]} and ${rows[1][6]}`);
    assert.equal(rows[0][7], rows[1][7]);
    const origin = new URL(PAGE_URL).origin;
    const foreign = requests.filter((r) => !r.url.startsWith(origin) && !r.url.startsWith('data:') && !r.url.startsWith('blob:'));
    assert.deepEqual(foreign, [], 'every request is same-origin');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: a copied link reproduces the settings; garbage parameters are reported and ignored`, async () => {
    const { page, context } = await open(browser, '?method=lora&r=4&targets=q,v&format=fp16&dq=0&lr=0.002&task=add&seed=9');
    await page.click('[data-testid=copy-link]');
    // The clipboard answers asynchronously; the button records the link once it has.
    await page.waitForSelector('[data-testid=copy-link][data-copied]');
    const link = await page.getAttribute('[data-testid=copy-link]', 'data-copied');
    assert.ok(link.startsWith(PAGE_URL.replace(/\/$/, '')), link);
    const { page: again, context: c2 } = await open(browser, link.slice(PAGE_URL.replace(/\/$/, '').length));
    assert.equal(await again.inputValue('[data-testid=method]'), 'lora');
    assert.equal(await again.inputValue('[data-testid=rank]'), '4');
    assert.equal(await again.inputValue('[data-testid=format]'), 'fp16');
    assert.equal(await again.inputValue('[data-testid=lr]'), '0.002');
    assert.equal(await again.inputValue('[data-testid=task]'), 'add');
    // The prompt follows the task the link names, as it follows one picked.
    assert.equal(await again.inputValue('[data-testid=prompt]'), '23+58=');
    assert.equal(await again.isChecked('[data-testid=targets-q]'), true);
    assert.equal(await again.isChecked('[data-testid=targets-k]'), false);
    assert.equal(await again.isChecked('[data-testid=double-quant]'), false);
    assert.equal(await attr(again, 'trainable-params'), String(expectedTrainable(CONFIG, 4, ['q', 'v'])));
    await c2.close();
    await context.close();
    const { page: bad, context: c3 } = await open(browser, '?r=0&lr=NaN&format=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&steps=-5&zz=1');
    const message = await text(bad, 'error');
    assert.match(message, /r="0"/);
    assert.match(message, /unknown link parameter "zz"/);
    // Markup in a parameter is shown as text, never parsed.
    assert.equal(await bad.$$eval('#error img', (n) => n.length), 0);
    assert.match(message, /<img src=x onerror=alert\(1\)>/);
    assert.equal(await bad.inputValue('[data-testid=rank]'), '8');
    await c3.close();
  });

  if (!webgpu) {
    test('cpu: your own text: pasted markup stays text, bad bytes are refused, then it trains', async () => {
      const { page, context } = await open(browser, '?task=text&steps=3&batch=1&seq=16');
      await modelLoaded(page);
      // Before any text: Train says what it waits for, and nothing starts.
      assert.ok(await page.isDisabled('[data-testid=train]'));
      assert.match(await text(page, 'train-why'), /your own text/);
      assert.match(await page.textContent('#user-text-info'), /not in the link/);
      // A file that is not UTF-8: the message is at the box.
      await page.setInputFiles('#user-file', { name: 'bad.txt', mimeType: 'text/plain', buffer: Buffer.from([0x41, 0xff, 0xfe, 0x41]) });
      await page.waitForFunction(() => /not UTF-8/.test(document.querySelector('#user-text-info').textContent));
      assert.ok(await page.isDisabled('[data-testid=train]'));
      // Typed or pasted text counts at once, without leaving the box; the prompt follows it.
      const markup = '<b>bold?</b> <script>window.hacked = 1</script> To be, or not to be, that is the question.\n'.repeat(20);
      await page.fill('#user-text', markup);
      const bytes = Buffer.byteLength(markup);
      await page.waitForFunction((n) => document.querySelector('#user-text-info').dataset.bytes === String(n), bytes);
      assert.equal(await page.inputValue('[data-testid=prompt]'), markup.split('\n')[0].slice(0, 40));
      await page.fill('#user-text', markup.slice(0, 383));
      await page.waitForFunction(() => document.querySelector('#user-text-info').dataset.bytes === '383');
      await page.fill('#user-text', markup);
      await page.waitForFunction((n) => document.querySelector('#user-text-info').dataset.bytes === String(n), bytes);
      await trainToEnd(page, 120000);
      assert.equal(await attr(page, 'step'), '3');
      assert.equal(await page.evaluate(() => window.hacked), undefined);
      assert.equal(await page.$$eval('#user-text-box b', (n) => n.length), 0);
      await context.close();
    });
  }

  test(`${backend}: a diverged run stops, says so, and is back at its last good validation`, async () => {
    // 150 steps validate every 10 (the snapshot a divergence returns to). The run is paused past the first
    // validation, so the NaN lands while it stands still, whatever the machine's speed; it diverges on Resume.
    const { page, context } = await open(browser, '?steps=150&batch=1&seq=16');
    await modelLoaded(page);
    await page.click('[data-testid=train]');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=step]').dataset.value) >= 11, null, { timeout: 300000 });
    await page.click('[data-testid=pause]');
    // Heard at once: "Pausing…" (not pressable again) until the step in flight ends, or already Resume.
    const [label, disabled] = await page.$eval('[data-testid=pause]', (b) => [b.textContent, b.disabled]);
    assert.ok(label === 'Resume' || (label === 'Pausing…' && disabled), `the pause button right after the press: ${label}`);
    await page.waitForFunction(() => document.querySelector('[data-testid=pause]').textContent === 'Resume', null, { timeout: 60000 });
    const paused = Number(await attr(page, 'step'));
    const lastGood = 10 * Math.floor(paused / 10);
    await page.evaluate(() => window.__qlora.worker.postMessage({ type: 'inject-nan' }));
    await page.click('[data-testid=pause]');
    await page.waitForFunction(() => /diverged/.test(document.querySelector('[data-testid=error]').textContent), null, { timeout: 300000 });
    const message = await text(page, 'error');
    assert.match(message, new RegExp(`diverged at step ${paused + 1} .*back at step ${lastGood}, the last good validation — try a learning rate below 0\\.003`));
    await page.waitForFunction((s) => document.querySelector('[data-testid=step]').dataset.value === String(s), lastGood);
    assert.equal(await page.isDisabled('[data-testid=train]'), false);
    await context.close();
  });

  test(`${backend}: pause stops the steps, resume continues them, reset clears the run`, async () => {
    const { page, context } = await open(browser, '?steps=400&batch=1&seq=8');
    await modelLoaded(page);
    await page.click('[data-testid=train]');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=step]').dataset.value) >= 2, null, { timeout: 120000 });
    // A control moved mid-run: the numbers follow it, the run keeps its own settings, and the run bar says so until
    // the control is back where the run has it.
    const setRank = async (r) => {
      await page.fill('[data-testid=rank]', String(r));
      await page.dispatchEvent('[data-testid=rank]', 'input');
    };
    await setRank(4);
    await page.waitForFunction(() => !document.querySelector('[data-testid=run-differs]').hidden, null, { timeout: 30000 });
    assert.match(await text(page, 'run-differs'), /^The run in progress keeps the settings it started with \(QLoRA r = 8, base nf4\+dq, 400 steps\); .*Pause, then Train/);
    await setRank(8);
    await page.waitForFunction(() => document.querySelector('[data-testid=run-differs]').hidden, null, { timeout: 30000 });
    await page.click('[data-testid=pause]');
    // Heard at once: "Pausing…" (not pressable again) until the step in flight ends, or already Resume.
    const [label, disabled] = await page.$eval('[data-testid=pause]', (b) => [b.textContent, b.disabled]);
    assert.ok(label === 'Resume' || (label === 'Pausing…' && disabled), `the pause button right after the press: ${label}`);
    await page.waitForFunction(() => document.querySelector('[data-testid=pause]').textContent === 'Resume', null, { timeout: 60000 });
    const paused = Number(await attr(page, 'step'));
    await page.waitForTimeout(webgpu ? 8000 : 1500);
    assert.equal(Number(await attr(page, 'step')), paused, 'no step while paused');
    await page.click('[data-testid=pause]');
    await page.waitForFunction((p) => Number(document.querySelector('[data-testid=step]').dataset.value) > p, paused, { timeout: 120000 });
    await page.click('[data-testid=pause]');
    await page.click('[data-testid=reset]');
    await page.waitForFunction(() => document.querySelector('[data-testid=step]').dataset.value === '0', null, { timeout: 120000 });
    assert.equal(await page.$$eval('#runs-table tbody tr', (trs) => trs.length), 1, 'the reset run is kept in the table');
    // Nothing of the reset run speaks for it any more (the phone's status bar said "step n / 400 · loss …").
    assert.equal(await page.$eval('[data-testid=run-status]', (n) => n.hidden && n.textContent === ''), true, 'the status bar went with the run');
    await context.close();
  });

  test(`${backend}: Reset while text is streaming clears it for good`, async () => {
    const { page, context, errors } = await open(browser, '?steps=3&batch=1&seq=8');
    await modelLoaded(page);
    await trainToEnd(page, 300000);
    await page.fill('#gen-tokens', '1024');
    await page.dispatchEvent('#gen-tokens', 'input');
    await page.click('[data-testid=generate]');
    // Reset is pressed with the text part way (its first chunk shown, far from 1,024 tokens).
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=gen-progress]').dataset.done) > 0, null, { timeout: 120000 });
    await page.click('[data-testid=reset]');
    await page.waitForFunction(() => document.querySelector('[data-testid=step]').dataset.value === '0', null, { timeout: 120000 });
    // Long enough for several more chunks, had the generation gone on writing.
    await page.waitForTimeout(webgpu ? 5000 : 2000);
    assert.deepEqual([await text(page, 'output-tuned'), await text(page, 'output-base'), await text(page, 'gen-progress')], ['', '', '']);
    assert.ok(await page.isEnabled('[data-testid=generate]'), 'Generate can be pressed again');
    assert.ok(await page.isHidden('[data-testid=stop-generate]'), 'no Stop for a generation that has ended');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: an embed downloads no model until asked, and shows its size`, async () => {
    const { page, context, requests } = await open(browser, '?embed=1&hide=seed,alpha');
    await page.waitForSelector('#load-gate:not([hidden])');
    assert.match(await page.textContent('#load-size'), /MiB download/);
    assert.equal(await page.isVisible('[data-control=seed]'), false);
    // Its iframe code keeps what the embed hides; its plain link opens the full page, every control back.
    await page.click('[data-testid=copy-iframe]');
    await page.waitForSelector('[data-testid=copy-iframe][data-copied]');
    // (The webgpu variant's link carries backend=webgpu, and the copies keep it: it is part of the link.)
    assert.match(await page.getAttribute('[data-testid=copy-iframe]', 'data-copied'), /\?v=1&embed=1&hide=seed,alpha(&backend=webgpu)?"/);
    await page.click('[data-testid=copy-link]');
    await page.waitForSelector('[data-testid=copy-link][data-copied]');
    assert.match(await page.getAttribute('[data-testid=copy-link]', 'data-copied'), /\/\?v=1(&backend=webgpu)?$/);
    const gets = requests.filter((r) => r.url.endsWith('model.safetensors') && r.method === 'GET');
    assert.deepEqual(gets, []);
    await page.click('#load-model');
    await modelLoaded(page);
    // The request log sees the worker's requests (the model is fetched there), so the empty list above meant something.
    assert.equal(requests.filter((r) => r.url.endsWith('model.safetensors') && r.method === 'GET').length, 1);
    await page.screenshot({ path: join(ARTIFACTS, `${backend}-embed.png`), fullPage: true });
    // An embed is a window 720 px tall in someone's post: Train is in it at every width, before any scrolling and
    // after scrolling to the chart.
    for (const width of [375, 600, 700, 1000]) {
      await page.setViewportSize({ width, height: 720 });
      await page.evaluate(() => window.scrollTo(0, 0));
      await trainInView(page, `an embed ${width} px wide, at the top`);
      await page.evaluate(() => document.querySelector('#loss-chart').scrollIntoView());
      if (width > 600) await trainInView(page, `an embed ${width} px wide, at the loss chart`);
    }
    await context.close();
  });
}
