// Opens bench.html in a headless browser (Debian's Chromium or Firefox ESR, launched as the page tests launch them)
// and prints its JSON results.
// Usage: node bench/page-bench.mjs URL [--webgpu] [--one-thread] [--browser chromium|firefox]
// (bench/page-bench.sh builds, serves and compares with native; bench/browsers.sh compares the two browsers).
// --one-thread asks the test server for the page as a host without the cross-origin isolation headers serves it:
// the page then runs its single-threaded engine.
const args = process.argv.slice(2);
let url = args.shift();
const flags = { webgpu: false, 'one-thread': false };
let browserName = 'chromium';
for (let a = args.shift(); a !== undefined; a = args.shift()) {
  if (a === '--browser' && ['chromium', 'firefox'].includes(args[0])) browserName = args.shift();
  else if (a.startsWith('--') && a.slice(2) in flags) flags[a.slice(2)] = true;
  else url = undefined;
}
if (!url) {
  console.error('usage: node bench/page-bench.mjs URL [--webgpu] [--one-thread] [--browser chromium|firefox]');
  process.exit(2);
}
process.env.BROWSER = browserName;
const { launch } = await import('../tests/page/harness.mjs');
const target = new URL(url);
if (flags['one-thread']) target.pathname = `/as-host/no-isolation${target.pathname}`;
const browser = await launch({ webgpu: flags.webgpu });
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(target.href, { timeout: 120000 });
  await page.waitForFunction(() => document.body?.dataset.bench, null, { timeout: 30 * 60 * 1000 });
  if (await page.evaluate(() => document.body.dataset.bench) !== 'done') {
    console.error(await page.textContent('#error'));
    process.exit(1);
  }
  console.log(await page.textContent('#bench-json'));
} finally {
  await browser.close();
}
