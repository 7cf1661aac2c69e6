// What every part of the page (UI thread) shares: the element lookup, the page's state, the line to the engine's
// worker, and the two places messages appear (the error bar and the notice).

export const $ = (id) => document.getElementById(id);

export const TARGETS = ['q', 'k', 'v', 'o', 'fc', 'proj'];

export const state = {
  config: null,
  defaults: null,
  page: { embed: false, hide: [] },
  settings: null,
  query: 'v=1',
  accounting: null,
  modelLoaded: false,
  /// The loaded model's own configuration has replaced the built-in model's (a hub model's, or the reader's files).
  ownConfig: false,
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
  // The run this browser kept ({savedAt, runId, step, settings, model}) until it is restored, discarded or replaced: a run on
  // the reader's own files can be restored only once the same files are loaded again.
  savedRun: null,
  // Where the last visit left a running run ({model, runId, step}, saved-runs.js), read once as the page starts.
  leftAt: null,
  // Account requests sent so far (numbered: each answer echoes its number).
  accountsSent: 0,
  // What the link the page opened with got wrong, each {message, param}: shown in the error bar until the reader
  // changes the control a message is about (controls.js: forgetLinkErrors).
  linkErrors: [],
};

// The engine's worker (replaced once if its threaded engine never finishes starting: engine-worker.js), set by
// main.js once every handler is in place.
let engine = null;
/// Called once, by main.js.
export function setEngine(e) {
  engine = e;
}
export const send = (msg, transfer) => engine.post(msg, transfer);

export function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

export function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

/// The message beside Export and Import goes once the reader tries again.
export function clearFileError() {
  $('file-error').hidden = true;
  $('file-error').textContent = '';
}

export function showNotice(message) {
  const n = $('notice');
  n.textContent = message;
  n.hidden = !message;
}

/// Adds a sentence to the notice bar, after what it already says (why this processor, say) instead of over it.
export function addNotice(message) {
  const n = $('notice');
  showNotice(n.hidden || !n.textContent ? message : `${n.textContent} ${message}`);
}
