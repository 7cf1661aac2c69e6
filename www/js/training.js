// Train, Pause/Resume, Reset: starting a run (once the settings are answered and nothing blocks it) and the buttons'
// states.

import { answered, trainBlocked } from './controls.js';
import { endExperiment } from './experiments.js';
import { $, clearError, send, state } from './page.js';
import { chooseBackend } from './processor.js';
import { requestDraw, resetStats } from './run-view.js';
import { archiveRun } from './runs.js';

export function setTrainingButtons(status) {
  const blocked = trainBlocked();
  const busy = status === 'running' || status === 'starting';
  $('train').disabled = busy || Boolean(blocked);
  $('train-why').textContent = busy ? '' : blocked;
  $('train-why').hidden = busy || !blocked;
  // Asked to pause, the run goes on to the end of its step (a validation can take seconds): the button says it heard.
  const pausing = status === 'running' && state.run && state.run.pausing;
  $('pause').disabled = pausing || !(status === 'running' || status === 'paused');
  $('pause').textContent = status === 'paused' ? 'Resume' : pausing ? 'Pausing…' : 'Pause';
  $('train').textContent = state.run && state.run.status === 'paused' && !state.dirty ? 'Train (new run)' : 'Train';
  $('export-run').disabled = !state.run || status === 'starting' || status === 'idle';
}

export function ensureModel() {
  if (state.modelLoaded) return;
  // A hub model downloads only on its Load button; the reader's files load when chosen.
  if (state.modelName !== 'shakespeare') return;
  $('load-gate').hidden = true;
  $('load-progress').hidden = false;
  send({ type: 'load' });
}

export function startTraining() {
  clearError();
  const s = state.settings;
  // Train pressed before the numbers answered the last change (a box just typed into): the answer decides, and a
  // refused box is said at the box; nothing of the current run is touched meanwhile.
  if (!answered()) {
    state.trainWhenAnswered = true;
    return;
  }
  const blocked = trainBlocked();
  if (blocked) {
    setTrainingButtons('idle');
    // A series cannot go on without this run.
    if (state.experiment) endExperiment(blocked.replace(/^Train waits for /, 'waiting for ').replace(/\.$/, ''));
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

export function preferGpu() {
  return chooseBackend(state.gpu, state.page.backend) === 'webgpu';
}
