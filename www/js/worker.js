// The engine's Web Worker: it owns the wasm module, the model and the run; the page only renders what it posts.
// Every request is handled one at a time (the queue below), so the wasm object is never borrowed twice.
// Messages are described in protocol.js.

import { DIR_FILES, HUB_FILES, MODEL_CACHE, MODELS, configUrl, hubUrl } from './models.js';
import { storageLabel } from './protocol.js';
import { discardRun, loadRun, saveRun } from './store.js';

const MODEL_DIR = new URL('../models/shakespeare/', import.meta.url);

// The engine's module, in one of four builds with the same API (`cargo xtask dist`): `pkg-threads*` runs the CPU
// executor on a pool of worker threads sharing its memory, which needs a cross-origin isolated page; `*-relaxed`
// multiplies and adds in its matrix products with relaxed SIMD's fused `f32x4.relaxed_madd` (Chrome 114+), the others
// with wasm SIMD's separate multiply and add. The worker takes the best its browser allows and says why it took less.
let engine = null;
// {threads, threadsWhy, relaxed, relaxedWhy}: the CPU executor's threads and SIMD, with why it has one thread only or
// no relaxed SIMD (null when it has them); shown with the CPU notice.
let cpu = null;
// The engine's wasm memory: it only grows, so its size after a load is the load's peak (shown with the model).
let engineMemory = null;
const memoryBytes = () => (engineMemory ? engineMemory.buffer.byteLength : null);

// A module whose one function uses f32x4.relaxed_madd: it validates only where the browser has relaxed SIMD.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x13, 0x01, 0x11, 0x00, // code: one body of 17 bytes, no locals
  0x41, 0x00, 0xfd, 0x0f, 0x41, 0x00, 0xfd, 0x0f, 0x41, 0x00, 0xfd, 0x0f, // three i8x16.splat of i32 0
  0xfd, 0x85, 0x02, 0x0b, // f32x4.relaxed_madd, end
]);

/// Loads the best engine build this browser runs. `relaxed: false` (the benchmark page's `simd=plain`) asks for
/// plain SIMD, to measure what relaxed SIMD gains; `threads: false` for one thread, `threadsWhy` saying why (the
/// page's replacement of a worker whose thread pool did not start: engine-worker.js). `stallThreadStart` (tests only)
/// blocks the pool's start for good, as Firefox's hang does (`true`: in every worker the page starts; a number: in that many).
async function loadEngine({ relaxed: relaxedAllowed = true, threads: threadsAllowed = true, threadsWhy: askedWhy, stallThreadStart = false } = {}) {
  const cores = self.navigator.hardwareConcurrency || 1;
  let threadsWhy = null;
  if (!threadsAllowed) threadsWhy = askedWhy || 'the page asked for one thread';
  else if (!self.crossOriginIsolated) threadsWhy = 'this page is not cross-origin isolated, which threads need';
  else if (cores < 2) threadsWhy = 'this device reports one core';
  let relaxedWhy = null;
  if (!relaxedAllowed) relaxedWhy = 'the page asked for plain SIMD';
  else if (!WebAssembly.validate(RELAXED_SIMD_PROBE)) relaxedWhy = 'this browser has no relaxed SIMD';
  // Best first; a build that fails to start (say, a host that lacks its files) gives way to the next.
  const builds = [];
  for (const threads of threadsWhy ? [false] : [true, false]) {
    for (const relaxed of relaxedWhy ? [false] : [true, false]) builds.push({ threads, relaxed });
  }
  let failure = null;
  for (const build of builds) {
    const dir = `../pkg${build.threads ? '-threads' : ''}${build.relaxed ? '-relaxed' : ''}/`;
    try {
      const module = await import(`${dir}qlora_playground.js`);
      const wasm = await module.default();
      engineMemory = wasm && wasm.memory;
      if (build.threads) {
        // The page watches this start (engine-worker.js): it can block this worker for good.
        post({ type: 'threads-starting' });
        try {
          if (stallThreadStart) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
          await module.initThreadPool(cores);
        } finally {
          // Started or failed (the next build is tried): either way the page's watch ends.
          post({ type: 'threads-settled' });
        }
      }
      engine = module;
      const failed = failure && ` failed to start (${failure})`;
      cpu = {
        threads: build.threads ? module.cpuThreads() : 1,
        threadsWhy: build.threads ? null : threadsWhy ?? `the threaded engine${failed}`,
        relaxed: build.relaxed,
        relaxedWhy: build.relaxed ? null : relaxedWhy ?? `the relaxed-SIMD engine${failed}`,
      };
      return;
    } catch (e) {
      failure = e.message || String(e);
    }
  }
  throw new Error(`the engine failed to start (${failure})`);
}

let configJson = null;
// The model the page shows (a name of models.js); its weights load on the reader's Load for hub models and files.
let modelName = 'shakespeare';
let playground = null;
/// The base as loaded ({storage, bytes}: its format's label and its weights' bytes), for whether a run fits beside
/// it; null before a load. (Kept here: the account request is answered at once, even while a run holds the engine.)
let loadedBase = null;

/// Says the model is loaded, with what the page shows of it.
function postLoaded() {
  const info = playground.modelInfo();
  loadedBase = { storage: info.storage, bytes: info.bytes };
  post({ type: 'loaded', info, memoryBytes: memoryBytes() });
}
/// The page's settings as last accounted for: a large model is read straight into the base format they choose.
let pageSettings = null;
let running = false;
let loading = null;

const post = (msg, transfer) => self.postMessage(msg, transfer || []);

// Set when the engine trapped: running out of memory aborts it (Rust's allocation failure), as a bug would, and a
// module that trapped cannot be trusted again (a call it left half done keeps its object borrowed). Every later
// request is refused with the same words; the page offers a reload, after which the run kept in this browser is
// offered back.
let stopped = null;

function fail(during, e) {
  if (!stopped && e instanceof WebAssembly.RuntimeError) {
    stopped = `The engine stopped (${e.message}): this tab most likely ran out of memory, or the engine hit an ` +
      'internal error, and it cannot go on. Reload the page to start it again; the run saved in this browser ' +
      '(at most a few seconds behind) is offered back.';
    running = false;
    post({ type: 'stopped', during, message: stopped });
    return;
  }
  if (stopped) return; // said once, when it happened
  post({ type: 'error', during, message: e instanceof Error ? e.message : String(e) });
}

async function fetchOk(url, what) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load ${what}: HTTP ${res.status}`);
  return res;
}

/// Loads the current model's weights: the built-in one from this site, a hub model from the page's cache (hub.js
/// downloaded it on the reader's click).
async function loadModel() {
  if (MODELS[modelName].repo) return loadHubModel();
  if (modelName === 'files') throw new Error('choose your model\'s files first (config.json, model.safetensors and its tokenizer files)');
  return loadBuiltInModel();
}

/// A model from Blobs by file name (the reader's Files, or the cache's responses): config.json, model.safetensors
/// read tensor by tensor (never whole: GPT-2's is 548 MB), and the tokenizer files. `nameOrPath`: the hub id the
/// adapters will name as their base. Returns config.json's text.
async function loadFromBlobs(blobs, nameOrPath) {
  for (const file of ['config.json', 'model.safetensors']) {
    if (!blobs[file]) throw new Error(`${file} is missing: a GPT-2 directory needs config.json, model.safetensors and its tokenizer files`);
  }
  let config = await blobs['config.json'].text();
  let parsed;
  try {
    parsed = JSON.parse(config);
  } catch (e) {
    throw new Error(`config.json is not JSON (${e.message})`);
  }
  if (nameOrPath && parsed && typeof parsed === 'object') config = JSON.stringify({ ...parsed, _name_or_path: nameOrPath });
  const st = blobs['model.safetensors'];
  const reader = new FileReaderSync();
  // The engine keeps this reader: it reads the file again when a run needs the base in another format.
  const read = (offset, length) => new Uint8Array(reader.readAsArrayBuffer(st.slice(offset, offset + length)));
  const next = engine.Playground.fromReader(config, st.size, read, pageSettings ?? undefined);
  const bytes = async (file) => (blobs[file] ? new Uint8Array(await blobs[file].arrayBuffer()) : undefined);
  try {
    const tokenizerFiles = [await bytes('vocab.json'), await bytes('merges.txt'), await bytes('tokenizer.json')];
    if (tokenizerFiles.some(Boolean)) {
      next.useTokenizerFiles(...tokenizerFiles);
    } else if (next.modelInfo().vocab_size !== 256) {
      throw new Error(`no tokenizer files (vocab.json + merges.txt, or tokenizer.json) for a vocabulary of ${next.modelInfo().vocab_size} tokens`);
    }
  } catch (e) {
    next.free(); // the model read so far (GPT-2: 0.5 GB) goes with the refusal
    throw e;
  }
  usePlayground(next);
  return config;
}

/// Makes `next` the model every request works on, freeing the one before it (GPT-2's holds 0.5 GB).
function usePlayground(next) {
  if (playground) playground.free();
  playground = next;
  hasRun = false;
}

/// A hub model from the cache, then the page's views recomputed for the configuration that came with it.
async function loadHubModel() {
  const { repo } = MODELS[modelName];
  const cache = await caches.open(MODEL_CACHE);
  const blobs = {};
  for (const file of HUB_FILES) {
    const res = await cache.match(hubUrl(repo, file));
    if (!res) throw new Error(`${file} of ${repo} is not downloaded yet: press Load`);
    blobs[file] = await res.blob();
  }
  configJson = await loadFromBlobs(blobs, repo);
  post({ type: 'model', config: JSON.parse(configJson), formats: engine.baseFormats(configJson) });
  postLoaded();
}

/// Fetches the weights with progress messages (bytes loaded of total).
async function loadBuiltInModel() {
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
  playground = new engine.Playground(configJson, bytes);
  postLoaded();
}

/// The name of a WebGPU adapter that renders on the processor ("SwiftShader", "lavapipe", "llvmpipe", or "a software
/// adapter" for one that says only that it is a fallback), or null for a GPU: the page says "your GPU" only for one.
/// Browsers that hide the adapter's details count as a GPU.
function softwareAdapter(adapter) {
  const info = adapter.info || {};
  const words = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  const known = words.match(/swiftshader|lavapipe|llvmpipe/i);
  if (known) return known[0].toLowerCase() === 'swiftshader' ? 'SwiftShader' : known[0].toLowerCase();
  return adapter.isFallbackAdapter || info.isFallbackAdapter || /software/i.test(words) ? 'a software adapter' : null;
}

/// Whether this worker can train on WebGPU, and if not, why (shown on the page before any training).
async function probeGpu() {
  if (!self.navigator.gpu) return { available: false, reason: 'this browser offers no WebGPU here' };
  try {
    const adapter = await self.navigator.gpu.requestAdapter();
    if (!adapter) return { available: false, reason: 'WebGPU found no usable GPU adapter' };
    return { available: true, reason: null, software: softwareAdapter(adapter) };
  } catch (e) {
    return { available: false, reason: `WebGPU failed: ${e.message || e}` };
  }
}

// ---- the run's history and its autosave ------------------------------------------------------------------------------

/// Milliseconds between autosaves while training (also saved after the first step, on pause, at the end, and when the
/// page hides).
const AUTOSAVE_MS = 5000;

// What the page drew of the current run (its step and validation messages), saved and exported with it so a
// restored run shows its curve.
let history = { steps: [], vals: [] };
let hasRun = false;
let lastSave = 0;
let saveFailed = false;
let storageWorks = true;
/// Whether this worker keeps its run in IndexedDB (the benchmark page's workers do not).
let keepRuns = true;

/// Forgets the history after `step` steps (the engine went back to that step: a divergence or a lost device).
function truncateHistory(step) {
  history.steps = history.steps.filter((s) => s.step < step);
  history.vals = history.vals.filter((v) => v.step <= step);
}

/// Writes the run to IndexedDB. Runs in the queue (it reads the engine's state). A refusal (quota, no IndexedDB) is
/// reported once, until a save succeeds again; training goes on.
async function autosave() {
  if (!playground || !hasRun || !keepRuns) return;
  lastSave = performance.now();
  try {
    const state = await playground.checkpoint();
    const step = playground.stepIndex();
    await saveRun({ savedAt: Date.now(), runId, step, model: modelName, settings: lastSettings, history, state, text: playground.runText() ?? null });
    saveFailed = false;
    post({ type: 'saved', step });
  } catch (e) {
    if (!saveFailed) fail('saving', new Error(`${e.message || e}. Export the run as a file to keep it.`));
    saveFailed = true;
  }
}

/// The history in an imported run.json (null when it has none or is not JSON: the run still imports).
function historyOf(runJson) {
  try {
    return runJson ? JSON.parse(runJson).history : null;
  } catch {
    return null;
  }
}

/// Only the well-formed points of a saved or imported history, up to `step` (a file may have been edited by hand).
function cleanHistory(parsed, step) {
  const finite = (...xs) => xs.every((x) => typeof x === 'number' && Number.isFinite(x));
  const list = (xs) => (Array.isArray(xs) ? xs.filter((x) => x && typeof x === 'object') : []);
  return {
    steps: list(parsed && parsed.steps).filter((s) => finite(s.step, s.loss, s.lr, s.grad_norm, s.tokens, s.ms) && s.step < step),
    vals: list(parsed && parsed.vals).filter((v) => finite(v.step, v.val_loss) && v.step <= step),
  };
}

/// A run continued from a saved state: the loop is stopped (the page offers Resume), and the page redraws it.
async function restored(resumed, runHistory, source, savedAt, id) {
  running = false;
  ++loopId;
  hasRun = true;
  runId = id;
  saveFailed = false;
  lastSettings = resumed.settings;
  history = runHistory;
  const { run_json: _, ...rest } = resumed;
  // The adapters' spectra of the restored parameters, as after a run (a restored run's chart would be empty).
  const spectra = await playground.spectra();
  post({ type: 'restored', source, savedAt, runId, history, finished: playground.finished(), spectra, ...rest });
}

// Lets the page's requests (pause, generate, …) in between two steps. Not setTimeout(0): browsers hold a nested
// setTimeout back for at least 4 ms, longer than a small model's step on a GPU. A message to ourselves on a
// MessageChannel is a task too, without that delay.
const turns = new MessageChannel();
const waitingTurns = [];
turns.port1.onmessage = () => waitingTurns.shift()();
const yieldToMessages = () => new Promise((resolve) => {
  waitingTurns.push(resolve);
  turns.port2.postMessage(null);
});

// Requests that touch the wasm Playground run one at a time, in order: the training loop queues each step, so a
// generate or histogram request slips in between two steps instead of borrowing the engine mid-step.
let queue = Promise.resolve();
function enqueueRaw(fn) {
  const p = queue.then(fn);
  queue = p.catch(() => {});
  return p;
}

/// Queues a request that reads or changes the run: a training step left in flight on the GPU is reported first, so
/// what the page shows is the state the request sees.
const enqueue = (fn) => enqueueRaw(async () => { await flushStep(); return fn(); });

// When the last step's call left the next one in flight on the GPU, the time its result came: the next step's time
// is measured from there (the GPU was already working on it), so ms per step is the time between two results.
let lastResultAt = null;

/// Shows a step's result: the history, the page, a notice if the engine moved to the CPU executor.
function recordStep(s, ms) {
  // A lost WebGPU device: the engine went back to its last snapshot on the CPU executor and took this step there.
  const notice = playground.takeNotice();
  if (notice) {
    truncateHistory(s.step);
    post({ type: 'fallback', backend: 'cpu', notice, step: s.step, measured: playground.measuredMemory() });
  }
  const point = { ...s, ms };
  history.steps.push(point);
  post({ type: 'step', ...point });
}

/// Reports a step still in flight from the loop's last call, if any, with the validation or the end that follows it
/// (runs inside the queue); false when the run has now ended. A divergence found on the way ends the loop as one
/// found by a step would.
async function flushStep() {
  if (!playground || !hasRun) return true;
  const t0 = lastResultAt ?? performance.now();
  lastResultAt = null;
  let s;
  try {
    s = await playground.drain();
  } catch (e) {
    running = false;
    ++loopId;
    fail('training', e);
    await afterDivergence();
    return false;
  }
  return s ? afterStep(s, performance.now() - t0) : true;
}

/// A diverged run is back at its last good state: the history follows, and that state is what is kept.
async function afterDivergence() {
  if (!hasRun) return;
  truncateHistory(playground.stepIndex());
  await autosave();
}

/// Shows a step's result and runs what is due after it: the start's score after the first, a validation every few
/// steps, and the end. False once the run is done.
async function afterStep(s, ms) {
  recordStep(s, ms);
  // The start is scored once the first step is on screen: it costs a full validation, and Train should answer at once.
  const start = playground.validateStart();
  if (start) recordVal(start);
  const done = playground.finished();
  if (playground.validationDue(s.step)) recordVal(await playground.validate());
  if (done) {
    running = false;
    post({ type: 'done', spectra: await playground.spectra() });
    await autosave();
  }
  return !done;
}

/// One step (and what is due after it); false when the loop should stop.
async function trainStep() {
  if (!running || playground.finished()) return false;
  const t0 = lastResultAt ?? performance.now();
  // On the GPU the step after this one is submitted before this one's loss is awaited when the run says it pays (no
  // validation between them, not the first step).
  const lookahead = playground.lookaheadPays();
  // A NaN or infinite loss or gradient is an error from the engine, which has already put the last good state back.
  lastResultAt = null;
  const s = await playground.step(lookahead);
  const now = performance.now();
  if (playground.stepInFlight()) lastResultAt = now;
  if (!(await afterStep(s, now - t0))) return false;
  if (keepRuns && performance.now() - lastSave >= AUTOSAVE_MS) {
    // The saved state is the one the page shows: a step in flight is reported (and validated when due) first.
    if (!(await flushStep())) return false;
    await autosave();
  }
  return true;
}

function recordVal(v) {
  history.vals.push(v);
  post({ type: 'val', ...v });
}

/// Tokens of each text per generation chunk: small enough that Stop and training steps wait at most a moment.
const GENERATE_CHUNK = 8;
// The current generation's id; a stale id ends its loop.
let generation = 0;

// Each start or resume gets a new loop id; a loop whose id is stale stops, so two loops never drive one run.
let loopId = 0;
async function trainLoop() {
  const id = ++loopId;
  try {
    while (running && id === loopId && (await enqueueRaw(trainStep))) await yieldToMessages();
  } catch (e) {
    running = false;
    lastResultAt = null;
    fail('training', e);
    if (!stopped) await enqueueRaw(afterDivergence);
  }
}

let lastSettings = null;
// Which run this is, kept in its saved record: the page's note of where a reader left a run names it, so a later
// visit tells that run's lost steps from another run's (saved-runs.js).
let runId = null;
const newRunId = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;

const handlers = {
  async init({ query, engine: wanted, keepRuns: keep = true }) {
    keepRuns = keep;
    await loadEngine(wanted);
    configJson = await (await fetchOk(new URL('config.json', MODEL_DIR), 'the model configuration')).text();
    // A hub model's published configuration: the page counts with it before anything is downloaded.
    modelName = engine.parseQuery(configJson, query).page.model || 'shakespeare';
    if (MODELS[modelName].repo) configJson = await (await fetchOk(configUrl(modelName), `${modelName}'s configuration`)).text();
    let modelBytes = null;
    if (modelName === 'shakespeare') {
      const head = await fetch(new URL('model.safetensors', MODEL_DIR), { method: 'HEAD' }).catch(() => null);
      modelBytes = head && head.ok ? Number(head.headers.get('Content-Length')) || null : null;
    }
    // A run this browser kept (a reload, a crash, a closed tab): the page offers to restore or discard it.
    let saved = null;
    let storage = null;
    try {
      const r = keepRuns ? await loadRun() : null;
      if (r) saved = { savedAt: r.savedAt, runId: r.runId ?? null, step: r.step, settings: r.settings, model: r.model || 'shakespeare' };
    } catch (e) {
      storage = e.message;
      storageWorks = false;
    }
    post({ type: 'init', model: modelName, parsed: engine.parseQuery(configJson, query), defaults: engine.defaults(configJson), config: JSON.parse(configJson), modelBytes, gpu: await probeGpu(), saved, storage, cpu, formats: engine.baseFormats(configJson) });
  },
  async account({ settings, seq }) {
    // A faulty setting is named and replaced by its default for the numbers, so the others stay live.
    const { settings: usable, problems } = engine.settleSettings(configJson, settings);
    pageSettings = usable;
    const acc = engine.accounting(configJson, usable);
    // Whether the chosen model, not loaded yet, would fit the tab with its base kept as these settings keep it.
    const loadProblem = playground ? null : engine.loadProblem(configJson, usable) ?? null;
    // Whether a run of these settings fits beside the base as loaded (or as they would load it); a model that does not
    // load is said at the model control, once.
    const runProblem = loadProblem ? null : engine.runProblem(configJson, usable, loadedBase?.storage, loadedBase?.bytes) ?? null;
    post({ type: 'account', settings: usable, accounting: acc, query: engine.toQuery(configJson, usable), snippet: engine.peftSnippet(configJson, usable), problems, loadProblem, runProblem, seq });
  },
  async load() {
    if (!playground) {
      // A failed load (an interrupted download, a missing file) is tried again on the next request.
      loading = loading || loadModel().finally(() => { loading = null; });
      await loading;
    }
  },
  // How fast this processor multiplies at the model's width (GFLOP/s), for the page's step-time estimate on the CPU
  // executor: a product of a step's shape (the batch's rows through a d → 3d linear map; few rows multiply less
  // efficiently than many), timed after a quarter second of the same calls (browsers swap in optimized code for what
  // turns out hot), median of three.
  async 'cpu-speed'({ d, rows }) {
    const [m, k, n] = [rows, d, 3 * d];
    const reps = Math.max(1, Math.round(2e8 / (2 * m * k * n)));
    for (const warm = performance.now() + 250; performance.now() < warm;) engine.cpuMatmul(m, k, n, true, reps);
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      engine.cpuMatmul(m, k, n, true, reps);
      runs.push((2 * m * k * n * reps) / ((performance.now() - t) * 1e6));
    }
    post({ type: 'cpu-speed', d, rows, gflops: runs.sort((a, b) => a - b)[1] });
  },
  // The reader's own GPT-2 directory (Files from the file input or a drop): loaded here, nothing leaves the tab.
  async files({ files }) {
    running = false;
    ++loopId;
    const blobs = {};
    const ignored = [];
    for (const f of files) {
      if (DIR_FILES.includes(f.name)) blobs[f.name] = f;
      else ignored.push(f.name);
    }
    configJson = await loadFromBlobs(blobs, null);
    modelName = 'files';
    post({ type: 'model', config: JSON.parse(configJson), formats: engine.baseFormats(configJson), ignored });
    postLoaded();
  },
  // bench.html's GPT-2 scale: a randomly initialised model of a published shape, made here (no download). The
  // playground never sends it; a run on it is timed, not read.
  async 'random-model'({ preset }) {
    running = false;
    ++loopId;
    usePlayground(engine.Playground.random(preset, 0));
    configJson = playground.configJson();
    modelName = 'files';
    postLoaded();
  },
  async text({ bytes }) {
    await handlers.load();
    post({ type: 'text', bytes: playground.setUserText(new Uint8Array(bytes)) });
  },
  async start({ settings, preferGpu }) {
    // Train pressed before the numbers answered a box just changed: a refused setting is said, not run as its default.
    const [problem] = engine.settleSettings(configJson, settings).problems;
    if (problem) throw new Error(problem.message);
    await handlers.load();
    running = false;
    const started = await playground.start(settings, preferGpu && !!self.navigator.gpu);
    lastSettings = settings;
    runId = newRunId();
    history = { steps: [], vals: [] };
    hasRun = true;
    saveFailed = false;
    // The first step is saved at once, so that a reload in a run's first seconds finds it; then every AUTOSAVE_MS.
    lastSave = -Infinity;
    post({ type: 'started', ...started, runId, memoryBytes: memoryBytes() });
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
    await enqueue(async () => {
      post({ type: 'paused' });
      await autosave();
    });
  },
  async reset() {
    running = false;
    hasRun = false;
    if (playground) playground.reset();
    post({ type: 'reset' });
    // The run is gone, so is its saved copy: a reload offers nothing. (Where storage never worked, the page said so.)
    await discardRun().catch((e) => { if (storageWorks) throw e; });
  },
  // The page is being hidden or closed: save now rather than at the next autosave.
  async save() {
    await autosave();
  },
  async restore({ preferGpu }) {
    const r = await loadRun();
    if (!r) throw new Error('no run is saved in this browser any more');
    await handlers.load();
    const resumed = await playground.resume(r.state, r.text ?? undefined, preferGpu && !!self.navigator.gpu);
    await restored(resumed, cleanHistory(r.history, resumed.step), 'autosave', r.savedAt, r.runId ?? newRunId());
  },
  async discard() {
    await discardRun();
    post({ type: 'discarded' });
  },
  async import({ bytes, preferGpu }) {
    await handlers.load();
    const resumed = await playground.importRun(new Uint8Array(bytes), preferGpu && !!self.navigator.gpu);
    await restored(resumed, cleanHistory(historyOf(resumed.run_json), resumed.step), 'file', null, newRunId());
    await autosave();
  },
  async export() {
    if (!hasRun) throw new Error('no run to export: press Train first');
    const step = playground.stepIndex();
    const s = lastSettings;
    const runJson = JSON.stringify({ format: 'qlora-playground-run', version: 1, exportedAt: new Date().toISOString(), step, settings: s, history }, null, 1);
    const bytes = await playground.exportRun(runJson);
    const name = `qlora-run-${s.method}${s.method === 'full' ? '' : `-r${s.r}-${storageLabel(s).replace('+', '-')}`}-step${step}.zip`;
    post({ type: 'exported', bytes, name }, [bytes.buffer]);
  },
  // Base and tuned text side by side, a few tokens at a time through the queue: training steps go on between the
  // chunks, the page shows the text as it grows, and Stop (or a new Generate) ends it between two chunks.
  async generate({ prompt, tokens, temperature, topK, seed }) {
    const id = ++generation;
    await enqueue(async () => {
      await handlers.load();
      playground.generateBegin(prompt, tokens, temperature, topK, seed);
    });
    for (;;) {
      const p = await enqueue(() => (id === generation ? playground.generateMore(GENERATE_CHUNK) : null));
      // Stopped or replaced, possibly while this chunk ran: nothing more is shown.
      if (!p || id !== generation) return;
      const done = p.done >= p.total;
      post({ type: done ? 'generated' : 'generating', ...p });
      if (done) return;
      await yieldToMessages();
    }
  },
  async 'stop-generate'() {
    ++generation;
    post({ type: 'generation-stopped' });
  },
  // Test hook: the next step diverges (the page tests force the divergence path with it).
  async 'inject-nan'() {
    await playground.injectNan();
  },
  // Test hook: the run's GPU device is destroyed, as a driver reset or a sleeping laptop would lose it.
  async 'lose-device'() {
    playground.loseDevice();
  },
  // Test hook: the engine aborts, as it does when the tab's memory runs out.
  async 'abort-engine'() {
    playground.abortForTest();
  },
  async histogram({ layer, linear }) {
    await handlers.load();
    post({ type: 'histogram', histogram: playground.histogram(layer, linear, 80) });
  },
  // The benchmark page's matrix products on the CPU executor (the engine's list: the training step's products, the
  // same as `qlora bench --matmul --backend cpu` times natively) and the multiply-add ceiling they work under: for
  // each, the median of five timed calls of ~1 GFLOP, after half a second of the same calls (browsers first run wasm
  // from a quick baseline compile and swap in optimized code for what turns out hot, in the background).
  async matmul() {
    const gflops = (call) => {
      for (const warm = performance.now() + 500; performance.now() < warm;) call();
      const runs = [];
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        const flops = call();
        runs.push(flops / (performance.now() - t) / 1e6);
      }
      return runs.sort((x, y) => x - y)[2];
    };
    const peak = gflops(() => engine.cpuMaddPeak(10_000_000)); // ~1 GFLOP: rounds of 12 f32x4 multiply-adds
    const results = engine.cpuMatmulProducts().map(({ name, m, k, n, transposeB }) => {
      const reps = Math.max(1, Math.round(1e9 / (2 * m * k * n)));
      return { name, m, k, n, transposeB, gflops: gflops(() => (engine.cpuMatmul(m, k, n, transposeB, reps), 2 * m * k * n * reps)) };
    });
    post({ type: 'matmul', peak, results, cpu });
  },
};

// Pure requests (accounting, pause) answer at once; the rest wait their turn in the queue.
// Generation queues its own chunks (a queued handler that queued more work would wait on itself).
const IMMEDIATE = new Set(['pause', 'account', 'generate', 'stop-generate']);
self.onmessage = (ev) => {
  const msg = ev.data;
  const handler = handlers[msg && msg.type];
  if (!handler) { fail('protocol', `unknown request ${JSON.stringify(msg && msg.type)}`); return; }
  if (stopped) { post({ type: 'stopped', during: msg.type, message: stopped }); return; }
  // Reset ends a generation streaming from the run as it is pressed (its chunks would write back the text the page
  // clears; the page ends its own side on `reset`), not when its turn in the queue comes: a Generate pressed after
  // Reset is the reader's next request.
  if (msg.type === 'reset') ++generation;
  const work = IMMEDIATE.has(msg.type) ? handler(msg) : enqueue(() => handler(msg));
  Promise.resolve(work).catch((e) => fail(msg.type, e));
};
