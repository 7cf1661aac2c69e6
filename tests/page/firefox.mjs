// Headless Firefox (Debian's firefox-esr) for the page tests, driven over WebDriver BiDi by puppeteer-core, behind
// the small part of Playwright's API that the tests use, so that one set of test files runs in both browsers.
//
// Why this way: Playwright drives only its own patched Firefox builds, not the distribution's; WebDriver BiDi is the
// standard protocol Firefox speaks natively (no geckodriver needed for it), and puppeteer-core is the maintained
// client with the events the tests read (page errors, console messages, requests). Each method below keeps the
// Playwright semantics the tests rely on: actions and reads wait for their element (30 s by default), `fill` sets
// the value and sends `input`, `isVisible` never waits.
import puppeteer from 'puppeteer-core';
import { copyFileSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TIMEOUT = 30000;

/// Headless Firefox with WebGPU (on the system's Vulkan driver: lavapipe here) or without it (the CPU fallback).
export async function launchFirefox({ webgpu }) {
  const downloads = mkdtempSync(join(tmpdir(), 'qlora-firefox-downloads-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    extraPrefsFirefox: {
      'dom.webgpu.enabled': webgpu,
      // Firefox's blocklist refuses software Vulkan drivers; without this `requestAdapter()` returns null.
      'gfx.webgpu.ignore-blocklist': webgpu,
      // Downloads go straight to a folder of this run's (`waitForEvent('download')` watches it), no dialog.
      'browser.download.folderList': 2,
      'browser.download.dir': downloads,
      'browser.download.useDownloadDir': true,
      'browser.download.always_ask_before_handling_new_types': false,
    },
  });
  return new Browser(browser, downloads);
}

class Browser {
  constructor(browser, downloads) { Object.assign(this, { browser, downloads }); }
  async newContext({ viewport } = {}) {
    return new Context(await this.browser.createBrowserContext(), viewport, this.downloads);
  }
  async newPage() { return (await this.newContext()).newPage(); }
  close() { return this.browser.close(); }
}

/// Puppeteer sets a viewport with two WebDriver BiDi commands at once: the viewport, and the screen's orientation.
/// Firefox before 141 (Debian's firefox-esr 140) knows only the first: the viewport is set all the same, and the
/// orientation (which the tests never read) is let go.
async function setViewport(page, size) {
  try {
    await page.setViewport(size);
  } catch (e) {
    if (!/unknown command emulation\.setScreenOrientationOverride/.test(String(e && e.message))) throw e;
  }
}

class Context {
  constructor(context, viewport, downloads) {
    Object.assign(this, { context, downloads });
    this.viewport = viewport ?? { width: 1280, height: 720 };
    this.requestListeners = [];
    this.routes = [];
    this.pages = [];
  }
  async newPage() {
    const page = await this.context.newPage();
    await setViewport(page, this.viewport);
    for (const listener of this.requestListeners) page.on('request', listener);
    if (this.routes.length) await this.intercept(page);
    this.pages.push(page);
    return new Page(page, this.downloads);
  }
  /// Only 'request' is used: every request of the context's pages, open and future (their dedicated workers'
  /// included).
  on(event, listener) {
    if (event !== 'request') throw new Error(`firefox harness: no context event ${event}`);
    this.requestListeners.push(listener);
    for (const page of this.pages) page.on('request', listener);
  }
  /// Playwright's `route` for the patterns the tests use: a URL prefix ending in `**`. The handler gets a route with
  /// `request().url()`, `fulfill({status, headers, body})` and `abort()`; every other request goes on unchanged.
  /// Set it before the context's first page opens.
  async route(pattern, handler) {
    if (!pattern.endsWith('**')) throw new Error(`firefox harness: route patterns are prefixes ending in **, not ${pattern}`);
    if (this.pages.length) throw new Error('firefox harness: route before the first page opens');
    this.routes.push({ prefix: pattern.slice(0, -2), handler });
  }
  async intercept(page) {
    await page.setRequestInterception(true);
    page.on('request', (req) => {
      const route = this.routes.find((r) => req.url().startsWith(r.prefix));
      if (!route) { req.continue(); return; }
      route.handler({
        request: () => ({ url: () => req.url(), method: () => req.method() }),
        fulfill: ({ status = 200, headers = {}, body }) => req.respond({ status, headers, body }),
        abort: () => req.abort(),
      });
    });
  }
  close() { return this.context.close(); }
}

/// The functions passed to `evaluate` and friends run in the page; the attribute/state reads below are the same
/// functions Playwright's would compute.
class Page {
  constructor(page, downloads) { Object.assign(this, { page, downloads }); }

  on(event, listener) { this.page.on(event, listener); }
  /// The page's address as it is now. Firefox before 141 (Debian's firefox-esr 140) tells WebDriver BiDi nothing of
  /// `history.replaceState`, which the page writes its settings into the address with: so each read of the page
  /// below brings the address back too, and the last one is the answer.
  url() { return this.href ?? this.page.url(); }
  async goto(url, options) { this.href = null; return this.page.goto(url, navigation(options)); }
  async reload(options) { this.href = null; return this.page.reload(navigation(options)); }
  evaluate(fn, arg) { return this.page.evaluate(fn, arg); }
  /// Runs `fn(arg)` in the page before its own scripts, at every navigation from now on (Playwright's name).
  addInitScript(fn, arg) { return this.page.evaluateOnNewDocument(fn, arg); }
  screenshot(options) { return this.page.screenshot(options); }
  setViewportSize(size) { return setViewport(this.page, size); }
  waitForTimeout(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
  locator(selector) { return new Locator(this, selector); }

  /// Only 'download': the next file to complete in the downloads folder (Firefox writes `<name>.part` first).
  async waitForEvent(event, { timeout = TIMEOUT } = {}) {
    if (event !== 'download') throw new Error(`firefox harness: no page event ${event}`);
    const before = new Set(readdirSync(this.downloads));
    for (const started = Date.now(); Date.now() - started < timeout; await this.waitForTimeout(100)) {
      const names = readdirSync(this.downloads);
      const done = names.find((n) => !before.has(n) && !n.endsWith('.part'));
      if (done && !names.includes(`${done}.part`) && statSync(join(this.downloads, done)).size > 0) {
        const path = join(this.downloads, done);
        return { suggestedFilename: () => done, saveAs: async (to) => copyFileSync(path, to) };
      }
    }
    throw new Error(`no download within ${timeout} ms`);
  }

  /// Asks once first: a BiDi poller costs several round trips to set up, and most waits are already met.
  /// Asks the page `fn(arg)` until it is true. The asking is done from here, one evaluation at a time: puppeteer's own
  /// waiting (waitForFunction, waitForSelector, locators) compiles its predicate inside the page, which a page whose
  /// Content-Security-Policy has no 'unsafe-eval' (this one) refuses in Firefox before 141 (Debian's firefox-esr 140),
  /// while an evaluation is never refused.
  async poll(fn, arg, timeout, what) {
    const deadline = Date.now() + timeout;
    const ask = `(() => [Boolean((${fn})(${arg === undefined ? 'undefined' : JSON.stringify(arg)})), location.href])()`;
    for (;;) {
      let done = false;
      try {
        const [answer, href] = await this.page.evaluate(ask);
        this.href = href;
        done = answer;
      } catch (e) {
        // A page navigating (a reload the test pressed) has no document to ask for a moment: ask again, as
        // puppeteer's own waiting does; any other failure is the test's.
        if (!/navigat|context|destroyed|discarded|no such frame|unload/i.test(String(e && e.message))) throw e;
      }
      if (done) return;
      if (Date.now() > deadline) throw new Error(`Timed out after waiting ${timeout}ms for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
  }

  waitForFunction(fn, arg, options) {
    return this.poll(fn, arg, options?.timeout ?? TIMEOUT, `${fn}`.slice(0, 200));
  }

  /// Playwright's states: 'visible' (the default: present, a non-empty box, not `visibility: hidden`), 'attached',
  /// 'hidden' (or absent).
  waitForSelector(selector, { state = 'visible', timeout = TIMEOUT } = {}) {
    return this.poll(([s, want]) => {
      const e = document.querySelector(s);
      if (want === 'attached') return Boolean(e);
      const box = e && e.getBoundingClientRect();
      const shown = Boolean(e) && getComputedStyle(e).visibility !== 'hidden' && box.width > 0 && box.height > 0;
      return want === 'visible' ? shown : !shown;
    }, [selector, state], timeout, `${selector} to be ${state}`);
  }

  /// `fn(element, arg)` on the first element `selector` matches (`all`: `fn(elements, arg)` on every match), in one
  /// script evaluation: null when nothing matches. (Element handles cost puppeteer several BiDi round trips each,
  /// ~60–100 ms against ~15 ms for one evaluation; the toggle tests make thousands of reads.) `fn` runs in the page,
  /// so it must not close over test variables, as with Playwright's.
  evalOn(selector, fn, arg, all = false) {
    const target = all ? '[...document.querySelectorAll(s)]' : 'document.querySelector(s)';
    return this.page.evaluate(`(() => {
      const s = ${JSON.stringify(selector)};
      const target = ${target};
      if (!${all} && !target) return { href: location.href };
      return { found: true, value: (${fn})(target, ${arg === undefined ? 'undefined' : JSON.stringify(arg)}), href: location.href };
    })()`).then((answer) => {
      this.href = answer.href;
      return answer.found ? answer : null;
    });
  }

  /// Reads the element, waiting for it to exist if it does not yet.
  async read(selector, fn, arg) {
    let found = await this.evalOn(selector, fn, arg);
    if (!found) {
      await this.waitForSelector(selector, { state: 'attached' });
      found = await this.evalOn(selector, fn, arg);
    }
    if (!found) throw new Error(`no element matches ${selector}`);
    return found.value;
  }

  async $eval(selector, fn, arg) {
    const found = await this.evalOn(selector, fn, arg);
    if (!found) throw new Error(`no element matches ${selector}`);
    return found.value;
  }

  async $$eval(selector, fn, arg) { return (await this.evalOn(selector, fn, arg, true)).value; }

  getAttribute(selector, name) { return this.read(selector, (e, n) => e.getAttribute(n), name); }
  textContent(selector) { return this.read(selector, (e) => e.textContent); }
  inputValue(selector) { return this.read(selector, (e) => e.value); }
  isChecked(selector) { return this.read(selector, (e) => e.checked); }
  isDisabled(selector) { return this.read(selector, (e) => e.matches(':disabled')); }
  async isEnabled(selector) { return !(await this.isDisabled(selector)); }
  async isHidden(selector) { return !(await this.isVisible(selector)); }

  /// Playwright's visibility: present, a non-empty box, not `visibility: hidden`; no waiting.
  isVisible(selector) {
    return this.page.evaluate((s) => {
      const e = document.querySelector(s);
      if (!e || getComputedStyle(e).visibility === 'hidden') return false;
      const box = e.getBoundingClientRect();
      return box.width > 0 && box.height > 0;
    }, selector);
  }

  /// Waits until the element is visible and enabled, in view, holding still for two frames and the element its centre
  /// hits, then clicks that centre (trusted input, as a reader's): Playwright's checks. Without them a click computed
  /// before a panel above re-rendered (the numbers of a model just loaded) landed on whatever moved under it.
  async click(selector, { timeout = TIMEOUT } = {}) {
    await this.waitForSelector(selector, { timeout });
    await this.usable(selector);
    const handle = await this.page.$(selector);
    await handle.scrollIntoView();
    const deadline = Date.now() + timeout;
    for (;;) {
      const at = await this.page.evaluate(async (e) => {
        const box = () => JSON.stringify(e.getBoundingClientRect());
        const before = box();
        await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
        if (box() !== before) return null;
        const r = e.getBoundingClientRect();
        const [x, y] = [r.x + r.width / 2, r.y + r.height / 2];
        const hit = document.elementFromPoint(x, y);
        return hit && (hit === e || e.contains(hit)) ? [x, y] : null;
      }, handle);
      if (at) return this.page.mouse.click(at[0], at[1]);
      if (Date.now() > deadline) throw new Error(`Timed out after waiting ${timeout}ms to click ${selector}: it moves or is covered`);
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
  }

  async check(selector) { if (!(await this.isChecked(selector))) await this.click(selector); }
  async uncheck(selector) { if (await this.isChecked(selector)) await this.click(selector); }

  /// Waits, as Playwright's actions do, until the control exists and is enabled and editable.
  usable(selector) {
    return this.waitForFunction((s) => {
      const e = document.querySelector(s);
      return e && !e.matches(':disabled') && !e.readOnly;
    }, selector);
  }

  /// Sets the value and sends `input` (not `change`), as Playwright's fill does.
  async fill(selector, value) {
    await this.usable(selector);
    return this.read(selector, (e, v) => {
      e.focus();
      e.value = v;
      e.dispatchEvent(new Event('input', { bubbles: true, composed: true }));
    }, value);
  }

  /// Selects the option with this value; `input` and `change` follow, as Playwright's selectOption sends them.
  async selectOption(selector, value) {
    await this.usable(selector);
    const chosen = await this.read(selector, (e, v) => {
      const option = [...e.options].find((o) => o.value === v);
      if (!option || option.disabled) return false;
      e.value = v;
      e.dispatchEvent(new Event('input', { bubbles: true, composed: true }));
      e.dispatchEvent(new Event('change', { bubbles: true }));
      return true;
    }, value);
    if (!chosen) throw new Error(`${selector} has no enabled option ${value}`);
  }

  dispatchEvent(selector, type) {
    return this.read(selector, (e, t) => e.dispatchEvent(new Event(t, { bubbles: true, composed: true })), type);
  }

  /// A path, Playwright's in-memory file `{ name, mimeType, buffer }` (written to a temporary file of that name), or
  /// a list of either.
  async setInputFiles(selector, files) {
    const paths = (Array.isArray(files) ? files : [files]).map((file) => {
      if (typeof file === 'string') return file;
      const path = join(mkdtempSync(join(tmpdir(), 'qlora-upload-')), file.name);
      writeFileSync(path, file.buffer);
      return path;
    });
    await this.waitForSelector(selector, { state: 'attached' });
    const input = await this.page.$(selector);
    await input.uploadFile(...paths);
  }
}

class Locator {
  constructor(page, selector, index = 0) { Object.assign(this, { page, selector, index }); }
  first() { return new Locator(this.page, this.selector, 0); }
  count() { return this.page.$$eval(this.selector, (all) => all.length); }
  async textContent() {
    await this.page.waitForSelector(this.selector, { state: 'attached' });
    return this.page.$$eval(this.selector, (all, i) => all[i].textContent, this.index);
  }
  async boundingBox() {
    await this.page.waitForSelector(this.selector, { state: 'attached' });
    const handles = await this.page.page.$$(this.selector);
    return handles[this.index].boundingBox();
  }
}

/// Playwright's `commit` has no BiDi twin; `domcontentloaded` (the page's module scripts ran) is the nearest, and
/// the tests then wait for the engine's first answer anyway.
function navigation(options = {}) {
  return { waitUntil: 'domcontentloaded', timeout: options.timeout ?? TIMEOUT };
}
