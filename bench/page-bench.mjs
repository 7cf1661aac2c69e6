// Opens bench.html in headless Chromium (Debian's, as the page tests do) and prints its JSON results.
// Usage: node bench/page-bench.mjs URL [--webgpu] [--one-thread]   (bench/page-bench.sh builds, serves and compares
// with native). --one-thread strips the cross-origin isolation headers, as a static host that does not send them
// would: the page then runs its single-threaded engine.
import { chromium } from '../tests/page/node_modules/playwright-core/index.mjs';
import { withoutIsolation } from '../tests/page/harness.mjs';

const [url, ...flags] = process.argv.slice(2);
if (!url || flags.some((f) => f !== '--webgpu' && f !== '--one-thread')) {
  console.error('usage: node bench/page-bench.mjs URL [--webgpu] [--one-thread]');
  process.exit(2);
}
const webgpu = flags.includes('--webgpu');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', ...(webgpu ? ['--enable-unsafe-webgpu', '--use-angle=swiftshader'] : ['--disable-features=WebGPU'])],
});
try {
  const context = await browser.newContext();
  if (flags.includes('--one-thread')) await withoutIsolation(context);
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.bench, null, { timeout: 30 * 60 * 1000 });
  if (await page.evaluate(() => document.body.dataset.bench) !== 'done') {
    console.error(await page.textContent('#error'));
    process.exit(1);
  }
  console.log(await page.textContent('#bench-json'));
} finally {
  await browser.close();
}
