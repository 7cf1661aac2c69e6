// One-click experiments: a prepared series of runs derived from the current settings, run one after another, then
// summed up in one sentence from their final numbers.

import { account, answered, dqApplies, trainBlocked, writeControls } from './controls.js';
import { $, state } from './page.js';
import { runLabel } from './run-view.js';
import { startTraining } from './training.js';
import { fmtInt } from './views.js';

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

export function startExperiment(kind) {
  // Pressed before the numbers answered the last change: the answer decides (a refused box blocks the series).
  if (!answered()) {
    state.experimentWhenAnswered = kind;
    return;
  }
  if (state.experiment || trainBlocked()) return;
  const e = EXPERIMENTS[kind];
  state.experiment = { kind, title: e.title, queue: e.variants(state.settings), records: [], before: state.settings };
  $('experiment-stop').hidden = false;
  for (const b of document.querySelectorAll('[data-experiment]')) b.disabled = true;
  const summary = $('experiment-summary');
  summary.hidden = false;
  summary.textContent = `${e.title}: running ${state.experiment.queue.length} runs…`;
  delete summary.dataset.done;
  nextExperimentRun();
}

export function nextExperimentRun() {
  const x = state.experiment;
  const s = x.queue.shift();
  writeControls(s);
  state.settings = s;
  account(s);
  $('experiment-summary').textContent = `${x.title}: run ${x.records.length + 1} of ${x.records.length + x.queue.length + 1} (${runLabel(s)})…`;
  startTraining();
}

export function endExperiment(why) {
  const x = state.experiment;
  state.experiment = null;
  $('experiment-stop').hidden = true;
  for (const b of document.querySelectorAll('[data-experiment]')) b.disabled = false;
  const summary = $('experiment-summary');
  summary.textContent = `${why ? `${x.title}: stopped after ${x.records.length} runs (${why}).` : summarize(x)} Your ` +
    'settings are back as they were; the runs stay in the table and on the chart.';
  summary.dataset.done = why ? 'stopped' : 'done';
  // A series is a side trip: the controls come back to the reader's own settings.
  writeControls(x.before);
  state.settings = x.before;
  account(x.before);
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
  // One run per setting, one seed: a gap of a few percent after a short run is within what another seed moves.
  const caveat = gap < 10 ? ' One run each, with one seed: a gap this small can change with the seed or with more steps.' : '';
  return `${x.title}, ${best.steps} steps each — ${what}: ${each}. ${verdict[0].toUpperCase()}${verdict.slice(1)}.${caveat}` +
    scalingNote(rs);
}

/// A series of ranks at one α also changes the update's scale α/r, so part of a gap between its runs may be the
/// scale rather than the rank: said, with how to compare ranks alone.
function scalingNote(rs) {
  const alphas = new Set(rs.map((r) => r.settings.alpha));
  const ranks = new Set(rs.map((r) => r.settings.r));
  if (alphas.size !== 1 || ranks.size < 2 || rs.some((r) => r.settings.method === 'full')) return '';
  const alpha = rs[0].settings.alpha;
  const scales = rs.map((r) => String(Number((alpha / r.settings.r).toPrecision(3)))).join(' → ');
  return ` α stayed ${Number(alpha.toPrecision(7))}, so the adapters' scale α/r went ${scales}: part of the gap may be the` +
    ' scale, not the rank (to compare ranks alone, keep α/r fixed, e.g. α = 2r).';
}
