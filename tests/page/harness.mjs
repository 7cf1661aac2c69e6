// Shared set-up of the page tests: the browser ($BROWSER: Debian's Chromium through playwright-core, the default,
// or Debian's Firefox ESR through puppeteer-core over WebDriver BiDi, firefox.mjs), the page served by
// `cargo xtask test` at $PAGE_URL, screenshots into artifacts/<browser>/, and a record of every request the page makes.
import { chromium } from 'playwright-core';
import { test } from 'node:test';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchFirefox } from './firefox.mjs';

export const BROWSER = process.env.BROWSER || 'chromium';
if (!['chromium', 'firefox'].includes(BROWSER)) throw new Error(`BROWSER must be chromium or firefox, not ${BROWSER}`);
export const FIREFOX = BROWSER === 'firefox';
export const PAGE_URL = process.env.PAGE_URL || 'http://127.0.0.1:8000/';
export const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts', BROWSER);
mkdirSync(ARTIFACTS, { recursive: true });

/// A browser with WebGPU or without it (the CPU fallback). Chromium's WebGPU runs on SwiftShader
/// (`--enable-unsafe-webgpu`), Firefox's on the system's Vulkan driver (lavapipe here).
export async function launch({ webgpu }) {
  const browser = FIREFOX ? await launchFirefox({ webgpu }) : await launchChromium({ webgpu });
  if (webgpu) WEBGPU_BROWSERS.add(browser);
  return browser;
}

function launchChromium({ webgpu }) {
  const args = ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  else args.push('--disable-features=WebGPU,Vulkan', '--disable-gpu');
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
}

/// The browsers launched with WebGPU. Their WebGPU is software here (SwiftShader, lavapipe), which the page passes
/// over for its CPU executor unless the link says `backend=webgpu` (www/js/processor.js: chooseBackend): `open()`
/// adds that to a link that names no backend, so their tests train through WebGPU as a reader's GPU would.
const WEBGPU_BROWSERS = new WeakSet();

/// `query` with `backend=webgpu` added where `browser` has WebGPU and the query names no backend.
export function withBackend(browser, query) {
  if (!WEBGPU_BROWSERS.has(browser) || /[?&]backend=/i.test(query)) return query;
  return `${query}${query.includes('?') ? '&' : '?'}backend=webgpu`;
}

/// Why this browser has no WebGPU at all, or null. Firefox's release and ESR builds from before WebGPU shipped on Linux
/// (Debian's firefox-esr 140) refuse every adapter request, whatever the prefs ("WebGPU is not yet available in Release
/// or late Beta builds"): there the WebGPU tests are skipped with that reason, and Chromium runs them. Any other way
/// of getting no adapter (a missing flag, a failing driver) still fails them.
export function webgpuLeftOut() {
  // Asked once per test process (each file imports it, some twice).
  leftOut ??= FIREFOX ? askFirefox() : Promise.resolve(null);
  return leftOut;
}
let leftOut = null;

async function askFirefox() {
  const browser = await launch({ webgpu: true });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${PAGE_URL}favicon.svg`, NAVIGATION);
    const refusal = await page.evaluate(async () => {
      try {
        await navigator.gpu.requestAdapter();
        return null;
      } catch (e) {
        return String(e && e.message);
      }
    });
    return refusal && /not yet available in Release/.test(refusal) ? `this Firefox has no WebGPU: ${refusal}` : null;
  } finally {
    await browser.close();
  }
}

/// Whether this browser has relaxed SIMD (Chromium since 114, Firefox after ESR 140), asked with the page worker's own
/// probe module: its bytes are read from www/js/worker.js, so that the test and the page ask the same question.
export async function hasRelaxedSimd(browser) {
  const worker = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'www', 'js', 'worker.js'), 'utf8');
  const list = /RELAXED_SIMD_PROBE = new Uint8Array\(\[([\s\S]*?)\]\)/.exec(worker)[1];
  const bytes = list.replace(/\/\/.*$/gm, '').split(',').map((b) => b.trim()).filter(Boolean).map(Number);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${PAGE_URL}favicon.svg`, NAVIGATION);
    return await page.evaluate((b) => WebAssembly.validate(new Uint8Array(b)), bytes);
  } finally {
    await context.close();
  }
}

/// node:test's `test`, or, where `skip` gives a reason, one that declares each test skipped with it and runs no hooks
/// (a suite of one backend's tests, on a browser without that backend).
export function testsOrSkipped(skip) {
  if (!skip) return test;
  const skipped = (name, ...rest) => test(name, { ...(rest.length > 1 ? rest[0] : {}), skip }, rest[rest.length - 1]);
  skipped.before = () => {};
  skipped.after = () => {};
  return skipped;
}

/// The page as a lesser static host serves it: the test server (xtask/src/static_server.rs) imitates one under
/// `/as-host/<variant>/` — `no-isolation`: without the two cross-origin isolation headers (the page then runs its
/// single-threaded engine); `no-relaxed`: without the relaxed-SIMD engine builds' files.
export function pageUrl({ isolated = true, relaxedBuilds = true } = {}) {
  let url = PAGE_URL;
  if (!isolated) url += 'as-host/no-isolation/';
  if (!relaxedBuilds) url += 'as-host/no-relaxed/';
  return url;
}

/// A page with request and error logs attached (worker requests included). `isolated` and `relaxedBuilds` choose
/// the host (`pageUrl`); `setup(context)` runs before the page opens (to route requests, say). In a browser with
/// WebGPU the page trains through it (`withBackend`).
export async function open(browser, query = '', { isolated = true, relaxedBuilds = true } = {}, setup = null) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  if (setup) await setup(context);
  const page = await context.newPage();
  const requests = [];
  const errors = [];
  context.on('request', (r) => requests.push({ url: r.url(), method: r.method() }));
  page.on('pageerror', (e) => errors.push(e.message));
  // Chromium reports a dedicated worker's console apart from the page's; Firefox's BiDi log has both in one.
  const consoleErrors = (m) => { if (m.type() === 'error') errors.push(m.text()); };
  if (FIREFOX) page.on('console', consoleErrors);
  else page.on('worker', (w) => w.on('console', consoleErrors));
  await page.goto(pageUrl({ isolated, relaxedBuilds }) + withBackend(browser, query), NAVIGATION);
  await ready(page);
  return { page, context, requests, errors };
}

/// Navigations wait for the page's own state, not for the browser's load event: on a loaded machine that event can
/// come late (the page is usable before it), and what a test needs is the engine's first answer.
export const NAVIGATION = { waitUntil: 'commit', timeout: 120000 };

/// Waits until the page shows the engine's first numbers (the worker started, the settings were counted).
export async function ready(page) {
  await page.waitForSelector('[data-testid=trainable-params][data-value]', { timeout: 120000 });
}

export const attr = (page, id, name = 'data-value') => page.getAttribute(`[data-testid=${id}]`, name);
export const text = (page, id) => page.textContent(`[data-testid=${id}]`);

export async function modelLoaded(page) {
  await page.waitForFunction(() => document.body.dataset.model === 'loaded', null, { timeout: 120000 });
}

/// Presses Train and waits for the run to finish (or an error to appear).
export async function trainToEnd(page, timeout) {
  await page.evaluate(() => { delete document.body.dataset.run; });
  await page.click('[data-testid=train]');
  await page.waitForFunction(
    () => document.body.dataset.run === 'done' || !document.querySelector('[data-testid=error]').hidden,
    null, { timeout });
  const error = await page.isVisible('[data-testid=error]') ? await text(page, 'error') : '';
  if (error) throw new Error(`training failed: ${error}`);
}

/// Trainable parameters of LoRA on our GPT-2 from config.json alone: r·(d_in + d_out) per adapted matrix and block.
/// r·(d_in + d_out) per adapter and block; `r` is one rank or a {target: rank} map.
export function expectedTrainable(config, r, targets) {
  const c = config.n_embd;
  const dims = { q: [c, c], k: [c, c], v: [c, c], o: [c, c], fc: [c, 4 * c], proj: [4 * c, c] };
  const rank = (t) => (typeof r === 'number' ? r : r[t]);
  return config.n_layer * targets.reduce((sum, t) => sum + rank(t) * (dims[t][0] + dims[t][1]), 0);
}
