// The page's training loop around the engine: trains on the page (headless Chromium, CPU fallback) and prints the
// median wall time between two steps next to the engine's own time per step; the difference is what the worker's
// loop costs per step (yielding to the page's messages, posting results). Validation steps are excluded by the median.
// Usage: node bench/page-loop.mjs URL [QUERY]   (URL: a served dist/, e.g. `cargo xtask serve`)
import { chromium } from '../tests/page/node_modules/playwright-core/index.mjs';

const [url, query = 'steps=300&batch=1&seq=8&method=lora&format=fp32&dq=0&targets=q&r=1'] = process.argv.slice(2);
if (!url) { console.error('usage: node bench/page-loop.mjs URL [QUERY]'); process.exit(2); }
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', '--disable-features=WebGPU'],
});
try {
  const page = await browser.newPage();
  await page.goto(`${url}?${query}`);
  await page.waitForFunction(() => document.body.dataset.model === 'loaded', null, { timeout: 120000 });
  const steps = await page.evaluate(() => new Promise((resolve) => {
    const seen = [];
    window.__qlora.worker.addEventListener('message', (e) => {
      if (e.data.type === 'step') seen.push([performance.now(), e.data.ms]);
      if (e.data.type === 'done') resolve(seen);
    });
    document.querySelector('[data-testid=train]').click();
  }));
  const warm = steps.slice(50);
  const median = (xs) => Math.round(xs.slice().sort((a, b) => a - b)[xs.length >> 1] * 10) / 10;
  const wall = warm.slice(1).map((s, i) => s[0] - warm[i][0]);
  const engine = warm.slice(1).map((s) => s[1]);
  console.log(JSON.stringify({ query, steps: warm.length, wall_ms_per_step: median(wall), engine_ms_per_step: median(engine),
    loop_ms_per_step: median(wall.map((w, i) => w - engine[i])) }));
} finally {
  await browser.close();
}
