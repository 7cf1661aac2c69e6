// A run kept in this browser (IndexedDB, by the worker): offered for restoring, on its own model's page.

import { MODELS } from './models.js';
import { $, state } from './page.js';
import { runLabel } from './run-view.js';

export function timeOf(ms) {
  return ms ? `at ${new Date(ms).toLocaleString()}` : '';
}

/// A run this browser kept: say what it is, and let the reader restore or discard it.
export function offerRestore(saved) {
  const s = saved.settings;
  $('restore-text').textContent = `A run saved in this browser ${timeOf(saved.savedAt)} can be restored: ${runLabel(s)}, ` +
    `step ${saved.step} of ${s.steps}.`;
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
