// README's picture of the GPT-2 flow (docs/gpt2.png): GPT-2 124M's shape loaded as the reader's files in headless
// Chromium without WebGPU, QLoRA r = 8 on all six matrices over nf4 + double quantization, two steps of 1 × 32
// tokens, then the page as the reader sees it. Prints what the page said (memory, step estimate and time).
// Usage: cargo xtask serve --port 8766 & node bench/gpt2-screenshot.mjs http://127.0.0.1:8766/ bench/.models/gpt2 docs/gpt2.png
// (bench/.models/gpt2: `qlora init --preset gpt2 --out bench/.models/gpt2`, as bench/page-memory.sh makes it.)
import { join } from 'node:path';

const [url, modelDir, out] = process.argv.slice(2);
if (!url || !modelDir || !out) {
  console.error('usage: node bench/gpt2-screenshot.mjs PAGE_URL MODEL_DIR OUT.png');
  process.exit(2);
}
// The harness reads the page's address when it is first imported.
process.env.PAGE_URL = url;
const { launch, open, trainToEnd, attr } = await import('../tests/page/harness.mjs');
const files = ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt'].map((f) => join(modelDir, f));
const browser = await launch({ webgpu: false });
try {
  const query = '?model=files&method=qlora&format=nf4&dq=1&r=8&targets=q,k,v,o,fc,proj&batch=1&seq=32&steps=2';
  const { page, context } = await open(browser, query);
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.setInputFiles('[data-testid=model-files]', files);
  await page.waitForFunction(() => document.querySelector('[data-testid=model-status]').dataset.value === 'loaded', null, { timeout: 300000 });
  const status = await page.textContent('[data-testid=model-status]');
  await page.waitForSelector('[data-testid=step-estimate]');
  const estimate = await page.textContent('[data-testid=step-estimate]');
  await trainToEnd(page, 600000);
  // The run's last autosave, so that the page says it is saved at the step it shows.
  await page.waitForFunction(() => document.body.dataset.saved === '2', null, { timeout: 60000 });
  const ms = await page.textContent('#ms-step');
  console.log(JSON.stringify({ status, estimate, step: await attr(page, 'step'), loss: await attr(page, 'loss'), ms_per_step: ms }));
  await page.screenshot({ path: out, fullPage: true });
  await context.close();
} finally {
  await browser.close();
}
