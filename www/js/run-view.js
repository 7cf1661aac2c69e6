// The current run on screen: its numbers (step, loss, accuracy, speed) and the loss chart with earlier runs
// overlaid, drawn on animation frames; and the adapters' singular values once it is done.

import { drawSpectra as plotSpectra, LossChart, spectraKey } from './charts.js';
import { $, state } from './page.js';
import { storageLabel } from './protocol.js';
import { el, fmtInt, ownRanks } from './views.js';

export const lossChart = new LossChart($('loss-chart'));

let frameRequested = false;

export function requestDraw() {
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(draw);
  }
}

export function draw() {
  frameRequested = false;
  const r = state.run;
  if (!r) {
    // No run (reset, or a start the engine refused): nothing speaks for one.
    $('run-line').hidden = true;
    $('run-status').hidden = true;
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
  // The same line under Train, where the bar stays in view (a wide screen, an embed) and the chart may not be.
  $('run-line').textContent = status.textContent;
  $('run-line').hidden = false;
  const row = r.record ? state.runs.indexOf(r.record) : -1;
  lossChart.draw({ ...r, label: runLabel(r.settings), index: row >= 0 ? row : null }, previousCurves());
  $('loss-chart').dataset.points = String(lossChart.points());
}

/// Earlier runs on the chart, each labelled and coloured as in the Runs table (the current run is drawn as itself).
function previousCurves() {
  return state.runs.map((r, i) => ({ label: `#${i + 1} ${runLabel(r.settings)}`, steps: r.curve.steps, loss: r.curve.loss, index: i }))
    .filter((c) => !(state.run && state.run.record === state.runs[c.index]));
}

export function runLabel(s) {
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
export function truncateRun(r, step) {
  const keep = r.steps.findIndex((s) => s > step);
  if (keep >= 0) {
    for (const k of ['steps', 'loss', 'ms']) r[k].length = keep;
    r.last = keep > 0 ? { ...r.last, loss: r.loss[keep - 1] } : null;
  }
  requestDraw();
}

export function resetStats() {
  for (const id of ['loss', 'val-loss', 'accuracy', 'lr-now', 'grad-norm', 'tok-s', 'ms-step']) {
    $(id).textContent = '–';
    delete $(id).dataset.value;
  }
  delete $('val-loss').dataset.initial;
  $('step').textContent = '0';
  $('step').dataset.value = '0';
  $('train-progress').value = 0;
  $('rounded-note').hidden = true;
  // What the last run said about itself goes with it: the phone's status bar and the tuned model's answers.
  $('run-status').hidden = true;
  $('run-status').textContent = '';
  $('run-line').hidden = true;
  $('run-line').textContent = '';
  $('answers').hidden = true;
  $('accuracy-baseline').textContent = '';
}

/// The adapters' singular values, with a key naming each colour's matrix.
export function drawSpectra(box, spectra, old) {
  const plot = plotSpectra(box, spectra, old);
  const key = spectraKey(spectra);
  $('spectra-key').replaceChildren(...key.targets.map(({ target, color }) =>
    el('li', {}, el('span', { className: 'swatch', style: `background:${color}` }), target)));
  if (key.targets.length) $('spectra-key').append(el('li', { className: 'muted' }, `one line per layer (${key.layers})`));
  return plot;
}
