// Opens bench.html in headless Chromium (Debian's, as the page tests do) and prints its JSON results.
// Usage: node bench/page-bench.mjs URL [--webgpu]   (bench/page-bench.sh builds, serves and compares with native)
import { chromium } from '../tests/page/node_modules/playwright-core/index.mjs';

const [url, flag] = process.argv.slice(2);
if (!url) { console.error('usage: node bench/page-bench.mjs URL [--webgpu]'); process.exit(2); }
const webgpu = flag === '--webgpu';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', ...(webgpu ? ['--enable-unsafe-webgpu', '--use-angle=swiftshader'] : ['--disable-features=WebGPU'])],
});
try {
  const page = await browser.newPage();
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
