// Train, Pause/Resume, Reset: starting a run (once the settings are answered and nothing blocks it) and the buttons'
// states.

import { answered, trainBlocked } from './controls.js';
import { endExperiment } from './experiments.js';
import { $, clearError, send, state, TARGETS } from './page.js';
import { chooseBackend } from './processor.js';
import { storageLabel } from './protocol.js';
import { requestDraw, resetStats } from './run-view.js';
import { archiveRun } from './runs.js';
import { ownRanks } from './views.js';

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
  // The numbers follow the controls as they are moved, but a run keeps the settings it started with: while the two
  // differ, the run bar says which the run has, and that Train is what takes the new ones.
  const differs = Boolean(state.run) && status !== 'starting' && status !== 'idle'
    && !sameSettings(state.run.settings, state.settings);
  const next = status === 'running' ? 'a new run takes them (Pause, then Train)'
    : status === 'paused' ? 'Train starts a new run with them; Resume goes on with the old ones'
      : 'Train starts a new run with them';
  $('run-differs').hidden = !differs;
  $('run-differs').textContent = differs
    ? `The ${status === 'running' ? 'run in progress keeps' : 'run shown has'} the settings it started with ` +
      `(${inWords(state.run.settings)}); the trainable count and the memory are for the settings on screen: ${next}.`
    : '';
}

/// Whether two settings are the same run's, compared on the fields both have (the controls' fields; the engine's
/// copy of a restored run also has the recipe's). A number the engine kept as f32 (lr 0.001 comes back as
/// 0.0010000000475) equals the control's; per-matrix ranks compare as the run takes them (`canonicalRanks`).
export function sameSettings(a, b) {
  if (!a || !b) return !a && !b;
  const same = (x, y) => (typeof x === 'number' && typeof y === 'number'
    ? Math.abs(x - y) <= 1e-6 * Math.max(Math.abs(x), Math.abs(y))
    : JSON.stringify(x) === JSON.stringify(y));
  return Object.keys(b).filter((k) => k in a)
    .every((k) => (k === 'ranks' ? canonicalRanks(a) === canonicalRanks(b) : same(a[k], b[k])));
}

/// The per-matrix ranks that change the run: those of chosen matrices that differ from r, in the controls' order. A
/// link's `ranks=v:4,q:2`, or one that repeats r (`q:8` at r = 8), is the run the controls write as `q:2,v:4`.
function canonicalRanks(s) {
  const own = ownRanks(String(s.ranks ?? ''));
  const isR = (v) => v !== '' && Number(v) === Number(s.r);
  return TARGETS.filter((t) => (s.targets ?? []).includes(t) && own.has(t) && !isR(own.get(t)))
    .map((t) => `${t}:${own.get(t)}`).join(',');
}

/// A run's settings in a few words: "QLoRA r = 4, base nf4+dq, 60 steps".
function inWords(s) {
  if (s.method === 'full') return 'full fine-tuning';
  const rank = s.ranks ? `${s.r}, per matrix ${s.ranks}` : s.r;
  return `${s.method === 'qlora' ? 'QLoRA' : 'LoRA'} r = ${rank}, base ${storageLabel(s)}, ${s.steps} steps`;
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
