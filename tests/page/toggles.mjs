// The page as a student meets it: the method and base-format toggles in every order, links written by hand, a bad
// value at one control, the runs table, one-click experiments, honest accuracy and a phone screen.
// What they check does not depend on where the page trains (the playground tests train on both backends in both
// browsers), so each browser runs them on one backend: Chromium on the CPU executor (its SwiftShader WebGPU is the
// slowest), Firefox on WebGPU (lavapipe), so the toggles' runs see both executors.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARTIFACTS, FIREFOX, NAVIGATION, attr, expectedTrainable, launch, modelLoaded, open, ready, text, testsOrSkipped, trainToEnd, webgpuLeftOut } from './harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONFIG = JSON.parse(readFileSync(join(ROOT, 'www/models/shakespeare/config.json'), 'utf8'));
const FORMATS = ['fp32', 'fp16', 'bf16', 'int8', 'int4', 'fp4', 'nf4'];
const QUANTIZED = new Set(['int8', 'int4', 'fp4', 'nf4']);
const WITH_DQ = new Set(['fp4', 'nf4']);
/// Tiny runs: a step of 1 × 8 tokens takes well under a second even on SwiftShader.
const TINY = 'steps=3&batch=1&seq=8';

/// Waits until the numbers shown answer the page's latest settings.
async function current(page) {
  await page.waitForFunction(() => document.body.dataset.accountSent === document.body.dataset.accountShown);
}

/// What the base controls show: method, format, dq ticked, dq enabled, format enabled.
async function base(page) {
  return page.evaluate(() => ({
    method: document.querySelector('[data-testid=method]').value,
    format: document.querySelector('[data-testid=format]').value,
    dq: document.querySelector('[data-testid=double-quant]').checked,
    dqEnabled: !document.querySelector('[data-testid=double-quant]').disabled,
    formatEnabled: !document.querySelector('[data-testid=format]').disabled,
  }));
}

/// Nothing is refused and Train is ready.
async function allFine(page, what) {
  assert.equal(await page.$$eval('[data-testid=field-error]', (n) => n.length), 0, `${what}: no control is refused`);
  assert.ok(await page.isHidden('[data-testid=error]'), `${what}: ${await text(page, 'error')}`);
  assert.ok(await page.isEnabled('[data-testid=train]'), `${what}: Train is enabled`);
}

/// Moves r and checks the trainable count follows: the page is live.
async function stillLive(page, r, what) {
  await page.fill('[data-testid=rank]', String(r));
  await page.dispatchEvent('[data-testid=rank]', 'input');
  await current(page);
  const method = await page.inputValue('[data-testid=method]');
  const want = method === 'full' ? null : expectedTrainable(CONFIG, r, ['q', 'k', 'v', 'o', 'fc', 'proj']);
  if (want != null) assert.equal(await attr(page, 'trainable-params'), String(want), `${what}: r=${r} counts at once`);
}

// (Firefox's release builds from before WebGPU shipped on Linux have none: there they run on the CPU too.)
const TOGGLES_BACKEND = FIREFOX && !(await webgpuLeftOut()) ? 'webgpu' : 'cpu';

/// Registers the toggle tests when `backend` is this browser's backend for them (called by webgpu.test.mjs and
/// cpu.test.mjs alike).
export function toggleTests(backend, skip = null) {
  // Declared skipped, with the reason, where the browser has no such backend (harness.mjs: webgpuLeftOut).
  const test = testsOrSkipped(skip);
  if (backend !== TOGGLES_BACKEND) return;
  let browser;
  test.before(async () => { browser = await launch({ webgpu: backend === 'webgpu' }); });
  test.after(async () => { await browser.close(); });

  test(`${backend}: every base format after every other, with and without double quantization: the method and dq follow, nothing freezes`, async () => {
    const { page, context, errors } = await open(browser, '');
    for (const dqChoice of [true, false]) {
      // Start from nf4 with the reader's double-quantization choice.
      await page.selectOption('[data-testid=format]', 'nf4');
      if ((await base(page)).dq !== dqChoice) await page.click('[data-testid=double-quant]');
      let r = 2;
      for (const from of FORMATS) {
        for (const to of FORMATS) {
          if (from === to) continue;
          await page.selectOption('[data-testid=format]', from);
          await page.selectOption('[data-testid=format]', to);
          await current(page);
          const b = await base(page);
          const what = `dq ${dqChoice}: ${from} → ${to}`;
          assert.equal(b.method, QUANTIZED.has(to) ? 'qlora' : 'lora', `${what}: the method follows the base`);
          assert.equal(b.dqEnabled, WITH_DQ.has(to), `${what}: dq is offered only for fp4 and nf4`);
          assert.equal(b.dq, WITH_DQ.has(to) && dqChoice, `${what}: dq is off where it does not apply, the reader's choice where it does`);
          await allFine(page, what);
          const q = new URL(page.url()).searchParams;
          assert.equal(q.get('format') ?? 'nf4', to, `${what}: the link follows`);
          r = r === 2 ? 3 : 2;
          await stillLive(page, r, what);
        }
      }
    }
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: LoRA ↔ QLoRA ↔ full: the base follows the method, visibly, and each method gets its last base back`, async () => {
    const { page, context, errors } = await open(browser, '');
    const pick = async (method) => { await page.selectOption('[data-testid=method]', method); await current(page); return base(page); };
    let b = await pick('lora');
    assert.deepEqual([b.method, b.format, b.dq, b.dqEnabled], ['lora', 'fp32', false, false]);
    assert.match(await text(page, 'follow-note'), /LoRA keeps the frozen base in 16 or 32 bits/);
    await page.selectOption('[data-testid=format]', 'fp16');
    b = await pick('qlora');
    assert.deepEqual([b.method, b.format, b.dq], ['qlora', 'nf4', true], 'QLoRA comes back on nf4 with double quantization');
    assert.match(await text(page, 'follow-note'), /QLoRA keeps the frozen base quantized/);
    await page.selectOption('[data-testid=format]', 'int4');
    b = await pick('lora');
    assert.equal(b.format, 'fp16', 'LoRA gets the reader\'s fp16 back');
    b = await pick('full');
    assert.deepEqual([b.format, b.formatEnabled, b.dq, b.dqEnabled], ['fp32', false, false, false], 'full fine-tuning shows fp32');
    assert.equal(new URL(page.url()).searchParams.get('method'), 'full');
    b = await pick('qlora');
    assert.deepEqual([b.format, b.dq], ['int4', false], 'QLoRA gets the reader\'s int4 back');
    await page.selectOption('[data-testid=format]', 'fp16');
    await current(page);
    assert.match(await text(page, 'follow-note'), /fp16 base is not quantized, which makes this LoRA/);
    assert.equal((await base(page)).method, 'lora');
    // The memory differs between LoRA on fp16 and QLoRA on nf4 + dq.
    const lora = Number(await attr(page, 'memory-total'));
    await pick('qlora');
    await page.selectOption('[data-testid=format]', 'nf4');
    await current(page);
    assert.deepEqual(await base(page), { method: 'qlora', format: 'nf4', dq: true, dqEnabled: true, formatEnabled: true });
    assert.ok(Number(await attr(page, 'memory-total')) < lora, 'QLoRA\'s quantized base takes less memory');
    // The explanation says what NF4 and double quantization are, with this model's bits per weight.
    const explained = await text(page, 'base-explainer');
    assert.match(explained, /NF4 \(4-bit NormalFloat\).*block of 64 weights: 4\.5 bits per weight/);
    assert.match(explained, /one fp32 constant per 256 of them: NF4 goes from 4\.5 to 4\.1\d\d bits per weight/);
    assert.match(explained, /This is the QLoRA paper's base \(nf4 with double quantization\)/);
    await allFine(page, 'after the switches');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: links written by hand open what they name; a contradiction drops only its parameter`, async () => {
    for (const [query, want] of [
      ['?format=fp16', ['lora', 'fp16', false]],
      ['?format=int4', ['qlora', 'int4', false]],
      ['?format=int8', ['qlora', 'int8', false]],
      ['?method=lora&format=fp16', ['lora', 'fp16', false]],
      ['?method=lora', ['lora', 'fp32', false]],
      ['?method=full', ['full', 'fp32', false]],
      ['?format=fp4', ['qlora', 'fp4', true]],
    ]) {
      const { page, context } = await open(browser, query);
      const b = await base(page);
      assert.deepEqual([b.method, b.format, b.dq], want, query);
      await allFine(page, query);
      await context.close();
    }
    const { page, context } = await open(browser, '?format=int4&dq=1&r=4');
    const b = await base(page);
    assert.deepEqual([b.method, b.format, b.dq, await page.inputValue('[data-testid=rank]')], ['qlora', 'int4', false, '4']);
    const message = await text(page, 'error');
    assert.match(message, /dq=1 ignored: double quantization applies to fp4 and nf4 bases, not to int4/);
    assert.doesNotMatch(message, /format|defaults used/);
    await context.close();
    // Each message of a bad link goes once the reader sets the control it names; one about no control stays.
    const bad = await open(browser, '?Steps=-5&batch=x&seed=1&zz=1');
    const lines = async () => (await bad.page.isVisible('[data-testid=error]') ? (await text(bad.page, 'error')).split('\n') : []);
    assert.equal((await lines()).length, 3, (await lines()).join('\n'));
    await bad.page.fill('[data-testid=steps]', '30');
    await bad.page.dispatchEvent('[data-testid=steps]', 'input');
    await current(bad.page);
    assert.deepEqual((await lines()).map((l) => l.split(' ').slice(0, 3).join(' ')), ['link parameter batch="x"', 'unknown link parameter']);
    await bad.page.fill('[data-testid=batch]', '2');
    await bad.page.dispatchEvent('[data-testid=batch]', 'input');
    await current(bad.page);
    assert.deepEqual((await lines()).map((l) => l.split(' ').slice(0, 3).join(' ')), ['unknown link parameter']);
    assert.equal(await bad.page.$$eval('[data-testid=field-error]', (n) => n.length), 0);
    assert.ok(await bad.page.isEnabled('[data-testid=train]'));
    await bad.context.close();
    // A contradiction in the base goes once the reader sets the base, whichever of its controls they touch.
    const conflict = await open(browser, '?method=lora&format=nf4');
    assert.match(await text(conflict.page, 'error'), /format=nf4 ignored/);
    await conflict.page.selectOption('[data-testid=method]', 'qlora');
    await current(conflict.page);
    assert.ok(await conflict.page.isHidden('[data-testid=error]'), await text(conflict.page, 'error'));
    await conflict.context.close();
  });

  test(`${backend}: a bad value is named at its control; every other number stays live; Train says why it waits`, async () => {
    const { page, context, errors } = await open(browser, '');
    await page.fill('[data-testid=lr]', '');
    await page.dispatchEvent('[data-testid=lr]', 'input');
    await current(page);
    assert.equal(await page.$$eval('[data-testid=field-error]', (n) => n.map((e) => e.dataset.for)).then((f) => f.join()), 'lr');
    assert.match(await page.textContent('[data-testid=field-error][data-for=lr]'), /learning rate must be/);
    assert.ok(await page.isDisabled('[data-testid=train]'));
    assert.match(await text(page, 'train-why'), /learning rate/);
    await stillLive(page, 4, 'with the learning rate refused');
    await page.uncheck('[data-testid=targets-k]');
    await current(page);
    assert.equal(await attr(page, 'trainable-params'), String(expectedTrainable(CONFIG, 4, ['q', 'v', 'o', 'fc', 'proj'])));
    await page.selectOption('[data-testid=format]', 'int4');
    await current(page);
    assert.equal((await base(page)).method, 'qlora');
    await page.fill('[data-testid=lr]', '0.002');
    await page.dispatchEvent('[data-testid=lr]', 'input');
    await current(page);
    await allFine(page, 'after fixing the learning rate');
    assert.match(page.url(), /lr=0\.002/);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: a number box holding a fraction, a negative number or nothing is named at its box; the page stays live`, async () => {
    const { page, context, errors } = await open(browser, '');
    const good = {};
    for (const id of ['steps', 'batch', 'seq', 'seed']) good[id] = await page.inputValue(`[data-testid=${id}]`);
    let r = 2;
    for (const [id, value, message] of [
      ['steps', '2.5', /^steps must be a whole number between 1 and 5000 \(got 2\.5\)$/],
      ['batch', '1.5', /^batch must be a whole number between 1 and 64 \(got 1\.5\)$/],
      ['batch', '-2', /^batch must be a whole number between 1 and 64 \(got -2\)$/],
      ['seq', '20.5', /^sequence length must be a whole number between 8 and 256 \(got 20\.5\)$/],
      ['seed', '-1', /^seed must be a whole number between 0 and 4294967295 \(got -1\)$/],
      ['seed', '99999999999', /^seed must be a whole number between 0 and 4294967295 \(got 99999999999\)$/],
      ['batch', '65', /^batch must be a whole number between 1 and 64 \(got 65\)$/],
      ['steps', '', /^steps must be a whole number between 1 and 5000 \(the box is empty\)$/],
    ]) {
      const what = `${id}=${JSON.stringify(value)}`;
      await page.fill(`[data-testid=${id}]`, value);
      await page.dispatchEvent(`[data-testid=${id}]`, 'input');
      await current(page);
      assert.deepEqual(await page.$$eval('[data-testid=field-error]', (n) => n.map((e) => e.dataset.for)), [id], what);
      assert.match(await page.textContent(`[data-testid=field-error][data-for=${id}]`), message, what);
      assert.ok(await page.isHidden('[data-testid=error]'), `${what}: nothing in the page's error bar`);
      assert.ok(await page.isDisabled('[data-testid=train]'), what);
      assert.match(await page.textContent('#trainable-detail'), /The numbers use the default for the \w+/, what);
      await stillLive(page, r++, what);
      assert.doesNotMatch(page.url(), new RegExp(`[?&]${id}=${value.replace('.', '\\.')}(&|$)`), `${what}: the link keeps no refused value`);
      await page.fill(`[data-testid=${id}]`, good[id]);
      await page.dispatchEvent(`[data-testid=${id}]`, 'input');
      await current(page);
      await allFine(page, `after fixing ${what}`);
    }
    // No matrix ticked: said at the matrices, and the count says it holds the default ones meanwhile.
    for (const t of ['q', 'k', 'v', 'o', 'fc', 'proj']) await page.uncheck(`[data-testid=targets-${t}]`);
    await current(page);
    assert.match(await page.textContent('[data-testid=field-error][data-for=targets]'), /choose at least one matrix to adapt/);
    assert.match(await page.textContent('#trainable-detail'), /The numbers use the default for the matrices to adapt until it is fixed\.$/);
    await page.check('[data-testid=targets-v]');
    await current(page);
    await allFine(page, 'with v ticked');
    // A generation box out of its range is named below the generation controls, and nothing is generated.
    await page.fill('#gen-tokens', '5000');
    await page.click('[data-testid=generate]');
    assert.match(await page.textContent('[data-testid=field-error][data-for=gen-tokens]'), /^tokens must be a whole number between 1 and 1024 \(got 5000\)$/);
    assert.ok(await page.isHidden('[data-testid=error]'));
    await page.fill('#gen-tokens', '4');
    await page.click('[data-testid=generate]');
    await page.waitForFunction(() => document.querySelector('[data-testid=gen-progress]').textContent === '4 tokens', null, { timeout: 120000 });
    assert.equal(await page.$$eval('[data-testid=field-error]', (n) => n.length), 0);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: a rank per matrix shows "mixed" and the scaling of each matrix`, async () => {
    const { page, context } = await open(browser, '?ranks=q:2,fc:16');
    assert.match(await page.textContent('#rank-out'), /mixed: q 2, k 8, v 8, o 8, fc 16, proj 8/);
    assert.match(await page.textContent('#scaling-out'), /q 8\.000, k 2\.000, .*fc 1\.000/);
    // A rank past the limit is refused at the matrices and has no scaling; the others keep theirs.
    for (const [value, why] of [['100', /got "100"/], ['1.5', /got "1\.5"/], ['', /the box is empty/]]) {
      await page.fill('[data-testid=rank-fc]', value);
      await page.dispatchEvent('[data-testid=rank-fc]', 'input');
      await current(page);
      assert.match(await page.textContent('[data-testid=field-error][data-for=ranks]'), why, value);
      assert.match(await page.textContent('#scaling-out'), /^q 8\.000, k 2\.000, v 2\.000, o 2\.000, fc –, proj 2\.000$/, value);
    }
    await page.fill('[data-testid=rank-fc]', '16');
    await page.dispatchEvent('[data-testid=rank-fc]', 'input');
    await current(page);
    assert.match(await page.textContent('#scaling-out'), /fc 1\.000/);
    await context.close();
    // One matrix adapted, at its own rank: listed as such, and its scaling is its own.
    const one = await open(browser, '?targets=q&ranks=q:4');
    assert.equal(await one.page.textContent('#rank-out'), '8 (mixed: q 4)');
    assert.equal(await one.page.textContent('#scaling-out'), 'q 4.000');
    await one.page.fill('[data-testid=rank-q]', '100');
    await one.page.dispatchEvent('[data-testid=rank-q]', 'input');
    await current(one.page);
    assert.equal(await one.page.textContent('#scaling-out'), 'q –');
    await one.context.close();
  });

  test(`${backend}: a link's per-matrix ranks in another order, or equal to r, are the run the controls hold`, async () => {
    const { page, context, errors } = await open(browser, `?${TINY}&ranks=fc:16,q:2,k:8`);
    await modelLoaded(page);
    assert.match(await page.textContent('#rank-out'), /mixed: q 2, k 8, v 8, o 8, fc 16, proj 8/);
    await trainToEnd(page, 300000);
    // A box changed and changed back: the controls now write the ranks their own way (`q:2,fc:16`), and they are
    // still the run's settings, so the run bar says nothing differs and the memory panel keeps the run's figure.
    await page.fill('[data-testid=alpha]', '17');
    await page.dispatchEvent('[data-testid=alpha]', 'input');
    await current(page);
    await page.waitForSelector('[data-testid=run-differs]:not([hidden])');
    await page.fill('[data-testid=alpha]', '16');
    await page.dispatchEvent('[data-testid=alpha]', 'input');
    await current(page);
    await page.waitForSelector('[data-testid=run-differs]', { state: 'hidden' });
    assert.ok(Number(await attr(page, 'memory-measured')) > 0, 'the run\'s measured memory is shown');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: adapter storage measures the paper's bf16 adapters and the claim of int4 ones beside the fp32 adapters trained`, async () => {
    const { page, context, errors } = await open(browser, `?${TINY}&astore=BF16`);
    await modelLoaded(page);
    assert.equal(await page.inputValue('[data-testid=adapter-storage]'), 'bf16', 'a hand-written astore opens its option');
    await trainToEnd(page, 300000);
    const loss = String.raw`the validation loss is \d+\.\d{4} \(vs \d+\.\d{4} with the fp32 adapters this run trained; the paper keeps them in bf16, PEFT in fp32, and neither quantizes them\)`;
    assert.match(await page.textContent('#rounded-note'), new RegExp(`^The QLoRA paper's adapters, measured: with A and B rounded to bf16, ${loss}`));
    await page.selectOption('[data-testid=adapter-storage]', 'int4');
    await current(page);
    await trainToEnd(page, 300000);
    assert.match(await page.textContent('#rounded-note'), new RegExp(`^The claim that QLoRA quantizes the adapters, measured: with A and B rounded to int4, ${loss}`));
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: a finished run enters the Runs table at once, labelled on the chart; the table survives a reload`, async () => {
    const { page, context, errors } = await open(browser, `?${TINY}&r=4`);
    await modelLoaded(page);
    await trainToEnd(page, 300000);
    const rows = () => page.$$eval('[data-testid=runs] tbody tr', (trs) => trs.map((tr) => tr.dataset.label));
    assert.deepEqual(await rows(), ['QLoRA r=4 nf4+dq']);
    await page.selectOption('[data-testid=format]', 'fp16');
    await current(page);
    await trainToEnd(page, 300000);
    assert.deepEqual(await rows(), ['QLoRA r=4 nf4+dq', 'LoRA r=4 fp16']);
    // The chart's key names the earlier run and the current one, which is in the table now: its number, and the
    // colour of its row.
    const legend = await page.textContent('#loss-chart .u-legend');
    assert.match(legend, /#1 QLoRA r=4 nf4\+dq/);
    assert.match(legend, /train loss \(#2 LoRA r=4 fp16\)/);
    const colours = await page.evaluate(() => {
      const marker = [...document.querySelectorAll('#loss-chart .u-legend .u-series')]
        .find((s) => /train loss \(#2/.test(s.textContent)).querySelector('.u-marker');
      const swatch = document.querySelectorAll('#runs-table tbody tr')[1].querySelector('.swatch');
      return [getComputedStyle(marker).borderColor, getComputedStyle(swatch).backgroundColor];
    });
    assert.equal(colours[0], colours[1], 'the current run has its row\'s colour on the chart');
    await page.reload(NAVIGATION);
    await ready(page);
    assert.deepEqual(await rows(), ['QLoRA r=4 nf4+dq', 'LoRA r=4 fp16'], 'the table is kept across a reload');
    assert.match(await page.textContent('#loss-chart .u-legend'), /#2 LoRA r=4 fp16/);
    await page.click('[data-testid=clear-runs]');
    assert.deepEqual(await rows(), []);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: one click runs "FP16 vs INT4 vs NF4 base", overlays the runs and says what came out`, async () => {
    const { page, context, errors } = await open(browser, `?${TINY}&r=2&format=fp16`);
    await modelLoaded(page);
    await page.click('[data-testid=experiment-formats]');
    await page.waitForFunction(() => document.querySelector('[data-testid=experiment-summary]').dataset.done, null, { timeout: 600000 });
    const summary = await text(page, 'experiment-summary');
    assert.equal(await page.getAttribute('[data-testid=experiment-summary]', 'data-done'), 'done', summary);
    assert.match(summary, /FP16 vs INT4 vs NF4 base, 3 steps each — validation loss: LoRA r=2 fp16 \d\.\d{3} .*QLoRA r=2 int4 .*QLoRA r=2 nf4\+dq/);
    const labels = await page.$$eval('[data-testid=runs] tbody tr', (trs) => trs.map((tr) => tr.dataset.label));
    assert.deepEqual(labels, ['LoRA r=2 fp16', 'QLoRA r=2 int4', 'QLoRA r=2 nf4+dq']);
    // A side trip: the controls are the reader's again (the link's fp16 LoRA), and the run bar says the run shown
    // (nf4, the last of the series) is not what they hold.
    assert.match(summary, /Your settings are back as they were/);
    assert.deepEqual([await page.inputValue('[data-testid=method]'), await page.inputValue('[data-testid=format]')], ['lora', 'fp16']);
    await page.waitForSelector('[data-testid=run-differs]:not([hidden])');
    assert.match(await text(page, 'run-differs'), /QLoRA r = 2, base nf4\+dq/);
    // Accuracy is shown with what it is worth on "even": chance and the majority answer.
    assert.match(await text(page, 'accuracy-baseline'), /chance 50%; always “(yes|no)”: \d+%/);
    assert.match(await text(page, 'answers'), /answers on 50 held-out questions: “/);
    await page.screenshot({ path: join(ARTIFACTS, `${backend}-experiment.png`), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: one click runs "r = 1 vs 8 vs 64" and says the scale α/r moved with the rank`, async () => {
    const { page, context, errors } = await open(browser, `?${TINY}`);
    await modelLoaded(page);
    await page.click('[data-testid=experiment-ranks]');
    await page.waitForFunction(() => document.querySelector('[data-testid=experiment-summary]').dataset.done, null, { timeout: 600000 });
    const summary = await text(page, 'experiment-summary');
    assert.equal(await page.getAttribute('[data-testid=experiment-summary]', 'data-done'), 'done', summary);
    // α stays at its default 16 while r goes 1 → 8 → 64: the summary says the scale moved too, and how to hold it.
    assert.match(summary, /α stayed 16, so the adapters' scale α\/r went 16 → 2 → 0\.25: part of the gap may be the scale, not the rank \(to compare ranks alone, keep α\/r fixed, e\.g\. α = 2r\)\./);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test(`${backend}: on a phone the tables scroll visibly, checkboxes are big enough to tap, and a run's progress stays in view`, async () => {
    const { page, context } = await open(browser, `?${TINY}`);
    await page.setViewportSize({ width: 390, height: 844 });
    await modelLoaded(page);
    const box = await page.locator('[data-testid=double-quant]').boundingBox();
    assert.ok(box.width >= 24 && box.height >= 24, `checkbox ${box.width}×${box.height}`);
    const scale = await page.$eval('#scale-table', (t) => {
      const s = t.closest('.scroll');
      return { scrolls: s.scrollWidth > s.clientWidth, overflow: getComputedStyle(s).overflowX };
    });
    assert.deepEqual(scale, { scrolls: true, overflow: 'auto' });
    await trainToEnd(page, 300000);
    const status = page.locator('[data-testid=run-status]');
    assert.match(await status.textContent(), /step 3 \/ 3 · loss \d/);
    assert.equal(await page.isVisible('[data-testid=run-line]'), false, 'one status line on a phone, not two');
    const where = await status.boundingBox();
    assert.ok(where && where.y + where.height <= 844 + 1 && where.y > 0, `the status bar is on screen: ${JSON.stringify(where)}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page overflows a phone screen by ${overflow}px`);
    await page.screenshot({ path: join(ARTIFACTS, `${backend}-phone-run.png`) });
    await context.close();
  });
}
