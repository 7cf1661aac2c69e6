// The engine's wasm memory in the page with a GPT-2 loaded as the reader's files: after loading, and once a run of
// each method is made (the base as loaded, the CPU executor's copy of it in the run's format, the run's buffers).
// The base is read in the link's format; `then` changes the format after the load, so that the run reads the base again.
// Wasm memory only grows, so each figure is the peak up to then; every run is measured in a fresh tab. Prints one
// JSON line per run. Used by bench/page-memory.sh, which builds and serves the page.
// With --step, each run also takes its first step, and its line gives that step's time and loss.
// Usage: node bench/page-memory.mjs PAGE_URL MODEL_DIR [--large] [--step]
//        (MODEL_DIR: config.json, model.safetensors, vocab.json, merges.txt; --large: the runs a model too large for
//        an fp32 base in a tab can make, gpt2-large's)
import { join } from 'node:path';

const [url, modelDir, ...flags] = process.argv.slice(2);
if (!url || !modelDir) {
  console.error('usage: node bench/page-memory.mjs PAGE_URL MODEL_DIR');
  process.exit(2);
}
// The harness reads the page's address when it is first imported.
process.env.PAGE_URL = url;
const { launch, open } = await import('../tests/page/harness.mjs');
const files = ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt'].map((f) => join(modelDir, f));
const LARGE_RUNS = [
  { method: 'qlora', format: 'nf4', dq: 1 },
  { method: 'qlora', format: 'int8', dq: 0 },
  { method: 'lora', format: 'fp16', dq: 0 },
];
const RUNS = flags.includes('--large') ? LARGE_RUNS : [
  { method: 'qlora', format: 'nf4', dq: 1 },
  { method: 'qlora', format: 'int8', dq: 0 },
  { method: 'lora', format: 'fp16', dq: 0 },
  { method: 'lora', format: 'fp32', dq: 0 },
  // Loaded in nf4 + dq, then a LoRA run over fp32: the engine reads the base again from the file for it.
  { method: 'qlora', format: 'nf4', dq: 1, then: 'fp32' },
];

const browser = await launch({ webgpu: false });
try {
  for (const run of RUNS) {
    const query = `?model=files&method=${run.method}&format=${run.format}&dq=${run.dq}&r=8&targets=q,k,v,o,fc,proj&batch=1&seq=32&steps=1`;
    const { page, context } = await open(browser, query);
    await page.setInputFiles('[data-testid=model-files]', files);
    await page.waitForFunction(() => document.querySelector('[data-testid=model-status]').dataset.value === 'loaded', null, { timeout: 300000 });
    const loaded = Number(await page.getAttribute('[data-testid=model-status]', 'data-memory'));
    if (run.then) await page.selectOption('[data-testid=format]', run.then);
    await page.click('[data-testid=train]');
    await page.waitForFunction(() => document.querySelector('[data-testid=memory-measured]').dataset.engine, null, { timeout: 300000 });
    const get = (name) => page.getAttribute('[data-testid=memory-measured]', name);
    const theory = Number(await page.getAttribute('[data-testid=memory-total]', 'data-value'));
    const line = { ...run, loaded_bytes: loaded, with_run_bytes: Number(await get('data-engine')),
      measured_run_bytes: Number(await get('data-value')), theory_run_bytes: theory };
    if (flags.includes('--step')) {
      await page.waitForFunction(() => document.querySelector('[data-testid=step]').dataset.value === '1', null, { timeout: 600000 });
      line.step_ms = Number(await page.textContent('#ms-step'));
      line.loss = Number(await page.textContent('#loss'));
    }
    console.log(JSON.stringify(line));
    await context.close();
  }
} finally {
  await browser.close();
}
