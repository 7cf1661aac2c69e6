// A run kept in this browser (IndexedDB, by the worker): offered for restoring, on its own model's page.

import { MODELS } from './models.js';
import { $, state } from './page.js';
import { runLabel } from './run-view.js';

export function timeOf(ms) {
  return ms ? `at ${new Date(ms).toLocaleString()}` : '';
}

/// Where a running run had got to when the page went away. The worker's save as the page hides may not finish
/// before a reload ends it, so the page notes the step itself (localStorage is synchronous), and the next visit can
/// say how many steps the restored run lacks. The note names its run (the worker's run id, kept in the saved record
/// too), so steps are counted as lost only against that run's save, never against an older run's.
const LEFT_KEY = 'qlora-playground:left-at';

/// Called as the page hides for good (pagehide). The step is the last one whose result arrived (the step counter
/// on screen is drawn once a frame, and not at all in a background tab).
export function noteWhereLeft() {
  try {
    const r = state.run;
    const step = r && r.status === 'running' ? (r.steps.at(-1) ?? 0) : 0;
    if (step > 0) localStorage.setItem(LEFT_KEY, JSON.stringify({ model: state.modelName, runId: r.id ?? null, step }));
    else localStorage.removeItem(LEFT_KEY);
  } catch {
    // Storage refused: the restore bar then says only what was saved.
  }
}

/// The page came back from the back/forward cache: it is the same visit, so the note of leaving it goes.
export function forgetWhereLeft() {
  try {
    localStorage.removeItem(LEFT_KEY);
  } catch {
    // Storage refused: nothing was noted.
  }
}

/// The note of the last visit, read once (null when its run was not running, or was on another model).
export function takeWhereLeft() {
  try {
    const left = JSON.parse(localStorage.getItem(LEFT_KEY) || 'null');
    localStorage.removeItem(LEFT_KEY);
    return left && left.model === state.modelName && Number.isInteger(left.step) ? left : null;
  } catch {
    return null;
  }
}

/// Whether the last visit's note (`takeWhereLeft`) is about this saved run. A note from before notes named their run
/// (no runId) is taken to be about the run saved on its model, as it was then.
export function leftThisRun(left, saved) {
  if (!left || !saved || left.model !== saved.model) return false;
  return left.runId ? left.runId === saved.runId : true;
}

/// A run this browser kept: say what it is, and let the reader restore or discard it. `left`: where the last visit
/// left a run; its steps past the last save are said to be lost only when the note is about this run.
export function offerRestore(saved, left = null) {
  const s = saved.settings;
  const lost = leftThisRun(left, saved) && left.step > saved.step ? left.step - saved.step : 0;
  $('restore-text').textContent = `A run saved in this browser ${timeOf(saved.savedAt)} can be restored: ${runLabel(s)}, ` +
    `step ${saved.step} of ${s.steps}.` +
    (lost ? ` You left it at step ${left.step}: the ${lost} step${lost > 1 ? 's' : ''} after its last save are not kept.` : '');
  $('restore-bar').hidden = false;
  $('restore-run').disabled = false;
}

/// A kept run of another model than the one shown: it is restored on that model's page.
export function offerOtherModel(saved) {
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
