// What the engine's worker reports (protocol.js lists every message), each turned into what the page shows.

import { account, controlName, followTask, showProblems, writeControls } from './controls.js';
import { endExperiment, nextExperimentRun, startExperiment } from './experiments.js';
import { generationEnded } from './generation.js';
import { drawHist, fillHistogramChoices, requestHistogram } from './histogram-view.js';
import { modelLoadedText, modelStatus, refreshCached, showLoadProblem, showModelBar } from './model-bar.js';
import { $, addNotice, clearError, showError, showNotice, state } from './page.js';
import { chooseBackend, cpuInWords, measureCpu, showBackend, showStepEstimate, whyProcessor } from './processor.js';
import { storageLabel } from './protocol.js';
import { draw, drawSpectra, lossChart, requestDraw, resetStats, truncateRun } from './run-view.js';
import { archiveRun, loadKeptRuns, recordRun } from './runs.js';
import { leftThisRun, offerOtherModel, offerRestore, takeWhereLeft, timeOf } from './saved-runs.js';
import { applyPageOptions, pageQuery } from './share.js';
import { ensureModel, sameSettings, setTrainingButtons, startTraining } from './training.js';
import { el, fmtBytes, fmtInt, renderMemory, renderParams, renderScale } from './views.js';

export const onMessage = {
  init(m) {
    state.config = m.config;
    lossChart.unit = m.config.vocab_size === 256 ? 'byte' : 'token';
    state.defaults = m.defaults;
    state.page = m.parsed.page;
    state.modelBytes = m.modelBytes;
    state.modelName = m.model;
    state.gpu = m.gpu;
    state.formats = m.formats;
    const backend = chooseBackend(m.gpu, state.page.backend);
    state.cpu = m.cpu;
    showBackend(backend);
    $('backend').dataset.threads = String(m.cpu.threads);
    $('backend').dataset.simd = m.cpu.relaxed ? 'relaxed' : 'simd128';
    const why = whyProcessor(m.gpu, state.page.backend);
    if (why) showNotice(`${why} ${cpuInWords(m.cpu)}`);
    $('seq').max = String(m.config.n_positions);
    loadKeptRuns();
    writeControls(m.parsed.settings);
    state.settings = m.parsed.settings;
    // The prompt follows a task the link names, as it follows one picked (a text run's prompt waits for its text).
    if (m.parsed.settings.task !== 'text') followTask(m.parsed.settings.task);
    // Each { param, message }: a message goes when the reader changes its parameter's control (controls.js).
    state.linkErrors = m.parsed.errors;
    if (state.linkErrors.length) showError(state.linkErrors.map((e) => e.message).join('\n'));
    applyPageOptions();
    fillHistogramChoices();
    account(state.settings);
    state.savedRun = m.saved;
    const left = takeWhereLeft();
    const savedHere = m.saved && m.saved.model === state.modelName;
    // A run on the reader's files is offered once the same files are loaded (`loaded`), with this note.
    state.leftAt = left;
    if (savedHere && m.saved.model !== 'files') offerRestore(m.saved, left);
    else if (m.saved) offerOtherModel(m.saved);
    // The reader left a run before its first save finished (no save, or only an older run's): said, rather than an
    // older run offered as if it were the one left.
    if (left && !leftThisRun(left, m.saved) && !m.storage) {
      addNotice(`The run you left at step ${left.step} had not been saved yet, so it cannot be restored${m.saved ? ' (the run offered is an earlier one)' : ''}.`);
    }
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
    // "Your own files" before they are read: the engine counts on the built-in model meanwhile, and the count says so.
    const stand = state.modelName === 'files' && !state.ownConfig;
    renderParams(m.accounting, m.settings, state.config, refused, stand ? 'the built-in Shakespeare model' : null);
    // Measured figures are the run's: shown while the controls hold its settings.
    const current = state.run && sameSettings(state.run.settings, state.settings) ? state.run : null;
    // Before a run, where one would train: the processor says so from the start on a machine without WebGPU.
    renderMemory(m.accounting, current && current.measured, current ? current.backend : state.backend);
    renderScale(m.accounting);
    // The histogram marks the base as the settings keep it: redrawn when that changes.
    if (state.histogram && storageLabel(m.settings) !== state.histFormat) drawHist();
    $('snippet').textContent = m.snippet;
    // Each answer gives the settings' shape (the model's width, batch × sequence): the multiply is timed at it, once
    // per shape.
    measureCpu();
    showStepEstimate();
    history.replaceState(null, '', `${location.pathname}?${m.query}${pageQuery()}`);
    document.body.dataset.accountShown = String(m.seq);
    if (state.experimentWhenAnswered && m.seq === state.accountsSent) {
      const kind = state.experimentWhenAnswered;
      state.experimentWhenAnswered = null;
      startExperiment(kind);
    }
    if (state.trainWhenAnswered && m.seq === state.accountsSent) {
      state.trainWhenAnswered = false;
      startTraining();
    }
  },
  // The loaded model brought its own configuration (a hub model's as downloaded, or the reader's files): every view
  // is recomputed for it.
  model(m) {
    state.config = m.config;
    state.ownConfig = true;
    lossChart.unit = m.config.vocab_size === 256 ? 'byte' : 'token';
    requestDraw();
    state.formats = m.formats;
    $('seq').max = String(m.config.n_positions);
    fillHistogramChoices();
    account(state.settings);
    state.modelIgnored = m.ignored || [];
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
    if (state.savedRun && state.savedRun.model === 'files' && state.modelName === 'files' && !state.run) offerRestore(state.savedRun, state.leftAt);
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
    r.id = m.runId;
    // The run's id, as `saved` shows its step: what the page tests read of a run they cannot see into.
    document.body.dataset.runId = m.runId;
    r.backend = m.backend;
    r.trainable = m.trainable;
    r.measured = m.measured;
    r.baseline = m.baseline;
    // The engine's notice says why WebGPU did not start; the tagline says so briefly (showBackend's default).
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
    showBackend(m.backend, 'the WebGPU device was lost');
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
    // A pause asked during the last step comes after the run is done: done it stays.
    if (state.run && state.run.status === 'done') {
      state.run.pausing = false;
      setTrainingButtons('done');
      return;
    }
    if (state.run) { state.run.status = 'paused'; state.run.pausing = false; }
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
    state.dirty = false;
    resetStats();
    setTrainingButtons('idle');
    $('save-status').textContent = '';
    // What the run generated and measured goes with it: the memory panel counts again for the settings on screen.
    for (const id of ['output-base', 'output-tuned', 'gen-progress']) $(id).textContent = '';
    // A generation streaming from the run ended with it (worker.js stops it as Reset arrives).
    generationEnded();
    $('base-caption').textContent = 'Base';
    $('tuned-caption').textContent = 'Fine-tuned';
    if (state.accounting) renderMemory(state.accounting, null, state.backend);
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
      id: m.runId, backend: m.backend, trainable: m.trainable, measured: m.measured, baseline: m.baseline };
    document.body.dataset.runId = m.runId;
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
    // Before any step the "fine-tuned" model is the base itself: the same text is no surprise when it says so.
    const steps = state.run ? state.run.steps.length : 0;
    $('tuned-caption').textContent = steps
      ? `Fine-tuned (after ${steps} step${steps > 1 ? 's' : ''})`
      : 'Fine-tuned (nothing trained yet: the base itself)';
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
    // A file that would not import (or a run that would not export) is said beside those buttons, where the reader
    // is looking; the run on screen stays as it was.
    if (m.during === 'import' || m.during === 'export') {
      const message = m.message || 'the file could not be read';
      $('file-error').textContent = `${message[0].toUpperCase()}${message.slice(1)}.`.replace(/\.\.$/, '.');
      $('file-error').hidden = false;
      return;
    }
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
