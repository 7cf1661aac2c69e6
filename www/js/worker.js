// The engine's Web Worker: it owns the wasm module, the model and the run; the page only renders what it posts.
// Every request is handled one at a time (the queue below), so the wasm object is never borrowed twice.
// Messages are described in protocol.js.

import initWasm, { Playground, accounting, defaults, parseQuery, peftSnippet, toQuery } from '../pkg/qlora_playground.js';
import { validateEvery } from './protocol.js';

const MODEL_DIR = new URL('../models/shakespeare/', import.meta.url);

let configJson = null;
let playground = null;
let running = false;
let loading = null;

const post = (msg) => self.postMessage(msg);
const fail = (during, e) => post({ type: 'error', during, message: e instanceof Error ? e.message : String(e) });

async function fetchOk(url, what) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load ${what}: HTTP ${res.status}`);
  return res;
}

/// Fetches the weights with progress messages (bytes loaded of total).
async function loadModel() {
  const res = await fetchOk(new URL('model.safetensors', MODEL_DIR), 'the model weights');
  const total = Number(res.headers.get('Content-Length')) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    post({ type: 'progress', loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let off = 0;
  for (const c of chunks) { bytes.set(c, off); off += c.length; }
  playground = new Playground(configJson, bytes);
  post({ type: 'loaded', info: playground.modelInfo() });
}

/// Whether this worker can train on WebGPU, and if not, why (shown on the page before any training).
async function probeGpu() {
  if (!self.navigator.gpu) return { available: false, reason: 'this browser offers no WebGPU here' };
  try {
    const adapter = await self.navigator.gpu.requestAdapter();
    if (!adapter) return { available: false, reason: 'WebGPU found no usable GPU adapter' };
    return { available: true, reason: null };
  } catch (e) {
    return { available: false, reason: `WebGPU failed: ${e.message || e}` };
  }
}

const yieldToMessages = () => new Promise((r) => setTimeout(r, 0));

// Requests that touch the wasm Playground run one at a time, in order: the training loop queues each step, so a
// generate or histogram request slips in between two steps instead of borrowing the engine mid-step.
let queue = Promise.resolve();
function enqueue(fn) {
  const p = queue.then(fn);
  queue = p.catch(() => {});
  return p;
}

/// One step (and a validation when due); false when the loop should stop.
async function trainStep() {
  if (!running || playground.finished()) return false;
  const t0 = performance.now();
  // A NaN or infinite loss or gradient is an error from the engine, which has already put the last good state back.
  const s = await playground.step();
  const ms = performance.now() - t0;
  // A lost WebGPU device: the engine went back to its last snapshot on the CPU executor and took this step there.
  const notice = playground.takeNotice();
  if (notice) post({ type: 'fallback', backend: 'cpu', notice, step: s.step });
  post({ type: 'step', ...s, ms });
  // The start is scored once the first step is on screen: it costs a full validation, and Train should answer at once.
  const start = playground.validateStart();
  if (start) post({ type: 'val', ...start });
  const done = playground.finished();
  if ((s.step + 1) % validateEvery(lastSettings.steps) === 0 || done) {
    post({ type: 'val', ...(await playground.validate()) });
  }
  if (done) {
    running = false;
    post({ type: 'done', spectra: await playground.spectra() });
    return false;
  }
  return true;
}

// Each start or resume gets a new loop id; a loop whose id is stale stops, so two loops never drive one run.
let loopId = 0;
async function trainLoop() {
  const id = ++loopId;
  try {
    while (running && id === loopId && (await enqueue(trainStep))) await yieldToMessages();
  } catch (e) {
    running = false;
    fail('training', e);
  }
}

let lastSettings = null;

const handlers = {
  async init({ query }) {
    await initWasm();
    configJson = await (await fetchOk(new URL('config.json', MODEL_DIR), 'the model configuration')).text();
    const head = await fetch(new URL('model.safetensors', MODEL_DIR), { method: 'HEAD' }).catch(() => null);
    const modelBytes = head && head.ok ? Number(head.headers.get('Content-Length')) || null : null;
    post({ type: 'init', parsed: parseQuery(configJson, query), defaults: defaults(), config: JSON.parse(configJson), modelBytes, gpu: await probeGpu() });
  },
  async account({ settings }) {
    const acc = accounting(configJson, settings);
    post({ type: 'account', accounting: acc, query: toQuery(configJson, settings), snippet: peftSnippet(settings) });
  },
  async load() {
    if (!playground) {
      loading = loading || loadModel();
      await loading;
    }
  },
  async text({ bytes }) {
    await handlers.load();
    post({ type: 'text', bytes: playground.setUserText(new Uint8Array(bytes)) });
  },
  async start({ settings, preferGpu }) {
    await handlers.load();
    running = false;
    const started = await playground.start(settings, preferGpu && !!self.navigator.gpu);
    lastSettings = settings;
    post({ type: 'started', ...started });
    running = true;
    trainLoop();
  },
  async resume() {
    if (!playground || running || playground.finished()) return;
    running = true;
    post({ type: 'resumed' });
    trainLoop();
  },
  async pause() {
    // Stop at once, but report "paused" only after a step already in flight has posted its result.
    running = false;
    await enqueue(() => post({ type: 'paused' }));
  },
  async reset() {
    running = false;
    if (playground) playground.reset();
    post({ type: 'reset' });
  },
  async generate({ prompt, tokens, temperature, topK, seed }) {
    await handlers.load();
    const base = await playground.generate(prompt, tokens, temperature, topK, seed, false);
    const tuned = await playground.generate(prompt, tokens, temperature, topK, seed, true);
    post({ type: 'generated', base, tuned });
  },
  // Test hook: the next step diverges (the page tests force the divergence path with it).
  async 'inject-nan'() {
    await playground.injectNan();
  },
  // Test hook: the run's GPU device is destroyed, as a driver reset or a sleeping laptop would lose it.
  async 'lose-device'() {
    playground.loseDevice();
  },
  async histogram({ layer, linear }) {
    await handlers.load();
    post({ type: 'histogram', histogram: playground.histogram(layer, linear, 80) });
  },
};

// Pure requests (accounting, pause) answer at once; the rest wait their turn in the queue.
const IMMEDIATE = new Set(['pause', 'account']);
self.onmessage = (ev) => {
  const msg = ev.data;
  const handler = handlers[msg && msg.type];
  if (!handler) { fail('protocol', `unknown request ${JSON.stringify(msg && msg.type)}`); return; }
  const work = IMMEDIATE.has(msg.type) ? handler(msg) : enqueue(() => handler(msg));
  Promise.resolve(work).catch((e) => fail(msg.type, e));
};
