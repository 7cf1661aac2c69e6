// The Runs table: each run with at least one step, kept in this browser (localStorage) so a reload shows it again.

import { state } from './page.js';
import { requestDraw, runLabel } from './run-view.js';
import { renderRuns } from './views.js';

const RUNS_KEY = 'qlora-playground-runs';

const MAX_KEPT_RUNS = 24;

/// Puts a run with at least one step into the Runs table and on the chart (once; a finished run at once), and keeps
/// the table in this browser so that a reload shows it again.
export function recordRun(r) {
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

export function showRuns() {
  renderRuns(state.runs, runLabel);
  try {
    localStorage.setItem(RUNS_KEY, JSON.stringify(state.runs));
  } catch {
    // Storage refused (private mode, quota): the table still shows this tab's runs.
  }
}

export function loadKeptRuns() {
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
export function archiveRun() {
  recordRun(state.run);
  state.run = null;
}
