// The page (UI thread): reads the controls into settings, sends requests to the engine's worker, and draws what it
// reports on animation frames. It computes nothing itself: every number comes from the engine.

import { LossChart, drawHistogram, drawSpectra } from './charts.js';
import { el, fmtBytes, fmtInt, ownRanks, renderMemory, renderParams, renderQuantErrors, renderRuns, renderScale } from './views.js';

const $ = (id) => document.getElementById(id);
const TARGETS = ['q', 'k', 'v', 'o', 'fc', 'proj'];

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const send = (msg, transfer) => worker.postMessage(msg, transfer || []);
// The worker, for the page tests (they force a divergence through it) and for curious readers' consoles.
window.__qlora = { worker };

const state = {
  config: null,
  defaults: null,
  page: { embed: false, hide: [] },
  settings: null,
  query: 'v=1',
  accounting: null,
  modelLoaded: false,
  modelBytes: null,
  run: null, // {settings, steps:[], loss:[], valSteps:[], val:[], accuracy, backend, trainable, tokens, ms, status}
  runs: [],
  dirty: false,
  spectraPlot: null,
  histPlot: null,
  histogram: null,
  pendingStart: false,
};

// ---- errors and notices -------------------------------------------------------------------------------------------

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function showNotice(message) {
  const n = $('notice');
  n.textContent = message;
  n.hidden = !message;
}

// ---- settings <-> controls ----------------------------------------------------------------------------------------

function readControls() {
  const num = (id) => Number($(id).value);
  const r = num('rank');
  const targets = TARGETS.filter((t) => $(`targets-${t}`).checked);
  // Only ranks that differ from r travel (an empty box reads as 0 and is refused with a message, like any bad rank).
  const ranks = $('per-target').checked
    ? targets.filter((t) => num(`rank-${t}`) !== r).map((t) => `${t}:${$(`rank-${t}`).value.trim() || 0}`).join(',')
    : '';
  return {
    method: $('method').value,
    r,
    ranks,
    alpha: num('alpha'),
    targets,
    format: $('format').value,
    dq: $('double-quant').checked,
    adapter_storage: $('adapter-storage').value,
    lr: num('lr'),
    batch: num('batch'),
    seq: num('seq'),
    steps: num('steps'),
    seed: num('seed'),
    task: $('task').value,
  };
}

function writeControls(s) {
  $('method').value = s.method;
  $('rank').value = String(s.r);
  for (const t of TARGETS) $(`targets-${t}`).checked = s.targets.includes(t);
  const own = ownRanks(s.ranks);
  $('per-target').checked = own.size > 0;
  for (const t of TARGETS) $(`rank-${t}`).value = own.get(t) ?? String(s.r);
  $('format').value = s.format;
  $('double-quant').checked = s.dq;
  $('adapter-storage').value = s.adapter_storage;
  // Settings hold f32 values: show them at f32 precision, not as their f64 expansion (0.003, not 0.0030000000261).
  $('lr').value = String(Number(s.lr.toPrecision(7)));
  $('alpha').value = String(Number(s.alpha.toPrecision(7)));
  $('batch').value = String(s.batch);
  $('seq').value = String(s.seq);
  $('steps').value = String(s.steps);
  $('seed').value = String(s.seed);
  $('task').value = s.task;
  syncDependentControls(s);
}

/// Controls whose meaning depends on others: the base format only matters for LoRA/QLoRA, double quantization only
/// for the block-wise 4-bit and 8-bit formats, the text box only for "your own text".
function syncDependentControls(s) {
  const full = s.method === 'full';
  for (const id of ['rank', 'alpha', 'adapter-storage', 'per-target', ...TARGETS.map((t) => `targets-${t}`)]) $(id).disabled = full;
  for (const t of TARGETS) {
    $(`rank-${t}`).hidden = !$('per-target').checked;
    $(`rank-${t}`).disabled = full || !s.targets.includes(t);
  }
  $('format').disabled = full;
  $('double-quant').disabled = full || !['int8', 'int4', 'fp4', 'nf4'].includes(s.format);
  $('rank-out').textContent = String(s.r);
  $('scaling-out').textContent = (s.alpha / s.r).toFixed(3);
  $('user-text-box').hidden = s.task !== 'text';
}

/// Every control change: recompute counts and memory at once (before any training), update the URL.
function onSettingsChanged(event) {
  // Moving r moves the per-matrix ranks that were following it.
  if (event && event.target.id === 'rank' && state.settings) {
    for (const t of TARGETS) if (Number($(`rank-${t}`).value) === state.settings.r) $(`rank-${t}`).value = $('rank').value;
  }
  const s = readControls();
  if (s.method === 'full') { s.format = 'fp32'; s.dq = false; s.adapter_storage = 'none'; }
  if (!['int8', 'int4', 'fp4', 'nf4'].includes(s.format)) s.dq = false;
  syncDependentControls(s);
  state.settings = s;
  if (state.run && state.run.status !== 'new') state.dirty = true;
  send({ type: 'account', settings: s });
}

// ---- drawing ------------------------------------------------------------------------------------------------------

const lossChart = new LossChart($('loss-chart'));
let frameRequested = false;
function requestDraw() {
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(draw);
  }
}

function draw() {
  frameRequested = false;
  const r = state.run;
  if (!r) {
    lossChart.draw({ steps: [], loss: [], valSteps: [], val: [] }, previousCurves());
    return;
  }
  const n = r.steps.length;
  const stepEl = $('step');
  stepEl.textContent = `${n} / ${r.settings.steps}`;
  stepEl.dataset.value = String(n);
  if (n > 0) {
    const last = r.last;
    $('loss').textContent = last.loss.toFixed(4);
    $('loss').dataset.value = String(last.loss);
    $('lr-now').textContent = last.lr.toExponential(2);
    $('grad-norm').textContent = last.grad_norm.toFixed(3);
    // Throughput over the last 20 steps (the first steps include pipeline compilation).
    const recent = r.ms.slice(-20);
    const ms = recent.reduce((a, b) => a + b, 0) / recent.length;
    $('ms-step').textContent = ms.toFixed(0);
    $('tok-s').textContent = fmtInt(Math.round((last.tokens / ms) * 1000));
    r.tokS = (last.tokens / ms) * 1000;
  }
  if (r.val.length) {
    const v = r.val[r.val.length - 1];
    $('val-loss').textContent = v.toFixed(4);
    $('val-loss').dataset.value = String(v);
  }
  if (r.accuracy != null) {
    $('accuracy').textContent = `${(r.accuracy * 100).toFixed(0)}%`;
    $('accuracy').dataset.value = String(r.accuracy);
  }
  $('train-progress').value = n / r.settings.steps;
  lossChart.draw(r, previousCurves());
  $('loss-chart').dataset.points = String(lossChart.points());
}

function previousCurves() {
  return state.runs.map((r, i) => ({ label: `run ${i + 1}: ${runLabel(r.settings)}`, steps: r.curve.steps, loss: r.curve.loss }));
}

function runLabel(s) {
  return s.method === 'full' ? 'full' : `${s.method} r=${s.r} ${s.format}${s.dq ? '+dq' : ''}`;
}

/// Drops a run's points after `step` (the engine restored that step's state after a divergence).
function truncateRun(r, step) {
  const keep = r.steps.findIndex((s) => s > step);
  if (keep >= 0) {
    for (const k of ['steps', 'loss', 'ms']) r[k].length = keep;
    r.last = keep > 0 ? { ...r.last, loss: r.loss[keep - 1] } : null;
  }
  requestDraw();
}

function resetStats() {
  for (const id of ['loss', 'val-loss', 'accuracy', 'lr-now', 'grad-norm', 'tok-s', 'ms-step']) {
    $(id).textContent = '–';
    delete $(id).dataset.value;
  }
  delete $('val-loss').dataset.initial;
  $('step').textContent = '0';
  $('step').dataset.value = '0';
  $('train-progress').value = 0;
  $('rounded-note').hidden = true;
}

// ---- runs ---------------------------------------------------------------------------------------------------------

/// Keeps a run with at least one step in the table and on the chart.
function archiveRun() {
  const r = state.run;
  if (r && r.steps.length > 0) {
    state.runs.push({
      settings: r.settings,
      trainable: r.trainable,
      steps: r.steps.length,
      loss: r.last.loss,
      val: r.val.length ? r.val[r.val.length - 1] : null,
      accuracy: r.accuracy,
      tokS: r.tokS,
      backend: r.backend,
      curve: { steps: r.steps.slice(), loss: r.loss.slice() },
    });
    renderRuns(state.runs);
  }
  state.run = null;
}

function setTrainingButtons(status) {
  $('train').disabled = status === 'running' || status === 'starting';
  $('pause').disabled = !(status === 'running' || status === 'paused');
  $('pause').textContent = status === 'paused' ? 'Resume' : 'Pause';
  $('train').textContent = state.run && state.run.status === 'paused' && !state.dirty ? 'Train (new run)' : 'Train';
  $('export-run').disabled = !state.run || status === 'starting' || status === 'idle';
}

function ensureModel() {
  if (state.modelLoaded) return;
  $('load-gate').hidden = true;
  $('load-progress').hidden = false;
  send({ type: 'load' });
}

function startTraining() {
  clearError();
  const s = state.settings;
  if (s.task === 'text' && !state.userTextSent) {
    showError('Paste or drop a text to train on first (or pick a built-in task).');
    return;
  }
  archiveRun();
  ensureModel();
  resetStats();
  // A new run replaces the saved one at its first autosave.
  $('restore-bar').hidden = true;
  state.dirty = false;
  state.run = { settings: s, steps: [], loss: [], ms: [], valSteps: [], val: [], accuracy: null, status: 'starting', last: null };
  setTrainingButtons('starting');
  send({ type: 'start', settings: s, preferGpu: preferGpu() });
  requestDraw();
}

// ---- generation ----------------------------------------------------------------------------------------------------

function generationEnded() {
  $('generate').disabled = false;
  $('stop-generate').hidden = true;
}

// ---- saved runs ------------------------------------------------------------------------------------------------------

function timeOf(ms) {
  return ms ? `at ${new Date(ms).toLocaleString()}` : '';
}

/// A run this browser kept: say what it is, and let the reader restore or discard it.
function offerRestore(saved) {
  const s = saved.settings;
  $('restore-text').textContent = `A run saved in this browser ${timeOf(saved.savedAt)} can be restored: ${runLabel(s)}, ` +
    `step ${saved.step} of ${s.steps}.`;
  $('restore-bar').hidden = false;
  $('restore-run').disabled = false;
}

function preferGpu() {
  return state.gpu.available && state.page.backend !== 'cpu';
}

// ---- worker events -------------------------------------------------------------------------------------------------

const onMessage = {
  init(m) {
    state.config = m.config;
    state.defaults = m.defaults;
    state.page = m.parsed.page;
    state.modelBytes = m.modelBytes;
    state.gpu = m.gpu;
    const forced = state.page.backend === 'cpu';
    const backend = m.gpu.available && !forced ? 'webgpu' : 'cpu';
    $('backend').textContent = backend;
    $('backend').dataset.value = backend;
    // Threads and SIMD of the CPU executor (the fallback, and the evaluation and generation either way).
    const { cpu } = m;
    $('backend').dataset.threads = String(cpu.threads);
    $('backend').dataset.simd = cpu.relaxed ? 'relaxed' : 'simd128';
    const onThreads = cpu.threads > 1 ? `wasm, ${cpu.threads} threads` : `wasm, one thread: ${cpu.threadsWhy}`;
    const onSimd = cpu.relaxed ? 'relaxed SIMD' : `plain SIMD: ${cpu.relaxedWhy}`;
    $('backend').title = `Where training runs; the CPU executor: ${onThreads}; ${onSimd} (relaxed SIMD fuses the `
      + 'multiply and the add of the matrix products into one instruction where the CPU can)';
    if (backend === 'cpu') {
      showNotice(forced ? `Training on the CPU executor (${onThreads}; ${onSimd}), as the link asks (backend=cpu).`
        : `Training on the CPU executor (${onThreads}; ${onSimd}): ${m.gpu.reason}. It is slower; small batches keep it responsive.`);
    }
    $('seq').max = String(m.config.n_positions);
    writeControls(m.parsed.settings);
    state.settings = m.parsed.settings;
    if (m.parsed.errors.length) showError(m.parsed.errors.join('\n'));
    applyPageOptions();
    fillHistogramChoices();
    send({ type: 'account', settings: state.settings });
    if (m.saved) offerRestore(m.saved);
    if (m.storage) $('save-status').textContent = `Runs are not kept in this browser: ${m.storage}.`;
    if (!state.page.embed) ensureModel();
    else {
      $('load-gate').hidden = false;
      $('load-size').textContent = state.modelBytes ? `(${fmtBytes(state.modelBytes)} download)` : '';
    }
  },
  account(m) {
    // Settings that were refused are fine again: their message goes, the numbers update.
    if (state.settingsError) { clearError(); state.settingsError = false; }
    state.accounting = m.accounting;
    state.query = m.query;
    renderParams(m.accounting, state.settings, state.config);
    const current = state.run && !state.dirty ? state.run : null;
    renderMemory(m.accounting, current && current.measured, current && current.backend);
    renderScale(m.accounting);
    $('snippet').textContent = m.snippet;
    history.replaceState(null, '', `${location.pathname}?${m.query}${pageQuery()}`);
  },
  progress(m) {
    $('load-bar').max = m.total || 1;
    $('load-bar').value = m.loaded;
    $('load-text').textContent = m.total ? `loading the model… ${fmtBytes(m.loaded)} of ${fmtBytes(m.total)}` : `loading the model… ${fmtBytes(m.loaded)}`;
  },
  loaded(m) {
    state.modelLoaded = true;
    $('load-progress').hidden = true;
    $('load-gate').hidden = true;
    document.body.dataset.model = 'loaded';
    void m;
    requestHistogram();
  },
  text(m) {
    $('user-text-info').textContent = `${fmtInt(m.bytes)} bytes ready (never leaves this tab)`;
  },
  started(m) {
    const r = state.run;
    if (!r) return;
    r.status = 'running';
    r.backend = m.backend;
    r.trainable = m.trainable;
    r.measured = m.measured;
    $('backend').textContent = m.backend;
    $('backend').dataset.value = m.backend;
    showNotice(m.notice || '');
    renderMemory(state.accounting, m.measured, m.backend);
    setTrainingButtons('running');
  },
  fallback(m) {
    // The device was lost: the run went back to its last snapshot (step m.step) and continues on the CPU.
    showNotice(m.notice);
    $('backend').textContent = m.backend;
    $('backend').dataset.value = m.backend;
    if (state.run) {
      truncateRun(state.run, m.step);
      state.run.backend = m.backend;
      state.run.measured = null;
    }
    if (state.accounting) renderMemory(state.accounting, null, m.backend);
    requestDraw();
  },
  step(m) {
    const r = state.run;
    if (!r) return;
    r.steps.push(m.step + 1);
    r.loss.push(m.loss);
    r.ms.push(m.ms);
    r.last = m;
    requestDraw();
  },
  val(m) {
    const r = state.run;
    if (!r) return;
    // Step 0 is scored after the first step (training starts at once), so points are kept in step order.
    let i = r.valSteps.length;
    while (i > 0 && r.valSteps[i - 1] > m.step) i--;
    r.valSteps.splice(i, 0, m.step);
    r.val.splice(i, 0, m.val_loss);
    if (m.step === 0) $('val-loss').dataset.initial = String(m.val_loss);
    const latest = i === r.valSteps.length - 1;
    if (m.accuracy != null && latest) r.accuracy = m.accuracy;
    if (m.val_loss_adapter_rounded != null) {
      const note = $('rounded-note');
      note.hidden = false;
      note.textContent = `The article's claim, measured: with A and B rounded to ${r.settings.adapter_storage}, the validation loss is ` +
        `${m.val_loss_adapter_rounded.toFixed(4)} (vs ${m.val_loss.toFixed(4)} with the fp32 adapters QLoRA actually keeps).`;
    }
    requestDraw();
  },
  done(m) {
    if (!state.run) return;
    state.run.status = 'done';
    setTrainingButtons('done');
    state.spectraPlot = drawSpectra($('spectra-chart'), m.spectra, state.spectraPlot);
    // The final numbers are on screen before the page says it is done.
    draw();
    document.body.dataset.run = 'done';
  },
  paused() {
    if (state.run) state.run.status = 'paused';
    // Draw now, not on the next frame: once the button says Resume, the step shown is the one training stopped at.
    draw();
    setTrainingButtons('paused');
  },
  resumed() {
    if (state.run) state.run.status = 'running';
    setTrainingButtons('running');
  },
  reset() {
    state.run = null;
    resetStats();
    setTrainingButtons('idle');
    $('save-status').textContent = '';
    requestDraw();
  },
  restored(m) {
    // A saved or imported run: the controls show its settings, the chart its history; Resume continues it.
    $('restore-bar').hidden = true;
    archiveRun();
    writeControls(m.settings);
    state.settings = m.settings;
    state.dirty = false;
    resetStats();
    // A run on the reader's own text brought its text along (from the saved record or the zip's train.txt).
    if (m.settings.task === 'text') {
      state.userTextSent = true;
      $('user-text-info').textContent = 'the run\'s own text is loaded (it never leaves this tab)';
    }
    const status = m.finished ? 'done' : 'paused';
    state.run = { settings: m.settings, steps: [], loss: [], ms: [], valSteps: [], val: [], accuracy: null, status, last: null,
      backend: m.backend, trainable: m.trainable, measured: m.measured };
    for (const s of m.history.steps) onMessage.step(s);
    for (const v of m.history.vals) onMessage.val(v);
    $('backend').textContent = m.backend;
    $('backend').dataset.value = m.backend;
    const from = m.source === 'file' ? 'from the file' : `saved in this browser ${timeOf(m.savedAt)}`;
    showNotice(`Restored the run ${from}: step ${m.step} of ${m.settings.steps}.${m.finished ? '' : ' Press Resume to continue it.'}` +
      (m.notice ? ` ${m.notice}` : ''));
    setTrainingButtons(status);
    send({ type: 'account', settings: m.settings });
    draw();
    document.body.dataset.restored = String(m.step);
  },
  saved(m) {
    $('save-status').textContent = `Saved in this browser at step ${m.step}.`;
    document.body.dataset.saved = String(m.step);
  },
  discarded() {
    $('restore-bar').hidden = true;
    $('save-status').textContent = '';
  },
  exported(m) {
    const url = URL.createObjectURL(new Blob([m.bytes], { type: 'application/zip' }));
    const a = el('a', { href: url, download: m.name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    $('save-status').textContent = `Exported ${m.name}.`;
  },
  generating(m) {
    $('output-base').textContent = m.base;
    $('output-tuned').textContent = m.tuned;
    $('gen-progress').textContent = `${m.done} / ${m.total} tokens`;
    $('gen-progress').dataset.done = String(m.done);
  },
  'generation-stopped'() {
    $('gen-progress').textContent = `stopped at ${$('gen-progress').dataset.done || 0} tokens`;
    generationEnded();
  },
  generated(m) {
    $('output-base').textContent = m.base;
    $('output-tuned').textContent = m.tuned;
    $('gen-progress').textContent = `${m.done} tokens`;
    generationEnded();
    $('base-caption').textContent = state.run && state.run.settings.method !== 'full'
      ? `Base (${state.run.settings.format}${state.run.settings.dq ? '+dq' : ''}, no adapter)` : 'Base';
  },
  histogram(m) {
    state.histogram = m.histogram;
    drawHist();
    renderQuantErrors(m.histogram);
  },
  error(m) {
    if (m.during === 'start' || m.during === 'training') {
      // A diverged run is already back at its last good validation: show that step.
      const back = /back at step (\d+)/.exec(m.message);
      if (back && state.run) truncateRun(state.run, Number(back[1]));
      if (state.run && state.run.steps.length === 0) state.run = null;
      else if (state.run) state.run.status = 'paused';
      setTrainingButtons(state.run ? 'paused' : 'idle');
    }
    if (m.during === 'generate') generationEnded();
    if (m.during === 'restore') $('restore-bar').hidden = true;
    // The previous counts stay on screen while the settings are invalid.
    if (m.during === 'account') state.settingsError = true;
    if (m.during === 'load' || m.during === 'init') $('load-progress').hidden = true;
    showError(m.message);
  },
};

worker.onmessage = (ev) => {
  const handler = onMessage[ev.data.type];
  if (handler) handler(ev.data);
};
worker.onerror = (ev) => showError(`The engine stopped: ${ev.message || 'the worker failed to start'}`);

// ---- page options: embed, hidden controls, copy link ----------------------------------------------------------------

function applyPageOptions() {
  document.body.classList.toggle('embed', state.page.embed);
  for (const name of state.page.hide) {
    for (const node of document.querySelectorAll(`[data-control="${name}"]`)) node.hidden = true;
  }
}

/// The page options of this link (embed, hidden controls, forced backend), appended to the settings' query.
function pageQuery(embed = state.page.embed) {
  const p = state.page;
  return `${embed ? '&embed=1' : ''}${p.hide.length ? `&hide=${p.hide.join(',')}` : ''}${p.backend ? `&backend=${p.backend}` : ''}`;
}

function shareUrl(embed) {
  return `${location.origin}${location.pathname}?${state.query}${pageQuery(embed)}`;
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.dataset.copied = text;
    const label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label; }, 1200);
  } catch {
    // Clipboard refused (permissions, insecure context): show the text so it can be copied by hand.
    button.dataset.copied = text;
    showNotice(text);
  }
}

// ---- histogram choices ------------------------------------------------------------------------------------------------

function fillHistogramChoices() {
  const sel = $('hist-weight');
  const names = { attn: 'attn.c_attn', o: 'attn.c_proj', fc: 'mlp.c_fc', proj: 'mlp.c_proj' };
  sel.replaceChildren();
  for (let l = 0; l < state.config.n_layer; l++) {
    for (const [k, v] of Object.entries(names)) sel.append(el('option', { value: `${l}:${k}`, textContent: `h.${l}.${v}` }));
  }
  sel.value = '0:fc';
}

function requestHistogram() {
  const [layer, linear] = $('hist-weight').value.split(':');
  send({ type: 'histogram', layer: Number(layer), linear });
}

function drawHist() {
  if (!state.histogram) return;
  const f = state.settings && ['nf4', 'fp4', 'int4'].includes(state.settings.format) ? state.settings.format : 'nf4';
  state.histPlot = drawHistogram($('hist-chart'), state.histogram, f, state.histPlot);
}

// ---- wiring -----------------------------------------------------------------------------------------------------------

for (const node of $('controls').querySelectorAll('input, select')) {
  if (['user-text', 'user-file', 'import-run'].includes(node.id)) continue;
  node.addEventListener('input', onSettingsChanged);
  node.addEventListener('change', onSettingsChanged);
}
$('format').addEventListener('change', drawHist);
$('controls').addEventListener('submit', (e) => e.preventDefault());
$('train').addEventListener('click', startTraining);
$('pause').addEventListener('click', () => {
  if (!state.run) return;
  if (state.run.status === 'paused') send({ type: 'resume' });
  else send({ type: 'pause' });
});
$('reset').addEventListener('click', () => { archiveRun(); send({ type: 'reset' }); });
$('load-model').addEventListener('click', ensureModel);
$('restore-run').addEventListener('click', () => {
  clearError();
  ensureModel();
  $('restore-run').disabled = true;
  send({ type: 'restore', preferGpu: preferGpu() });
});
$('discard-run').addEventListener('click', () => send({ type: 'discard' }));
$('export-run').addEventListener('click', () => { clearError(); send({ type: 'export' }); });
$('import-run').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  e.target.value = '';
  if (!f) return;
  clearError();
  ensureModel();
  const bytes = await f.arrayBuffer();
  send({ type: 'import', bytes, preferGpu: preferGpu() }, [bytes]);
});
// Leaving or hiding the tab saves the run now (the autosave covers a crash, a few seconds behind).
window.addEventListener('pagehide', () => send({ type: 'save' }));
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') send({ type: 'save' }); });
$('log-scale').addEventListener('change', (e) => { lossChart.log = e.target.checked; requestDraw(); });
$('stop-generate').addEventListener('click', () => send({ type: 'stop-generate' }));
$('generate').addEventListener('click', () => {
  clearError();
  ensureModel();
  $('generate').disabled = true;
  $('stop-generate').hidden = false;
  $('gen-progress').textContent = '';
  $('gen-progress').dataset.done = '0';
  send({
    type: 'generate',
    prompt: $('prompt').value,
    tokens: Number($('gen-tokens').value),
    temperature: Number($('temperature').value),
    topK: Number($('top-k').value),
    seed: state.settings ? state.settings.seed : 0,
  });
});
$('hist-weight').addEventListener('change', requestHistogram);
$('copy-link').addEventListener('click', (e) => copy(shareUrl(false), e.currentTarget));
$('copy-iframe').addEventListener('click', (e) => copy(
  `<iframe src="${shareUrl(true)}" width="100%" height="720" style="border:0" loading="lazy" title="qlora-playground"></iframe>`, e.currentTarget));
$('copy-snippet').addEventListener('click', (e) => copy($('snippet').textContent, e.currentTarget));

// User text: pasted, chosen or dropped. The bytes go to the worker, which checks them (UTF-8, size) in Rust.
function sendUserText(bytes) {
  clearError();
  // The worker handles requests in order, so a Train after this uses this text (or reports why it could not).
  state.userTextSent = true;
  send({ type: 'text', bytes }, [bytes]);
}
$('user-text').addEventListener('change', (e) => sendUserText(new TextEncoder().encode(e.target.value).buffer));
$('user-file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (f) sendUserText(await f.arrayBuffer());
});
$('user-text').addEventListener('dragover', (e) => e.preventDefault());
$('user-text').addEventListener('drop', async (e) => {
  e.preventDefault();
  const f = e.dataTransfer.files[0];
  if (f) sendUserText(await f.arrayBuffer());
});
window.addEventListener('resize', () => {
  requestDraw();
  for (const [plot, id] of [[state.spectraPlot, 'spectra-chart'], [state.histPlot, 'hist-chart']]) {
    if (plot) plot.setSize({ width: Math.max(200, $(id).clientWidth), height: 200 });
  }
});

send({ type: 'init', query: location.search });
requestDraw();
