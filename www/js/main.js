// The page (UI thread): reads the controls into settings, sends requests to the engine's worker, and draws what it
// reports on animation frames. It computes nothing itself: every number comes from the engine.

import { LossChart, drawHistogram, drawSpectra as plotSpectra, spectraKey } from './charts.js';
import { startEngineWorker } from './engine-worker.js';
import { cachedFiles, cachedModels, deleteCached, download } from './hub.js';
import { MODELS, gpt2Params, hubDownloadBytes } from './models.js';
import { storageLabel } from './protocol.js';
import { el, fmtBytes, fmtInt, ownRanks, renderMemory, renderParams, renderQuantErrors, renderRuns, renderScale } from './views.js';

const $ = (id) => document.getElementById(id);
const TARGETS = ['q', 'k', 'v', 'o', 'fc', 'proj'];

// The engine's worker (replaced once if its threaded engine never finishes starting: engine-worker.js), started at
// the end of this file, when every handler is in place.
let engine = null;
const send = (msg, transfer) => engine.post(msg, transfer);

const state = {
  config: null,
  defaults: null,
  page: { embed: false, hide: [] },
  settings: null,
  query: 'v=1',
  accounting: null,
  modelLoaded: false,
  // Load waits: the chosen hub model would not fit the tab with its base kept as the settings keep it.
  loadRefused: false,
  // The loaded base's format ("nf4+dq"…): before a run, "base" text comes from it.
  loadedStorage: null,
  // Why a run of the settings shown would not fit the tab (the engine's estimate), or null.
  runProblem: null,
  modelBytes: null,
  // The model the page shows (models.js): the built-in one loads at once; a hub model or the reader's files on a click.
  modelName: 'shakespeare',
  // A hub download that stopped part-way: the next Load says it starts again.
  downloadFailed: false,
  run: null, // {settings, steps:[], loss:[], valSteps:[], val:[], accuracy, backend, trainable, tokens, ms, status}
  runs: [],
  dirty: false,
  spectraPlot: null,
  histPlot: null,
  histogram: null,
  pendingStart: false,
  // The base formats and what follows from each (engine: web::api::base_formats).
  formats: null,
  // The reader's last base per method and last double-quantization choice: a method or format switch brings them back.
  base: { lora: 'fp32', qlora: 'nf4', dq: true },
  // Settings the engine refused, each [{field, message}]: shown at their control; Train waits for them.
  problems: [],
  // A one-click experiment in progress: {kind, title, queue: [settings], records: []}.
  experiment: null,
  // The engine trapped (worker.js: `stopped`): nothing more can run until the page is reloaded.
  engineStopped: false,
  // The run this browser kept ({savedAt, step, settings, model}) until it is restored, discarded or replaced: a run on
  // the reader's own files can be restored only once the same files are loaded again.
  savedRun: null,
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
  // An empty box is null, not 0: the engine says "the box is empty" at that control (and "got 1.5" for a fraction).
  const num = (id) => { const v = $(id).value.trim(); return v === '' ? null : Number(v); };
  const r = num('rank');
  const targets = TARGETS.filter((t) => $(`targets-${t}`).checked);
  // Only ranks that differ from r travel (an empty box travels as `q:` and is refused as empty, like any bad rank).
  const ranks = $('per-target').checked
    ? targets.filter((t) => num(`rank-${t}`) !== r).map((t) => `${t}:${$(`rank-${t}`).value.trim()}`).join(',')
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
  if (s.method !== 'full') state.base[s.method] = s.format;
  if (dqApplies(s.method, s.format)) state.base.dq = s.dq;
  syncDependentControls(s);
}

const formatInfo = (name) => state.formats.formats.find((f) => f.name === name);
/// Double quantization applies to bitsandbytes' 4-bit formats (fp4, nf4) of a LoRA/QLoRA base.
const dqApplies = (method, format) => method !== 'full' && Boolean(formatInfo(format)?.double_quant);

/// Marks a control that changed because another did, so the reader sees it move.
function flash(control) {
  control.classList.remove('followed');
  void control.offsetWidth;
  control.classList.add('followed');
}

/// The method follows the base and the base the method: LoRA keeps a 16/32-bit base, QLoRA a quantized one, full
/// fine-tuning fp32 weights. Double quantization follows the format: off where it does not apply, the reader's last
/// choice where it does. Returns what followed, in words ('' when nothing did).
function follow(changed) {
  const method = $('method');
  const format = $('format');
  const dq = $('double-quant');
  let said = '';
  if (changed === 'method') {
    if (method.value === 'full') {
      format.value = 'fp32';
      said = 'Full fine-tuning trains every weight, so they stay fp32: the base format does not apply.';
    } else {
      const want = state.base[method.value];
      if (format.value !== want) {
        format.value = want;
        flash(format);
        said = method.value === 'lora'
          ? `LoRA keeps the frozen base in 16 or 32 bits: the base is now ${want}.`
          : `QLoRA keeps the frozen base quantized: the base is now ${want}.`;
      }
    }
  } else if (changed === 'format') {
    const info = formatInfo(format.value);
    if (method.value !== info.method) {
      method.value = info.method;
      flash(method);
      said = info.quantized ? `A quantized base (${info.name}) makes this QLoRA.` : `${info.name.startsWith('f') ? 'An' : 'A'} ${info.name} base is not quantized, which makes this LoRA.`;
    }
    state.base[info.method] = info.name;
  } else if (changed === 'double-quant') {
    state.base.dq = dq.checked;
  }
  const applies = dqApplies(method.value, format.value);
  const wanted = applies && state.base.dq;
  if (changed !== 'double-quant' && dq.checked !== wanted) {
    dq.checked = wanted;
    flash(dq);
    if (!applies && method.value !== 'full') {
      said += ` Double quantization applies to fp4 and nf4 only: off for ${format.value}, back when you pick fp4 or nf4.`;
    }
  }
  dq.disabled = !applies;
  return said.trim();
}

/// Controls whose meaning depends on others: the base format only matters for LoRA/QLoRA, double quantization only
/// for fp4 and nf4, the text box only for "your own text", the scaling per matrix when ranks differ.
function syncDependentControls(s) {
  const full = s.method === 'full';
  for (const id of ['rank', 'alpha', 'adapter-storage', 'per-target', ...TARGETS.map((t) => `targets-${t}`)]) $(id).disabled = full;
  for (const t of TARGETS) {
    $(`rank-${t}`).hidden = !$('per-target').checked;
    $(`rank-${t}`).disabled = full || !s.targets.includes(t);
  }
  $('format').disabled = full;
  if (full) $('format').value = 'fp32';
  $('double-quant').disabled = !dqApplies(s.method, s.format);
  const own = ownRanks(s.ranks);
  // A rank box left empty shows '–', not "null" or 0.
  const shown = (r) => (r == null || r === '' ? '–' : String(r));
  const ranks = s.targets.map((t) => [t, own.get(t) ?? s.r]);
  const mixed = !full && new Set(ranks.map(([, r]) => shown(r))).size > 1;
  $('rank-out').textContent = mixed ? `${shown(s.r)} (mixed: ${ranks.map(([t, r]) => `${t} ${shown(r)}`).join(', ')})` : shown(s.r);
  $('rank-out').dataset.mixed = String(mixed);
  // α/r of a box that holds no usable number is no number either: '–' until it is fixed (its control says why).
  const scaling = (r) => (s.alpha > 0 && Number(r) > 0 ? (s.alpha / Number(r)).toFixed(3) : '–');
  $('scaling-out').textContent = mixed ? ranks.map(([t, r]) => `${t} ${scaling(r)}`).join(', ') : scaling(s.r);
  $('user-text-box').hidden = s.task !== 'text';
  renderBaseExplainer(s);
}

/// What LoRA, QLoRA, the chosen base format and double quantization are, with this model's numbers.
function renderBaseExplainer(s) {
  const box = $('base-explainer');
  if (!state.formats) return;
  const { block, nested_block: nested } = state.formats;
  const info = formatInfo(s.method === 'full' ? 'fp32' : s.format);
  const nf4 = formatInfo('nf4');
  const bits = (b) => b.toFixed(3).replace(/\.?0+$/, '');
  const lines = [];
  if (s.method === 'full') {
    lines.push('Full fine-tuning trains every weight in fp32: 32 bits per weight, plus a gradient and two AdamW moments each.');
  } else if (s.method === 'lora') {
    lines.push(`LoRA: the base W₀ stays frozen in ${info.name} (${bits(info.bits)} bits per weight); only the thin B and A train, in fp32.`);
  } else {
    lines.push(`QLoRA: the frozen base is stored quantized (${info.name}: ${bits(s.dq && info.bits_dq ? info.bits_dq : info.bits)} bits per weight) ` +
      'and dequantized block by block for each product; B and A train in fp32 through it.');
    // The paper's QLoRA is one recipe; the page names LoRA over any quantized base QLoRA, and says so.
    lines.push(s.format === 'nf4' && s.dq
      ? 'This is the QLoRA paper\'s base (nf4 with double quantization); the paper computes in bf16 and keeps B and A in bf16, while this page keeps both in fp32.'
      : 'The QLoRA paper\'s base is nf4 with double quantization; this page calls LoRA over any quantized base QLoRA, to compare formats.');
  }
  if (s.method !== 'full' && ['nf4', 'fp4', 'int4', 'int8'].includes(info.name)) {
    const what = {
      nf4: `NF4 (4-bit NormalFloat) keeps one of 16 levels per weight, placed at the quantiles of a normal distribution — where trained weights cluster — scaled by the largest magnitude (absmax) of its block of ${block} weights`,
      fp4: `FP4 keeps a 4-bit float per weight (sign, exponent, mantissa), scaled by the absmax of its block of ${block} weights`,
      int4: `INT4 keeps one of 15 evenly spaced levels per weight (−7…7, symmetric about zero), scaled by the absmax of its block of ${block} weights`,
      int8: `INT8 keeps one of 255 evenly spaced levels per weight, scaled by the absmax of its block of ${block} weights`,
    }[info.name];
    lines.push(`${what}: ${bits(info.bits)} bits per weight with its fp32 absmax.`);
  }
  if (nf4 && nf4.bits_dq) {
    lines.push(`Double quantization stores those absmax constants in 8 bits too (their mean subtracted first, then bitsandbytes' 8-bit dynamic code), with one fp32 constant per ${nested} of them: ` +
      `NF4 goes from ${bits(nf4.bits)} to ${bits(nf4.bits_dq)} bits per weight.${dqApplies(s.method, s.format) ? '' : ' It applies to fp4 and nf4 only.'}`);
  }
  box.replaceChildren(...lines.map((t) => el('p', {}, t)));
}

/// Asks the engine for the numbers of `settings`. Requests are numbered, and the page marks which answer it shows
/// (body data-account-sent / data-account-shown), so a reader's script or a test can tell when it is current.
let accountsSent = 0;
function account(settings) {
  accountsSent += 1;
  document.body.dataset.accountSent = String(accountsSent);
  send({ type: 'account', settings, seq: accountsSent });
}

/// Every control change: recompute counts and memory at once (before any training), update the URL.
function onSettingsChanged(event) {
  // Moving r moves the per-matrix ranks that were following it.
  if (event && event.target.id === 'rank' && state.settings) {
    // Compared as text: a box left empty (null in the settings) follows as an empty box does.
    const was = String(state.settings.r ?? '');
    for (const t of TARGETS) if ($(`rank-${t}`).value.trim() === was) $(`rank-${t}`).value = $('rank').value;
  }
  const changed = event && event.target.id;
  // Selects and checkboxes fire 'input' then 'change': follow once, on the first.
  if (['method', 'format', 'double-quant'].includes(changed) && event.type === 'input') {
    const said = follow(changed);
    if (said || changed !== 'double-quant') $('follow-note').textContent = said;
  } else if (changed && !['method', 'format', 'double-quant'].includes(changed)) {
    // The note explains the last move of the base controls; another control's change makes it old news.
    $('follow-note').textContent = '';
  }
  const s = readControls();
  if (s.method === 'full') { s.format = 'fp32'; s.dq = false; s.adapter_storage = 'none'; }
  if (!dqApplies(s.method, s.format)) s.dq = false;
  if (s.task !== (state.settings && state.settings.task)) followTask(s.task);
  syncDependentControls(s);
  state.settings = s;
  if (state.run && state.run.status !== 'new') state.dirty = true;
  account(s);
}

/// The generation prompt follows the data: each task's question form, or the first line of the reader's text.
const TASK_PROMPTS = { even: 'Q: is 47 even? A: ', add: '23+58=', reverse: 'reverse kitab: ', hamlet: 'HAMLET:' };
function followTask(task) {
  const prompt = task === 'text' ? ($('user-text').value.split('\n')[0] || '').slice(0, 40) : TASK_PROMPTS[task];
  if (prompt != null) $('prompt').value = prompt;
}

/// The control's visible name, for messages about it.
function controlName(field) {
  const names = { r: 'rank r', ranks: 'the per-matrix ranks', targets: 'the matrices to adapt', dq: 'double quantization',
    astore: 'adapter storage', lr: 'the learning rate', seq: 'the sequence length', data: 'your own text' };
  return names[field] || `the ${field}`;
}

/// Shows each refused setting at its control; the numbers meanwhile use its default (the engine settled them).
function showProblems(problems) {
  state.problems = problems;
  for (const old of document.querySelectorAll('.field-error:not(.gen-error)')) old.remove();
  for (const node of document.querySelectorAll('#controls [data-invalid]')) delete node.dataset.invalid;
  for (const p of problems) {
    const at = p.field === 'ranks' ? 'targets' : p.field;
    const control = document.querySelector(`#controls [data-control="${at}"]`) || $('train');
    control.dataset.invalid = 'true';
    control.after(el('p', { className: 'field-error', role: 'alert', 'data-testid': 'field-error', 'data-for': p.field, textContent: p.message }));
  }
  setTrainingButtons(state.run ? state.run.status : 'idle');
}

/// Why Train cannot start now, or '' when it can.
function trainBlocked() {
  if (state.engineStopped) return 'Train waits for a reload: the engine stopped (see the message above).';
  if (state.problems.length) {
    const [p] = state.problems;
    return `Train waits for ${controlName(p.field)}: ${p.message}.`;
  }
  if (!state.modelLoaded && state.modelName !== 'shakespeare') {
    if (state.modelName === 'files') return 'Train waits for your model: choose its files above.';
    if (!state.loadRefused) return 'Train waits for the model: press Load above.';
    return state.settings?.method === 'full'
      ? 'Train waits for the model, which full fine-tuning does not fit in this tab: choose LoRA or QLoRA with a base the message above names, then press Load.'
      : 'Train waits for the model, which does not fit this tab with this base format: choose one the message above names, then press Load.';
  }
  if (state.runProblem) return 'Train waits for settings whose run fits this tab (see Memory while training).';
  if (state.settings && state.settings.task === 'text' && !state.userTextSent) {
    return 'Train waits for your own text: paste it or drop a .txt file into the box (or pick a built-in task).';
  }
  return '';
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
  renderAnswers(r);
  const status = $('run-status');
  status.hidden = false;
  status.textContent = `step ${n} / ${r.settings.steps}${n > 0 ? ` · loss ${r.last.loss.toFixed(4)}` : ''}` +
    `${r.accuracy != null ? ` · accuracy ${(r.accuracy * 100).toFixed(0)}%` : ''}`;
  $('train-progress').value = n / r.settings.steps;
  lossChart.draw({ ...r, label: runLabel(r.settings) }, previousCurves());
  $('loss-chart').dataset.points = String(lossChart.points());
}

/// Earlier runs on the chart, each labelled and coloured as in the Runs table (the current run is drawn as itself).
function previousCurves() {
  return state.runs.map((r, i) => ({ label: `#${i + 1} ${runLabel(r.settings)}`, steps: r.curve.steps, loss: r.curve.loss, index: i }))
    .filter((c) => !(state.run && state.run.record === state.runs[c.index]));
}

function runLabel(s) {
  if (s.method === 'full') return 'full fp32';
  const own = ownRanks(s.ranks);
  const ranks = s.targets.map((t) => Number(own.get(t) ?? s.r));
  const r = new Set(ranks).size > 1 ? 'r mixed' : `r=${ranks[0] ?? s.r}`;
  return `${s.method === 'lora' ? 'LoRA' : 'QLoRA'} ${r} ${storageLabel(s)}`;
}

/// Chance, "always the majority answer", and what the model answers: an accuracy means little without them.
function renderAnswers(r) {
  const b = r.baseline;
  const base = $('accuracy-baseline');
  base.textContent = b ? `(chance ${b.chance == null ? '≈ 0' : `${(b.chance * 100).toFixed(0)}%`}; always “${b.majority_answer}”: ${(b.majority * 100).toFixed(0)}%)` : '';
  const box = $('answers');
  const a = r.answers;
  if (!a || !a.length) { box.hidden = true; return; }
  const total = a.reduce((n, [, c]) => n + c, 0);
  const list = a.map(([ans, c]) => `“${ans === '' ? '(nothing)' : ans}” ${c}`).join(', ');
  const one = a[0][1] === total;
  box.hidden = false;
  box.textContent = `The tuned model's answers on ${total} held-out questions: ${list}.` +
    (one ? ' It gives one answer to everything, so its accuracy is only the share of questions that answer fits.' : '');
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

const RUNS_KEY = 'qlora-playground-runs';
const MAX_KEPT_RUNS = 24;

/// Puts a run with at least one step into the Runs table and on the chart (once; a finished run at once), and keeps
/// the table in this browser so that a reload shows it again.
function recordRun(r) {
  if (!r || r.steps.length === 0) return null;
  const record = {
    settings: r.settings,
    trainable: r.trainable,
    steps: r.steps.length,
    loss: r.last.loss,
    val: r.val.length ? r.val[r.val.length - 1] : null,
    accuracy: r.accuracy,
    tokS: r.tokS,
    backend: r.backend,
    curve: { steps: r.steps.slice(), loss: r.loss.slice() },
  };
  if (r.record) Object.assign(r.record, record);
  else {
    r.record = record;
    state.runs.push(record);
    if (state.runs.length > MAX_KEPT_RUNS) state.runs.shift();
  }
  showRuns();
  return r.record;
}

function showRuns() {
  renderRuns(state.runs, runLabel);
  try {
    localStorage.setItem(RUNS_KEY, JSON.stringify(state.runs));
  } catch {
    // Storage refused (private mode, quota): the table still shows this tab's runs.
  }
}

function loadKeptRuns() {
  try {
    const kept = JSON.parse(localStorage.getItem(RUNS_KEY) || '[]');
    if (Array.isArray(kept)) state.runs = kept.filter((r) => r && r.settings && r.curve);
  } catch {
    state.runs = [];
  }
  renderRuns(state.runs, runLabel);
  requestDraw();
}

/// Leaves the current run: it stays in the table and on the chart if it has steps.
function archiveRun() {
  recordRun(state.run);
  state.run = null;
}

function setTrainingButtons(status) {
  const blocked = trainBlocked();
  const busy = status === 'running' || status === 'starting';
  $('train').disabled = busy || Boolean(blocked);
  $('train-why').textContent = busy ? '' : blocked;
  $('train-why').hidden = busy || !blocked;
  $('pause').disabled = !(status === 'running' || status === 'paused');
  $('pause').textContent = status === 'paused' ? 'Resume' : 'Pause';
  $('train').textContent = state.run && state.run.status === 'paused' && !state.dirty ? 'Train (new run)' : 'Train';
  $('export-run').disabled = !state.run || status === 'starting' || status === 'idle';
}

function ensureModel() {
  if (state.modelLoaded) return;
  // A hub model downloads only on its Load button; the reader's files load when chosen.
  if (state.modelName !== 'shakespeare') return;
  $('load-gate').hidden = true;
  $('load-progress').hidden = false;
  send({ type: 'load' });
}

function startTraining() {
  clearError();
  const s = state.settings;
  // Train pressed before the numbers answered the last change (a box just typed into): the answer decides, and a
  // refused box is said at the box; nothing of the current run is touched meanwhile.
  if (document.body.dataset.accountSent !== document.body.dataset.accountShown) {
    state.trainWhenAnswered = true;
    return;
  }
  if (trainBlocked()) {
    setTrainingButtons('idle');
    return;
  }
  archiveRun();
  ensureModel();
  resetStats();
  // A new run replaces the saved one at its first autosave.
  $('restore-bar').hidden = true;
  state.savedRun = null;
  state.dirty = false;
  state.run = { settings: s, steps: [], loss: [], ms: [], valSteps: [], val: [], accuracy: null, status: 'starting', last: null };
  setTrainingButtons('starting');
  send({ type: 'start', settings: s, preferGpu: preferGpu() });
  requestDraw();
}

/// The adapters' singular values, with a key naming each colour's matrix.
function drawSpectra(box, spectra, old) {
  const plot = plotSpectra(box, spectra, old);
  const key = spectraKey(spectra);
  $('spectra-key').replaceChildren(...key.targets.map(({ target, color }) =>
    el('li', {}, el('span', { className: 'swatch', style: `background:${color}` }), target)));
  if (key.targets.length) $('spectra-key').append(el('li', { className: 'muted' }, `one line per layer (${key.layers})`));
  return plot;
}

// ---- one-click experiments -------------------------------------------------------------------------------------------

/// The prepared series: each a list of settings derived from the current ones (their steps, data, seed, lr).
const EXPERIMENTS = {
  formats: {
    title: 'FP16 vs INT4 vs NF4 base',
    variants: (s) => [
      { ...s, method: 'lora', format: 'fp16', dq: false },
      { ...s, method: 'qlora', format: 'int4', dq: false },
      { ...s, method: 'qlora', format: 'nf4', dq: true },
    ],
  },
  ranks: {
    title: 'r = 1 vs 8 vs 64',
    variants: (s) => {
      const m = s.method === 'full' ? { method: 'qlora', format: state.base.qlora, dq: dqApplies('qlora', state.base.qlora) && state.base.dq } : {};
      return [1, 8, 64].map((r) => ({ ...s, ...m, r, ranks: '' }));
    },
  },
  methods: {
    title: 'LoRA vs QLoRA vs full fine-tuning',
    variants: (s) => [
      { ...s, method: 'lora', format: state.base.lora, dq: false },
      { ...s, method: 'qlora', format: state.base.qlora, dq: dqApplies('qlora', state.base.qlora) && state.base.dq },
      { ...s, method: 'full', format: 'fp32', dq: false, adapter_storage: 'none' },
    ],
  },
};

function startExperiment(kind) {
  if (state.experiment || trainBlocked()) return;
  const e = EXPERIMENTS[kind];
  state.experiment = { kind, title: e.title, queue: e.variants(state.settings), records: [] };
  $('experiment-stop').hidden = false;
  for (const b of document.querySelectorAll('[data-experiment]')) b.disabled = true;
  const summary = $('experiment-summary');
  summary.hidden = false;
  summary.textContent = `${e.title}: running ${state.experiment.queue.length} runs…`;
  delete summary.dataset.done;
  nextExperimentRun();
}

function nextExperimentRun() {
  const x = state.experiment;
  const s = x.queue.shift();
  writeControls(s);
  state.settings = s;
  account(s);
  $('experiment-summary').textContent = `${x.title}: run ${x.records.length + 1} of ${x.records.length + x.queue.length + 1} (${runLabel(s)})…`;
  startTraining();
}

function endExperiment(why) {
  const x = state.experiment;
  state.experiment = null;
  $('experiment-stop').hidden = true;
  for (const b of document.querySelectorAll('[data-experiment]')) b.disabled = false;
  const summary = $('experiment-summary');
  summary.textContent = why ? `${x.title}: stopped after ${x.records.length} runs (${why}).` : summarize(x);
  summary.dataset.done = why ? 'stopped' : 'done';
}

/// One sentence on what the series showed, from its runs' final numbers.
function summarize(x) {
  const rs = x.records;
  const score = (r) => (r.val != null ? r.val : r.loss);
  const what = rs.every((r) => r.val != null) ? 'validation loss' : 'training loss';
  const best = rs.reduce((a, b) => (score(b) < score(a) ? b : a));
  const worst = rs.reduce((a, b) => (score(b) > score(a) ? b : a));
  const gap = ((score(worst) - score(best)) / score(best)) * 100;
  const each = rs.map((r) => `${runLabel(r.settings)} ${score(r).toFixed(3)} (${fmtInt(r.trainable)} trainable${r.accuracy != null ? `, ${(r.accuracy * 100).toFixed(0)}% right` : ''})`).join('; ');
  const verdict = gap < 2
    ? `all within ${gap.toFixed(1)}% of each other — the choice barely changed the result here`
    : `${runLabel(best.settings)} lowest, ${runLabel(worst.settings)} ${gap.toFixed(1)}% higher`;
  return `${x.title}, ${best.steps} steps each — ${what}: ${each}. ${verdict[0].toUpperCase()}${verdict.slice(1)}.`;
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

/// On the CPU executor, the processor's multiply speed at the model's width (for the step-time estimate).
function measureCpu() {
  if (state.backend !== 'cpu' || !state.config || !state.usable) return;
  const key = { d: state.config.n_embd, rows: speedRows() };
  const asked = state.cpuSpeedAsked;
  if (asked && asked.d === key.d && asked.rows === key.rows) return;
  state.cpuSpeedAsked = key;
  send({ type: 'cpu-speed', ...key });
}

/// The rows of the step's products that the speed is measured at: the batch's tokens, within what one timing needs
/// (of the settings as the engine settled them: a box being typed into may hold nothing yet).
const speedRows = () => Math.min(512, Math.max(8, state.usable.batch * state.usable.seq));

/// Before Train on the CPU executor: how long a step of these settings will take, from the step's matrix products
/// (the engine's count) and the multiply speed measured here. The reader may go on either way; the chart then shows
/// the real time per step.
function showStepEstimate() {
  const box = $('step-estimate');
  const speed = state.cpuSpeed;
  const acc = state.accounting;
  const s = state.usable;
  // While a box is refused the numbers are its default's: no estimate for settings the reader did not choose.
  box.hidden = !(state.backend === 'cpu' && speed && acc && s && !state.problems.length);
  if (box.hidden) return;
  // Settings that changed the product's shape: time it again (the estimate stays hidden until then).
  if (speed.d !== state.config.n_embd || speed.rows !== speedRows()) {
    box.hidden = true;
    measureCpu();
    return;
  }
  const seconds = acc.step_flops / (speed.gflops * 1e9);
  const time = (x) => (x < 1 ? `${Math.round(x * 1000)} ms` : x < 120 ? `${x.toFixed(1)} s` : `${(x / 60).toFixed(1)} min`);
  box.dataset.seconds = String(seconds);
  box.dataset.flops = String(acc.step_flops);
  box.dataset.gflops = String(speed.gflops);
  box.textContent = `On this processor a step of ${s.batch} × ${s.seq} tokens takes about ${time(seconds)}` +
    ` (${s.steps} steps ≈ ${time(seconds * s.steps)}, plus validation): ${(acc.step_flops / 1e9).toFixed(1)} GFLOP of` +
    ` matrix products at the ${speed.gflops.toFixed(1)} GFLOP/s this tab just measured. An estimate; ms/step below shows the real time.`;
}

/// A kept run of another model than the one shown: it is restored on that model's page.
function offerOtherModel(saved) {
  const name = saved.model;
  if (name === 'files' && state.modelName === 'files') {
    $('restore-text').textContent = `A run on your own model files was saved in this browser ${timeOf(saved.savedAt)}; choose the same files above to restore it.`;
  } else if (name === 'files') {
    $('restore-text').textContent = `A run on your own model files was saved in this browser ${timeOf(saved.savedAt)}; choose "Your own GPT-2 files" and the same files to restore it.`;
  } else {
    $('restore-text').textContent = `A run on ${MODELS[name] ? MODELS[name].label : name} was saved in this browser ${timeOf(saved.savedAt)}; pick that model above to restore it.`;
  }
  $('restore-bar').hidden = false;
  $('restore-run').disabled = true;
}

// ---- the base model: built in, from the Hugging Face hub, or the reader's files ------------------------------------

/// The model control's status: `loading` | `loaded` | `error` (data-value, for tests and styles) and its words.
function modelStatus(value, text) {
  $('model-status').dataset.value = value;
  $('model-status').textContent = text;
}

/// The loaded model in words, with the engine's memory after loading it (its peak so far: wasm memory never shrinks).
function modelLoadedText(info, memory) {
  const ignored = state.modelIgnored && state.modelIgnored.length ? ` (ignored: ${state.modelIgnored.join(', ')})` : '';
  const mem = memory ? `; the engine holds ${fmtBytes(memory)} in this tab` : '';
  // A base loaded in fp32 is stored by each run as its settings choose; one loaded narrower is shared by runs in its format.
  const runs = info.storage === 'fp32' ? ' (each run stores it as its settings choose)' : '';
  return `loaded: ${fmtInt(info.params)} parameters, ${info.n_layer} layers × ${info.n_embd}, a vocabulary of ${fmtInt(info.vocab_size)}, the frozen base kept in ${info.storage}${runs}${mem}${ignored}`;
}

/// What the reader sees of the chosen model before loading it: a hub model's size and licence, the file chooser.
async function showModelBar() {
  const name = state.modelName;
  const model = MODELS[name];
  $('model').value = name;
  $('model-load').hidden = !model.repo;
  $('model-drop').hidden = name !== 'files';
  if (name === 'shakespeare') $('model-about').textContent = '';
  if (name === 'files') {
    $('model-about').textContent = 'Nothing leaves this tab.';
    modelStatus('', 'choose your model\'s files');
  }
  if (name === 'files') $('model-credit').textContent = 'Base model: your own files, read in this tab.';
  if (model.repo) {
    $('model-credit').replaceChildren(`Base model: ${model.repo} from the Hugging Face hub (${model.licence} licence; `,
      el('a', { href: `https://huggingface.co/${model.repo}`, rel: 'noopener' }, 'model card'), ').');
    const bytes = hubDownloadBytes(state.config, gpt2Params(state.config));
    $('model-about').textContent = `${model.repo} · ${model.licence} licence · ${fmtBytes(bytes)} download from huggingface.co, kept in this browser`;
    $('model-about').dataset.bytes = String(bytes);
    modelStatus('', 'not loaded');
    const cached = self.caches ? await cachedFiles(name).catch(() => null) : null;
    if (cached && cached.complete) {
      $('model-about').textContent = `${model.repo} · ${model.licence} licence · kept in this browser (${fmtBytes(cached.bytes)}): loads without downloading`;
      // A second visit loads from the cache at once, except in an embed, which waits for a click.
      if (!state.page.embed) loadHubModel();
    }
  }
  refreshCached();
}

/// A hub model whose base, kept as the settings keep it, would not fit the tab (gpt2-large in fp32): the reason is
/// said at the model's control and Load waits, before a byte is downloaded; settings that fit (a 4-bit base) bring
/// Load back. (The reader's own files are checked the same way as they are read.)
function showLoadProblem(problem) {
  if (!MODELS[state.modelName].repo || state.modelLoaded || $('model-status').dataset.value === 'loading') return;
  if (problem) {
    state.loadRefused = true;
    $('model-load').disabled = true;
    modelStatus('refused', problem);
    setTrainingButtons(state.run ? state.run.status : 'idle');
  } else if (state.loadRefused) {
    state.loadRefused = false;
    $('model-load').disabled = false;
    modelStatus('', 'not loaded');
    setTrainingButtons(state.run ? state.run.status : 'idle');
  }
}

/// The Load button of a hub model: download what is not cached (one bar for all of it), then the engine reads it.
async function loadHubModel() {
  const name = state.modelName;
  if (state.modelLoaded || $('model-load').disabled) return;
  $('model-load').disabled = true;
  clearError();
  const bar = $('model-progress');
  bar.hidden = false;
  bar.value = 0;
  const restarting = state.downloadFailed;
  modelStatus('loading', restarting ? 'the last download stopped part-way: starting it again from the beginning…' : 'loading…');
  // The other files' streams may still report after one has failed: the failure's message stays.
  let settled = false;
  try {
    const got = await download(name, ({ loaded, total }) => {
      if (settled) return;
      bar.max = total || 1;
      bar.value = loaded;
      bar.dataset.loaded = String(loaded);
      bar.dataset.total = String(total);
      const again = restarting ? ' (started again from the beginning)' : '';
      modelStatus('loading', `downloading ${fmtBytes(loaded)}${total ? ` of ${fmtBytes(total)}` : ''}${again}…`);
    });
    settled = true;
    state.downloadFailed = false;
    bar.removeAttribute('value'); // indeterminate while the engine reads and checks the weights
    modelStatus('loading', got.downloaded ? 'downloaded; reading the weights…' : 'reading the weights from this browser\'s cache…');
    send({ type: 'load' });
  } catch (e) {
    settled = true;
    state.downloadFailed = true;
    bar.hidden = true;
    $('model-load').disabled = false;
    modelStatus('error', e.message || String(e));
  }
  refreshCached();
}

/// The reader's own GPT-2 directory: its files go to the engine's worker, and nowhere else.
function sendFiles(files) {
  if (!files.length) return;
  clearError();
  state.modelLoaded = false;
  modelStatus('loading', `reading ${files.length} file${files.length > 1 ? 's' : ''}…`);
  send({ type: 'files', files: [...files] });
}

/// The list of hub models kept in this browser, each with its size and a Delete button.
async function refreshCached() {
  const list = await cachedModels().catch(() => []);
  $('cached-models').hidden = list.length === 0;
  $('cached-list').replaceChildren(...list.map(({ name, bytes, complete }) => {
    const del = el('button', { type: 'button', 'data-testid': 'delete-cached', 'data-name': name }, 'Delete');
    del.addEventListener('click', async () => {
      await deleteCached(name);
      if (name === state.modelName) {
        showModelBar();
        if (state.modelLoaded) modelStatus('loaded', 'deleted from this browser; the loaded copy stays until you leave the page');
      }
      refreshCached();
    });
    return el('li', { 'data-testid': 'cached-model', 'data-name': name, 'data-bytes': String(bytes) },
      `${MODELS[name].label}: ${fmtBytes(bytes)}${complete ? '' : ' (incomplete)'}`, del);
  }));
}

function preferGpu() {
  return state.gpu.available && state.page.backend !== 'cpu';
}

/// The CPU executor's threads and instructions, in plain words.
function cpuInWords(cpu) {
  let threads = `It uses ${cpu.threads} of your processor's cores`;
  if (cpu.threads <= 1) {
    // In an iframe, isolation also needs the page around it (its headers, and allow="cross-origin-isolated").
    const why = cpu.threadsWhy && /isolated/.test(cpu.threadsWhy)
      ? (window.self !== window.top ? 'the page this playground is embedded in is not cross-origin isolated, which more cores need'
        : 'this page\'s host does not send the two headers that allow more')
      : cpu.threadsWhy;
    threads = `It uses one core of your processor${why ? ` (${why})` : ''}`;
  }
  let simd = 'and its fused multiply-add instructions.';
  if (!cpu.relaxed) {
    const why = cpu.relaxedWhy === 'this browser has no relaxed SIMD' ? 'this browser offers no fused ones to web pages' : cpu.relaxedWhy;
    simd = `with separate multiply and add instructions${why ? ` (${why})` : ''}.`;
  }
  return `${threads} ${simd}`;
}

/// The badge, its tooltip and the tagline say what trains: the GPU through WebGPU, or the CPU executor.
function showBackend(backend) {
  const badge = $('backend');
  badge.textContent = backend;
  badge.dataset.value = backend;
  const cpu = state.cpu ? cpuInWords(state.cpu) : '';
  // A software WebGPU adapter runs on the processor too: named as what it is, not as "your GPU".
  const soft = state.gpu && state.gpu.software;
  const gpu = soft ? `${soft} through WebGPU, which runs on your processor` : 'your GPU through WebGPU';
  badge.title = backend === 'webgpu'
    ? `Training runs on ${gpu}. Evaluation and generation run on the processor: ${cpu}`
    : `Training runs on your processor (wasm). ${cpu}`;
  $('tagline-where').textContent = backend === 'webgpu'
    ? (soft ? ` — through WebGPU (${soft}, on your processor)` : ' — on your GPU (WebGPU)')
    : ' — on your processor (no WebGPU here)';
}

// ---- worker events -------------------------------------------------------------------------------------------------

const onMessage = {
  init(m) {
    state.config = m.config;
    lossChart.unit = m.config.vocab_size === 256 ? 'byte' : 'token';
    state.defaults = m.defaults;
    state.page = m.parsed.page;
    state.modelBytes = m.modelBytes;
    state.modelName = m.model;
    state.gpu = m.gpu;
    state.formats = m.formats;
    const forced = state.page.backend === 'cpu';
    const backend = m.gpu.available && !forced ? 'webgpu' : 'cpu';
    state.cpu = m.cpu;
    showBackend(backend);
    $('backend').dataset.threads = String(m.cpu.threads);
    $('backend').dataset.simd = m.cpu.relaxed ? 'relaxed' : 'simd128';
    if (backend === 'cpu') {
      showNotice(forced ? `Training runs on your processor, as the link asks (backend=cpu). ${cpuInWords(m.cpu)}`
        : `Training runs on your processor, not a graphics card: ${m.gpu.reason}. That is slower; small batches keep it responsive. ${cpuInWords(m.cpu)}`);
    }
    $('seq').max = String(m.config.n_positions);
    loadKeptRuns();
    writeControls(m.parsed.settings);
    state.settings = m.parsed.settings;
    if (m.parsed.errors.length) showError(m.parsed.errors.join('\n'));
    applyPageOptions();
    fillHistogramChoices();
    account(state.settings);
    state.savedRun = m.saved;
    if (m.saved && m.saved.model === state.modelName && m.saved.model !== 'files') offerRestore(m.saved);
    else if (m.saved) offerOtherModel(m.saved);
    showModelBar();
    // A link or reload with task=text: the text itself is never in a link, so ask for it at the box.
    if (state.settings.task === 'text') {
      $('user-text-info').textContent = m.saved && m.saved.settings.task === 'text'
        ? 'Your text is not in the link: paste it again, or Restore the saved run, which kept it.'
        : 'Your text is not in the link: paste it again, or drop a .txt file.';
    }
    setTrainingButtons('idle');
    if (m.storage) $('save-status').textContent = `Runs are not kept in this browser: ${m.storage}.`;
    state.backend = backend;
    measureCpu();
    if (state.modelName !== 'shakespeare') $('load-gate').hidden = true;
    else if (!state.page.embed) ensureModel();
    else {
      $('load-gate').hidden = false;
      $('load-size').textContent = state.modelBytes ? `(${fmtBytes(state.modelBytes)} download)` : '';
    }
  },
  account(m) {
    // Settings that were refused are fine again: their message goes, the numbers update.
    if (state.settingsError) { clearError(); state.settingsError = false; }
    showProblems(m.problems || []);
    showLoadProblem(m.loadProblem);
    // A run these settings would make does not fit the tab: said at the memory it is about, and Train waits.
    state.runProblem = m.runProblem;
    $('memory-fit').hidden = !m.runProblem;
    $('memory-fit').textContent = m.runProblem ? `${m.runProblem[0].toUpperCase()}${m.runProblem.slice(1)}.` : '';
    setTrainingButtons(state.run ? state.run.status : 'idle');
    state.accounting = m.accounting;
    state.query = m.query;
    // The numbers are those of the settings as the engine settled them: a refused box counts as its default, and the
    // count says so.
    state.usable = m.settings;
    const refused = [...new Set((m.problems || []).map((p) => controlName(p.field)))];
    renderParams(m.accounting, m.settings, state.config, refused);
    const current = state.run && !state.dirty ? state.run : null;
    // Before a run, where one would train: the processor says so from the start on a machine without WebGPU.
    renderMemory(m.accounting, current && current.measured, current ? current.backend : state.backend);
    renderScale(m.accounting);
    // The histogram marks the base as the settings keep it: redrawn when that changes.
    if (state.histogram && storageLabel(m.settings) !== state.histFormat) drawHist();
    $('snippet').textContent = m.snippet;
    showStepEstimate();
    history.replaceState(null, '', `${location.pathname}?${m.query}${pageQuery()}`);
    document.body.dataset.accountShown = String(m.seq);
    if (state.trainWhenAnswered && m.seq === accountsSent) {
      state.trainWhenAnswered = false;
      startTraining();
    }
  },
  // The loaded model brought its own configuration (a hub model's as downloaded, or the reader's files): every view
  // is recomputed for it.
  model(m) {
    state.config = m.config;
    lossChart.unit = m.config.vocab_size === 256 ? 'byte' : 'token';
    requestDraw();
    state.formats = m.formats;
    $('seq').max = String(m.config.n_positions);
    fillHistogramChoices();
    account(state.settings);
    state.modelIgnored = m.ignored || [];
    measureCpu();
  },
  'cpu-speed'(m) {
    state.cpuSpeed = m;
    showStepEstimate();
  },
  progress(m) {
    $('load-bar').max = m.total || 1;
    $('load-bar').value = m.loaded;
    $('load-text').textContent = m.total ? `loading the model… ${fmtBytes(m.loaded)} of ${fmtBytes(m.total)}` : `loading the model… ${fmtBytes(m.loaded)}`;
  },
  loaded(m) {
    state.modelLoaded = true;
    state.loadedStorage = m.info.storage;
    $('model-load').hidden = true;
    modelStatus('loaded', modelLoadedText(m.info, m.memoryBytes));
    $('model-status').dataset.memory = String(m.memoryBytes ?? '');
    $('model-progress').hidden = true;
    setTrainingButtons(state.run ? state.run.status : 'idle');
    refreshCached();
    $('load-progress').hidden = true;
    $('load-gate').hidden = true;
    document.body.dataset.model = 'loaded';
    // The reader's own files are loaded: a run kept on such files can be restored now (the engine refuses it, with a
    // message, if these are not the files it trained on).
    if (state.savedRun && state.savedRun.model === 'files' && state.modelName === 'files' && !state.run) offerRestore(state.savedRun);
    void m;
    requestHistogram();
  },
  text(m) {
    $('user-text-info').textContent = `${fmtInt(m.bytes)} bytes ready (never leaves this tab)`;
    $('user-text-info').dataset.bytes = String(m.bytes);
    setTrainingButtons(state.run ? state.run.status : 'idle');
  },
  started(m) {
    const r = state.run;
    if (!r) return;
    r.status = 'running';
    r.backend = m.backend;
    r.trainable = m.trainable;
    r.measured = m.measured;
    r.baseline = m.baseline;
    showBackend(m.backend);
    showNotice(m.notice || '');
    renderMemory(state.accounting, m.measured, m.backend);
    // The engine's whole wasm memory with the run made (loaded base, run, engine): its peak so far.
    $('memory-measured').dataset.engine = String(m.memoryBytes ?? '');
    setTrainingButtons('running');
  },
  fallback(m) {
    // The device was lost: the run went back to its last snapshot (step m.step) and continues on the CPU.
    showNotice(m.notice);
    showBackend(m.backend);
    if (state.run) {
      truncateRun(state.run, m.step);
      state.run.backend = m.backend;
      state.run.measured = m.measured;
    }
    if (state.accounting) renderMemory(state.accounting, m.measured, m.backend);
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
    if (latest) r.answers = m.answers;
    if (m.val_loss_adapter_rounded != null) {
      const note = $('rounded-note');
      note.hidden = false;
      const rounded = r.settings.adapter_storage;
      const what = rounded === 'bf16'
        ? 'The QLoRA paper\'s adapters, measured: with A and B rounded to bf16'
        : `The claim that QLoRA quantizes the adapters, measured: with A and B rounded to ${rounded}`;
      note.textContent = `${what}, the validation loss is ${m.val_loss_adapter_rounded.toFixed(4)} ` +
        `(vs ${m.val_loss.toFixed(4)} with the fp32 adapters this run trained; the paper keeps them in bf16, PEFT in fp32, and neither quantizes them).`;
    }
    requestDraw();
  },
  done(m) {
    if (!state.run) return;
    state.run.status = 'done';
    setTrainingButtons('done');
    state.spectraPlot = drawSpectra($('spectra-chart'), m.spectra, state.spectraPlot);
    // The final numbers are on screen, and the run in the table, before the page says it is done.
    draw();
    const record = recordRun(state.run);
    draw();
    document.body.dataset.run = 'done';
    if (state.experiment) {
      state.experiment.records.push(record);
      if (state.experiment.queue.length) setTimeout(nextExperimentRun, 0);
      else endExperiment();
    }
  },
  paused() {
    if (state.run) state.run.status = 'paused';
    // Draw now, not on the next frame: once the button says Resume, the step shown is the one training stopped at.
    draw();
    setTrainingButtons('paused');
  },
  resumed() {
    if (state.run) state.run.status = 'running';
    // "Restored …: press Resume" has been done; a notice about the run itself (a lost device) stays.
    if (state.restoreNotice && $('notice').textContent === state.restoreNotice.text) showNotice(state.restoreNotice.run);
    state.restoreNotice = null;
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
    state.savedRun = null;
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
      backend: m.backend, trainable: m.trainable, measured: m.measured, baseline: m.baseline };
    for (const s of m.history.steps) onMessage.step(s);
    for (const v of m.history.vals) onMessage.val(v);
    showBackend(m.backend);
    const from = m.source === 'file' ? 'from the file' : `saved in this browser ${timeOf(m.savedAt)}`;
    const restored = `Restored the run ${from}: step ${m.step} of ${m.settings.steps}.${m.finished ? '' : ' Press Resume to continue it.'}`;
    state.restoreNotice = { text: restored + (m.notice ? ` ${m.notice}` : ''), run: m.notice || '' };
    showNotice(state.restoreNotice.text);
    setTrainingButtons(status);
    account(m.settings);
    if (m.spectra) state.spectraPlot = drawSpectra($('spectra-chart'), m.spectra, state.spectraPlot);
    // The kept table already holds a finished run restored from this browser; an imported one joins it.
    if (m.finished && !state.runs.some((k) => JSON.stringify(k.curve.loss) === JSON.stringify(state.run.loss))) recordRun(state.run);
    else if (m.finished) state.run.record = state.runs.find((k) => JSON.stringify(k.curve.loss) === JSON.stringify(state.run.loss));
    draw();
    document.body.dataset.restored = String(m.step);
  },
  saved(m) {
    $('save-status').textContent = `Saved in this browser at step ${m.step}.`;
    document.body.dataset.saved = String(m.step);
  },
  discarded() {
    $('restore-bar').hidden = true;
    state.savedRun = null;
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
    // Before a run, the base as loaded (read straight into the page's format then); with one, the run's base.
    const loaded = state.loadedStorage ? `Base (${state.loadedStorage}, as loaded)` : 'Base';
    $('base-caption').textContent = state.run && state.run.settings.method !== 'full'
      ? `Base (${storageLabel(state.run.settings)}, no adapter)` : loaded;
  },
  histogram(m) {
    state.histogram = m.histogram;
    drawHist();
  },
  // The engine trapped: one message with a Reload, the run on screen stays as it was, and nothing can be pressed
  // that would need the engine.
  stopped(m) {
    state.engineStopped = true;
    $('engine-stopped-text').textContent = m.message;
    $('engine-stopped').hidden = false;
    if (state.run && state.run.status !== 'done') state.run.status = 'paused';
    if (state.experiment) endExperiment('the engine stopped');
    generationEnded();
    setTrainingButtons('idle');
    $('generate').disabled = true;
    $('restore-run').disabled = true;
    // Stopped while a model loaded (out of memory, most likely): the model control says so too.
    if (!state.modelLoaded) {
      $('load-progress').hidden = true;
      $('model-progress').hidden = true;
      modelStatus('error', 'the engine stopped while loading the model: see the message above');
    }
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
    if ((m.during === 'start' || m.during === 'training') && state.experiment) endExperiment('a run failed: see the message above');
    if (m.during === 'generate') generationEnded();
    if (m.during === 'restore') $('restore-bar').hidden = true;
    if (m.during === 'text') {
      state.userTextSent = false;
      $('user-text-info').textContent = m.message;
      delete $('user-text-info').dataset.bytes;
      setTrainingButtons(state.run ? state.run.status : 'idle');
      return;
    }
    // The previous counts stay on screen while the settings are invalid.
    if (m.during === 'account') {
      state.settingsError = true;
      // The answer came, as this error: a Train waiting for it does not start, and the next press is not held back.
      state.trainWhenAnswered = false;
      document.body.dataset.accountShown = document.body.dataset.accountSent;
    }
    if (m.during === 'load' || m.during === 'init') $('load-progress').hidden = true;
    // A model that failed to load is named at the model's control; the rest of the page stays as it was.
    if ((m.during === 'load' || m.during === 'files') && state.modelName !== 'shakespeare') {
      modelStatus('error', m.message);
      $('model-progress').hidden = true;
      $('model-load').disabled = false;
      return;
    }
    showError(m.message);
  },
};

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
  const model = state.modelName !== 'shakespeare' ? `&model=${state.modelName}` : '';
  return `${model}${embed ? '&embed=1' : ''}${p.hide.length ? `&hide=${p.hide.join(',')}` : ''}${p.backend ? `&backend=${p.backend}` : ''}`;
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
  const s = state.usable || state.settings;
  const f = s ? (s.method === 'full' ? 'fp32' : s.format) : 'nf4';
  state.histFormat = s ? storageLabel(s) : 'nf4';
  state.histPlot = drawHistogram($('hist-chart'), state.histogram, f, state.histPlot);
  renderQuantErrors(state.histogram, state.histFormat);
}

// ---- wiring -----------------------------------------------------------------------------------------------------------

for (const node of $('controls').querySelectorAll('input, select')) {
  if (['user-text', 'user-file', 'import-run'].includes(node.id)) continue;
  node.addEventListener('input', onSettingsChanged);
  node.addEventListener('change', onSettingsChanged);
}
$('controls').addEventListener('submit', (e) => e.preventDefault());
$('train').addEventListener('click', startTraining);
$('pause').addEventListener('click', () => {
  if (!state.run) return;
  if (state.run.status === 'paused') send({ type: 'resume' });
  else send({ type: 'pause' });
});
$('reset').addEventListener('click', () => { archiveRun(); send({ type: 'reset' }); });
$('load-model').addEventListener('click', ensureModel);
$('model-load').addEventListener('click', loadHubModel);
// Another model is another page: the link names it, the settings carry over (the engine fits them to the model).
$('model').addEventListener('change', (e) => {
  state.modelName = e.target.value;
  location.assign(`${location.pathname}?${state.query}${pageQuery()}`);
});
$('model-files').addEventListener('change', (e) => { sendFiles(e.target.files); e.target.value = ''; });
for (const [event, over] of [['dragenter', true], ['dragover', true], ['dragleave', false], ['drop', false]]) {
  $('model-drop').addEventListener(event, (e) => {
    e.preventDefault();
    $('model-drop').classList.toggle('over', over);
    if (event === 'drop') sendFiles(e.dataTransfer.files);
  });
}
$('restore-run').addEventListener('click', () => {
  clearError();
  ensureModel();
  $('restore-run').disabled = true;
  send({ type: 'restore', preferGpu: preferGpu() });
});
$('discard-run').addEventListener('click', () => send({ type: 'discard' }));
$('reload-page').addEventListener('click', () => location.reload());
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
/// The generation boxes as numbers within their own min and max, or null after naming the first bad one below them
/// (the engine checks the same bounds; this keeps its message at the box instead of the page's error bar).
function readGeneration() {
  for (const old of document.querySelectorAll('.gen-error')) old.remove();
  for (const node of document.querySelectorAll('.gen-controls [data-invalid]')) delete node.dataset.invalid;
  const out = {};
  for (const [id, name] of [['gen-tokens', 'tokens'], ['temperature', 'temperature'], ['top-k', 'top-k']]) {
    const box = $(id);
    const raw = box.value.trim();
    const v = Number(raw);
    const [lo, hi, whole] = [Number(box.min), Number(box.max), box.step === '1'];
    if (raw === '' || !Number.isFinite(v) || v < lo || v > hi || (whole && !Number.isInteger(v))) {
      box.closest('label').dataset.invalid = 'true';
      $('gen-controls').after(el('p', { className: 'field-error gen-error', role: 'alert', 'data-testid': 'field-error', 'data-for': id,
        textContent: `${name} must be ${whole ? 'a whole number' : 'a number'} between ${lo} and ${hi} (${raw === '' ? 'the box is empty' : `got ${raw}`})` }));
      return null;
    }
    out[id] = v;
  }
  return out;
}

$('generate').addEventListener('click', () => {
  clearError();
  const asked = readGeneration();
  if (!asked) return;
  ensureModel();
  $('generate').disabled = true;
  $('stop-generate').hidden = false;
  $('gen-progress').textContent = '';
  $('gen-progress').dataset.done = '0';
  send({
    type: 'generate',
    prompt: $('prompt').value,
    tokens: asked['gen-tokens'],
    temperature: asked.temperature,
    topK: asked['top-k'],
    seed: state.usable ? state.usable.seed : 0,
  });
});
$('hist-weight').addEventListener('change', requestHistogram);
for (const b of document.querySelectorAll('[data-experiment]')) b.addEventListener('click', () => startExperiment(b.dataset.experiment));
$('experiment-stop').addEventListener('click', () => {
  if (!state.experiment) return;
  endExperiment('stopped by you');
  if (state.run && state.run.status === 'running') send({ type: 'pause' });
});
$('clear-runs').addEventListener('click', () => {
  state.runs = [];
  if (state.run) delete state.run.record;
  showRuns();
  requestDraw();
});
$('copy-link').addEventListener('click', (e) => copy(shareUrl(false), e.currentTarget));
$('copy-iframe').addEventListener('click', (e) => copy(
  `<iframe src="${shareUrl(true)}" width="100%" height="720" style="border:0" loading="lazy" allow="cross-origin-isolated" title="qlora-playground"></iframe>`, e.currentTarget));
$('copy-snippet').addEventListener('click', (e) => copy($('snippet').textContent, e.currentTarget));

// User text: pasted, chosen or dropped. The bytes go to the worker, which checks them (UTF-8, size) in Rust.
function sendUserText(bytes) {
  clearError();
  // The worker handles requests in order, so a Train after this uses this text (or reports why it could not).
  state.userTextSent = true;
  send({ type: 'text', bytes }, [bytes]);
}
// Counted as it is typed or pasted (a short pause first, so typing does not queue a message per key).
let textTimer = null;
$('user-text').addEventListener('input', (e) => {
  clearTimeout(textTimer);
  textTimer = setTimeout(() => {
    sendUserText(new TextEncoder().encode(e.target.value).buffer);
    followTask('text');
  }, 250);
});
$('user-file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (f) showDroppedText(await f.arrayBuffer());
});
/// A chosen or dropped file: shown in the box (the prompt follows it) and sent.
function showDroppedText(bytes) {
  $('user-text').value = new TextDecoder().decode(bytes.slice(0, 1 << 20));
  followTask('text');
  sendUserText(bytes);
}
$('user-text').addEventListener('dragover', (e) => e.preventDefault());
$('user-text').addEventListener('drop', async (e) => {
  e.preventDefault();
  const f = e.dataTransfer.files[0];
  if (f) showDroppedText(await f.arrayBuffer());
});
window.addEventListener('resize', () => {
  requestDraw();
  for (const [plot, id] of [[state.spectraPlot, 'spectra-chart'], [state.histPlot, 'hist-chart']]) {
    if (plot) plot.setSize({ width: Math.max(200, $(id).clientWidth), height: 200 });
  }
});

engine = startEngineWorker({ type: 'init', query: location.search }, {
  onMessage: (m) => onMessage[m.type]?.(m),
  onError: (ev) => showError(`The engine stopped: ${ev.message || 'the worker failed to start'}`),
  // The worker, for the page tests (they force a divergence through it) and for curious readers' consoles.
  onWorker: (worker) => { window.__qlora = { worker }; },
});
requestDraw();
