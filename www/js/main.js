// The page (UI thread): wires the controls to the modules that read them, starts the engine's worker, and draws what
// it reports (events.js). It computes nothing itself: every number comes from the engine.

import { followTask, onSettingsChanged } from './controls.js';
import { startEngineWorker } from './engine-worker.js';
import { onMessage } from './events.js';
import { endExperiment, startExperiment } from './experiments.js';
import { startGeneration } from './generation.js';
import { requestHistogram } from './histogram-view.js';
import { loadHubModel, sendFiles } from './model-bar.js';
import { $, clearError, clearFileError, send, setEngine, showError, state } from './page.js';
import { lossChart, requestDraw } from './run-view.js';
import { archiveRun, showRuns } from './runs.js';
import { forgetWhereLeft, noteWhereLeft } from './saved-runs.js';
import { copy, pageQuery, shareUrl } from './share.js';
import { ensureModel, preferGpu, setTrainingButtons, startTraining } from './training.js';
import { sendUserText, showDroppedText } from './user-text.js';

// ---- settings: every control change is answered by the engine (controls.js) -----------------------------------------
for (const node of $('controls').querySelectorAll('input, select')) {
  if (['user-text', 'user-file', 'import-run'].includes(node.id)) continue;
  node.addEventListener('input', onSettingsChanged);
  node.addEventListener('change', onSettingsChanged);
}
$('controls').addEventListener('submit', (e) => e.preventDefault());

// ---- training -------------------------------------------------------------------------------------------------------
$('train').addEventListener('click', startTraining);
$('pause').addEventListener('click', () => {
  if (!state.run) return;
  if (state.run.status === 'paused') send({ type: 'resume' });
  else {
    state.run.pausing = true;
    setTrainingButtons(state.run.status);
    send({ type: 'pause' });
  }
});
$('reset').addEventListener('click', () => {
  // A series cannot go on without the run it is waiting for.
  if (state.experiment) endExperiment('reset by you');
  archiveRun();
  send({ type: 'reset' });
});

// ---- the base model (model-bar.js) ----------------------------------------------------------------------------------
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

// ---- runs kept in this browser or in a file -------------------------------------------------------------------------
$('restore-run').addEventListener('click', () => {
  clearError();
  ensureModel();
  $('restore-run').disabled = true;
  send({ type: 'restore', preferGpu: preferGpu() });
});
$('discard-run').addEventListener('click', () => send({ type: 'discard' }));
$('reload-page').addEventListener('click', () => location.reload());
$('export-run').addEventListener('click', () => { clearError(); clearFileError(); send({ type: 'export' }); });
$('import-run').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  e.target.value = '';
  if (!f) return;
  clearError();
  clearFileError();
  ensureModel();
  const bytes = await f.arrayBuffer();
  send({ type: 'import', bytes, preferGpu: preferGpu() }, [bytes]);
});
// Leaving or hiding the tab saves the run now (the autosave covers a crash, a few seconds behind).
window.addEventListener('pagehide', () => {
  noteWhereLeft();
  send({ type: 'save' });
});
// Back from the back/forward cache: the page and its run live on, so the note for the next visit is void.
window.addEventListener('pageshow', (e) => { if (e.persisted) forgetWhereLeft(); });
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') send({ type: 'save' }); });

// ---- charts, generation, experiments --------------------------------------------------------------------------------
$('log-scale').addEventListener('change', (e) => { lossChart.log = e.target.checked; requestDraw(); });
$('stop-generate').addEventListener('click', () => send({ type: 'stop-generate' }));
$('generate').addEventListener('click', startGeneration);
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

// ---- sharing --------------------------------------------------------------------------------------------------------
$('copy-link').addEventListener('click', (e) => copy(shareUrl(false), e.currentTarget));
$('copy-iframe').addEventListener('click', (e) => copy(
  `<iframe src="${shareUrl(true)}" width="100%" height="720" style="border:0" loading="lazy" allow="cross-origin-isolated" title="qlora-playground"></iframe>`, e.currentTarget));
$('copy-snippet').addEventListener('click', (e) => copy($('snippet').textContent, e.currentTarget));

// ---- your own text (user-text.js) -----------------------------------------------------------------------------------
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
$('user-text').addEventListener('dragover', (e) => e.preventDefault());
$('user-text').addEventListener('drop', async (e) => {
  e.preventDefault();
  const f = e.dataTransfer.files[0];
  if (f) showDroppedText(await f.arrayBuffer());
});

// ---- start ----------------------------------------------------------------------------------------------------------
window.addEventListener('resize', () => {
  requestDraw();
  for (const [plot, id] of [[state.spectraPlot, 'spectra-chart'], [state.histPlot, 'hist-chart']]) {
    if (plot) plot.setSize({ width: Math.max(200, $(id).clientWidth), height: 200 });
  }
});
setEngine(startEngineWorker({ type: 'init', query: location.search }, {
  onMessage: (m) => onMessage[m.type]?.(m),
  onError: (ev) => showError(`The engine stopped: ${ev.message || 'the worker failed to start'}`),
  // The worker, for the page tests (they force a divergence through it) and for curious readers' consoles.
  onWorker: (worker) => { window.__qlora = { worker }; },
}));
requestDraw();
