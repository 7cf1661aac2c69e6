// The playground's CPU fallback: the browser without WebGPU, the engine's CPU executor compiled to wasm.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIREFOX, NAVIGATION, PAGE_URL, attr, hasRelaxedSimd, launch, modelLoaded, open, ready } from './harness.mjs';
import { playgroundTests } from './playground.mjs';
import { toggleTests } from './toggles.mjs';

playgroundTests('cpu');
toggleTests('cpu');

/// Trains 6 small steps on the CPU executor; returns what the page says about its threads and SIMD, and the losses.
/// `isolated: false`: a host without the cross-origin isolation headers; `withoutRelaxed`: a host without the
/// relaxed-SIMD builds' files.
async function trainSixSteps(browser, { isolated = true, withoutRelaxed = false } = {}) {
  const host = { isolated, relaxedBuilds: !withoutRelaxed };
  const { page, context, errors } = await open(browser, '?steps=6&batch=2&seq=32', host);
  await modelLoaded(page);
  const run = {
    cores: await page.evaluate(() => navigator.hardwareConcurrency),
    threads: Number(await attr(page, 'backend', 'data-threads')),
    simd: await attr(page, 'backend', 'data-simd'),
    notice: await page.textContent('#notice'),
    losses: await page.evaluate(() => new Promise((resolve, reject) => {
      const losses = [];
      window.__qlora.worker.addEventListener('message', ({ data }) => {
        if (data.type === 'step') losses.push(data.loss);
        if (data.type === 'done') resolve(losses);
        if (data.type === 'error') reject(new Error(data.message));
      });
      document.querySelector('[data-testid=train]').click();
    })),
  };
  // The refused requests of `withoutRelaxed` are logged as errors by the browser; nothing else may be.
  assert.deepEqual(errors.filter((e) => !(withoutRelaxed && /relaxed|404/.test(e))), []);
  await context.close();
  return run;
}

test('cpu: a link that asks for a backend is answered: backend=cpu as asked, backend=webgpu without WebGPU says why not', async () => {
  const browser = await launch({ webgpu: false });
  try {
    for (const [query, notice, tagline] of [
      ['?backend=cpu', /^Training runs on your processor, as the link asks \(backend=cpu\)\. /, '— on your processor (as the link asks)'],
      ['?backend=webgpu', /^Training runs on your processor, not a graphics card: the link asks for WebGPU \(backend=webgpu\), but /, '— on your processor (no WebGPU here)'],
      ['', /^Training runs on your processor, not a graphics card: (?!the link)/, '— on your processor (no WebGPU here)'],
    ]) {
      const { page, context, errors } = await open(browser, query);
      assert.equal(await attr(page, 'backend'), 'cpu', query);
      assert.match(await page.textContent('#notice'), notice, query);
      assert.equal((await page.textContent('[data-testid=tagline-where]')).trim(), tagline, query);
      // The link keeps what it asked for, and a copied link passes it on.
      if (query) await page.waitForFunction((q) => location.search.includes(q.slice(1)), query);
      assert.deepEqual(errors, [], query);
      await context.close();
    }
  } finally {
    await browser.close();
  }
});

test('cpu: on a cross-origin isolated page the CPU executor trains on worker threads, with the losses of one thread', async (t) => {
  const browser = await launch({ webgpu: false });
  try {
    const single = await trainSixSteps(browser, { isolated: false });
    assert.equal(single.threads, 1);
    assert.match(single.notice, /uses one core of your processor \(this page's host does not send the two headers that allow more\)/);
    const threaded = await trainSixSteps(browser);
    assert.equal(threaded.threads, threaded.cores, 'one pool thread per core');
    if (threaded.threads <= 1) {
      t.skip('this machine has one core: a threaded run would be one thread\'s, and comparing it proves nothing');
      return;
    }
    assert.match(threaded.notice, new RegExp(`uses ${threaded.cores} of your processor's cores`));
    assert.equal(threaded.losses.length, 6);
    assert.deepEqual(threaded.losses, single.losses, 'the same losses, bit for bit');
  } finally {
    await browser.close();
  }
});

test('cpu: a worker whose thread pool hangs once is replaced by a threaded one; hanging three times, by one on a single thread, which says why', { timeout: 120000 }, async () => {
  const browser = await launch({ webgpu: false });
  try {
    const { page, context, errors } = await open(browser, '');
    await modelLoaded(page);
    // The worker's test hook blocks the pool's start for good (once, or in every worker the page starts), as
    // Firefox's occasional hang does; the page must notice from outside the blocked worker.
    const startWith = (stallThreadStart) => page.evaluate(async (stall) => {
      const { startEngineWorker, THREAD_START_MS, THREAD_START_TRIES } = await import('./js/engine-worker.js');
      const t0 = performance.now();
      let workers = 0;
      const cpu = await new Promise((resolve, reject) => {
        const handle = startEngineWorker({ type: 'init', query: '', engine: { stallThreadStart: stall }, keepRuns: false }, {
          onMessage: (m) => {
            if (m.type === 'init') { handle.worker.terminate(); resolve(m.cpu); }
            if (m.type === 'error') reject(new Error(m.message));
          },
          onError: (e) => reject(new Error(e.message)),
          onWorker: () => { workers += 1; },
        });
      });
      return { cpu, workers, ms: performance.now() - t0, limit: THREAD_START_MS, tries: THREAD_START_TRIES };
    }, stallThreadStart);
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const once = await startWith(1);
    // Firefox's own hang can strike the retry too (about one start in ten): then a third threaded start follows.
    assert.ok(once.workers >= 2 && once.workers <= once.tries, `${once.workers} workers`);
    assert.equal(once.cpu.threads, cores, 'a later start has its threads');
    assert.equal(once.cpu.threadsWhy, null);
    assert.ok(once.ms >= once.limit, `replaced after ${once.ms} ms`);
    const always = await startWith(true);
    assert.equal(always.tries, 3);
    assert.equal(always.workers, 4, 'three threaded starts, then one on a single thread');
    assert.equal(always.cpu.threads, 1);
    assert.match(always.cpu.threadsWhy, /^the threaded engine failed to start \(its thread pool did not start within 5 s, 3 times\)$/);
    assert.ok(always.ms >= 3 * always.limit, `replaced after ${always.ms} ms`);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
  }
});

test('cpu: the CPU executor multiplies with relaxed SIMD where the browser has it, else plain SIMD, and says which', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const relaxed = await trainSixSteps(browser);
    // Chromium has had it since 114: there the probe itself is checked, so that a broken probe cannot pass as "no
    // relaxed SIMD here".
    if (!FIREFOX) assert.ok(await hasRelaxedSimd(browser), 'Chromium has relaxed SIMD: the probe must say so');
    if (!(await hasRelaxedSimd(browser))) {
      // Firefox ESR 140 has none: the page runs plain SIMD and says the browser is why.
      assert.equal(relaxed.simd, 'simd128');
      assert.match(relaxed.notice, /with separate multiply and add instructions \(this browser offers no fused ones to web pages\)\.$/);
      return;
    }
    assert.equal(relaxed.simd, 'relaxed', 'the browser has relaxed SIMD, and the page uses it');
    assert.match(relaxed.notice, /and its fused multiply-add instructions\.$/);
    const plain = await trainSixSteps(browser, { withoutRelaxed: true });
    assert.equal(plain.simd, 'simd128');
    assert.equal(plain.threads, relaxed.threads, 'losing relaxed SIMD keeps the threads');
    assert.match(plain.notice, /with separate multiply and add instructions \(the relaxed-SIMD engine failed to start \(/);
    // Fused and separate multiply-adds round differently; six steps stay far inside this.
    assert.equal(plain.losses.length, 6);
    for (const [i, loss] of plain.losses.entries()) {
      assert.ok(Math.abs(loss - relaxed.losses[i]) <= 1e-4 * Math.max(1, Math.abs(loss)), `step ${i + 1}: ${loss} vs ${relaxed.losses[i]}`);
    }
  } finally {
    await browser.close();
  }
});

test('cpu: the browser benchmark page measures every configuration and refuses bad parameters', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const page = await browser.newPage();
    await page.goto(`${PAGE_URL}bench.html?backends=cpu&steps=1&batch=1&seq=16`, NAVIGATION);
    await page.waitForFunction(() => document.body?.dataset.bench, null, { timeout: 120000 });
    const { results } = JSON.parse(await page.textContent('[data-testid=bench-json]'));
    const simd = (await hasRelaxedSimd(browser)) ? 'relaxed' : 'simd128';
    assert.deepEqual(results.map((r) => `${r.backend} ${r.method} ${r.format}`), ['cpu lora fp32', 'cpu qlora nf4', 'cpu full fp32']);
    for (const r of results) assert.ok(r.ms_per_step > 0 && Math.abs(r.tokens_per_s - 16000 / r.ms_per_step) < 1e-6, JSON.stringify(r));
    assert.deepEqual(results.map((r) => r.cpu_simd), [simd, simd, simd]);
    // The training step's six products and the multiply-add ceiling, as `qlora bench --matmul --backend cpu` lists them.
    const { matmul, madd_peak: peak } = JSON.parse(await page.textContent('[data-testid=bench-json]'));
    assert.deepEqual(matmul.map((r) => `${r.m}×${r.k}×${r.n}`), ['512×192×576', '512×192×768', '512×768×192', '64×48×64', '512×192×8', '512×8×576']);
    for (const r of matmul) assert.ok(r.gflops > 0 && r.cpu_simd === simd, JSON.stringify(r));
    assert.ok(peak.gflops > 0 && peak.cpu_simd === simd, JSON.stringify(peak));
    const rows = page.locator('[data-testid=matmul-rows] tr');
    assert.equal(await rows.count(), 7);
    assert.match(await rows.first().textContent(), /multiply-add peak.*1\.00×/);
    // On a phone the two tables scroll inside their boxes; the page itself stays as wide as the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `bench.html overflows a phone screen by ${overflow}px`);
    await page.setViewportSize({ width: 1280, height: 720 });
    await page.goto(`${PAGE_URL}bench.html?backends=cpu&steps=1&batch=1&seq=16&simd=plain`, NAVIGATION);
    await page.waitForFunction(() => document.body?.dataset.bench, null, { timeout: 120000 });
    const plain = JSON.parse(await page.textContent('[data-testid=bench-json]'));
    assert.deepEqual([...plain.results, ...plain.matmul, plain.madd_peak].map((r) => r.cpu_simd), Array(10).fill('simd128'));
    // model=…: a random model of a published shape, made in the worker, with the native side-by-side's two runs.
    await page.goto(`${PAGE_URL}bench.html?model=distilgpt2&steps=1&batch=1&seq=8`, NAVIGATION);
    await page.waitForFunction(() => document.body?.dataset.bench, null, { timeout: 300000 });
    assert.equal(await page.evaluate(() => document.body.dataset.bench), 'done', await page.textContent('[data-testid=error]'));
    const gpt2 = JSON.parse(await page.textContent('[data-testid=bench-json]'));
    assert.deepEqual(gpt2.results.map((r) => `${r.model} ${r.backend} ${r.method} ${r.format} dq=${r.dq} ${r.targets}`),
      ['distilgpt2 cpu lora fp32 dq=false qkv', 'distilgpt2 cpu qlora nf4 dq=true qkv,o,fc,proj']);
    for (const r of gpt2.results) assert.ok(r.ms_per_step > 0, JSON.stringify(r));
    assert.deepEqual(gpt2.matmul, []);
    assert.equal(await page.isVisible('#matmul-section'), false, 'no empty multiply table for a GPT-2 run');
    for (const [query, message] of [['steps=0', /steps must be a whole number from 1 to 1000/], ['simd=fast', /simd must be relaxed or plain, not fast/],
      ['model=llama', /model must be one of shakespeare, gpt2, distilgpt2, not llama/]]) {
      await page.goto(`${PAGE_URL}bench.html?${query}`, NAVIGATION);
      await page.waitForFunction(() => document.body?.dataset.bench === 'failed');
      assert.match(await page.textContent('[data-testid=error]'), message);
    }
    // Its throwaway runs are not kept: the playground in the same browser has nothing to restore.
    await page.goto(PAGE_URL, NAVIGATION);
    await ready(page);
    assert.equal(await page.isVisible('[data-testid=restore-bar]'), false, 'the benchmark runs replaced no kept run');
  } finally {
    await browser.close();
  }
});

test('cpu: a long generation shows its text as it grows and stops when asked', async () => {
  const browser = await launch({ webgpu: false });
  try {
    const { page, context, errors } = await open(browser, '');
    await modelLoaded(page);
    await page.fill('#gen-tokens', '1000');
    await page.fill('#temperature', '1');
    await page.click('[data-testid=generate]');
    await page.waitForFunction(() => /^\d+ \/ 1000 tokens$/.test(document.querySelector('[data-testid=gen-progress]').textContent), null, { timeout: 60000 });
    assert.ok((await page.textContent('[data-testid=output-tuned]')).length > 0, 'the text shows before the end');
    assert.equal(await page.isDisabled('[data-testid=generate]'), true);
    await page.click('[data-testid=stop-generate]');
    await page.waitForFunction(() => /^stopped at \d+ tokens$/.test(document.querySelector('[data-testid=gen-progress]').textContent), null, { timeout: 60000 });
    const stoppedAt = Number(/\d+/.exec(await page.textContent('[data-testid=gen-progress]'))[0]);
    assert.ok(stoppedAt > 0 && stoppedAt < 1000, `stopped at ${stoppedAt}`);
    assert.equal(await page.isDisabled('[data-testid=generate]'), false);
    assert.equal(await page.isVisible('[data-testid=stop-generate]'), false);
    // Nothing more arrives after the stop.
    const shown = await page.textContent('[data-testid=output-base]');
    await page.waitForTimeout(1000);
    assert.equal(await page.textContent('[data-testid=output-base]'), shown);
    // A short one runs to its end.
    await page.fill('#gen-tokens', '16');
    await page.click('[data-testid=generate]');
    await page.waitForFunction(() => document.querySelector('[data-testid=gen-progress]').textContent === '16 tokens', null, { timeout: 60000 });
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
  }
});
