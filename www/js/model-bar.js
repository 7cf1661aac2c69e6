// The base model: built in, from the Hugging Face hub (downloaded on Load, kept in this browser), or the reader's own
// files (read in the worker, never sent anywhere).

import { cachedFiles, cachedModels, deleteCached, download } from './hub.js';
import { gpt2Params, hubDownloadBytes, MODELS } from './models.js';
import { $, clearError, send, state } from './page.js';
import { setTrainingButtons } from './training.js';
import { el, fmtBytes, fmtInt } from './views.js';

/// The model control's status: `loading` | `loaded` | `error` (data-value, for tests and styles) and its words.
export function modelStatus(value, text) {
  $('model-status').dataset.value = value;
  $('model-status').textContent = text;
}

/// The loaded model in words, with the engine's memory after loading it (its peak so far: wasm memory never shrinks).
export function modelLoadedText(info, memory) {
  const ignored = state.modelIgnored && state.modelIgnored.length ? ` (ignored: ${state.modelIgnored.join(', ')})` : '';
  const mem = memory ? `; the engine holds ${fmtBytes(memory)} in this tab` : '';
  // A base loaded in fp32 is stored by each run as its settings choose; one loaded narrower is shared by runs in its format.
  const runs = info.storage === 'fp32' ? ' (each run stores it as its settings choose)' : '';
  return `loaded: ${fmtInt(info.params)} parameters, ${info.n_layer} layers × ${info.n_embd}, a vocabulary of ${fmtInt(info.vocab_size)}, the frozen base kept in ${info.storage}${runs}${mem}${ignored}`;
}

/// What the reader sees of the chosen model before loading it: a hub model's size and licence, the file chooser.
export async function showModelBar() {
  const name = state.modelName;
  const model = MODELS[name];
  $('model').value = name;
  $('model-load').hidden = !model.repo;
  $('model-drop').hidden = name !== 'files';
  if (name === 'shakespeare') $('model-about').textContent = '';
  if (name === 'files') {
    $('model-about').textContent = 'Nothing leaves this tab.';
    modelStatus('', 'choose your model\'s files');
  }
  if (name === 'files') $('model-credit').textContent = 'Base model: your own files, read in this tab.';
  if (model.repo) {
    $('model-credit').replaceChildren(`Base model: ${model.repo} from the Hugging Face hub (${model.licence} licence; `,
      el('a', { href: `https://huggingface.co/${model.repo}`, rel: 'noopener' }, 'model card'), ').');
    const bytes = hubDownloadBytes(state.config, gpt2Params(state.config));
    $('model-about').textContent = `${model.repo} · ${model.licence} licence · ${fmtBytes(bytes)} download from huggingface.co, kept in this browser`;
    $('model-about').dataset.bytes = String(bytes);
    modelStatus('', 'not loaded');
    const cached = self.caches ? await cachedFiles(name).catch(() => null) : null;
    if (cached && cached.complete) {
      $('model-about').textContent = `${model.repo} · ${model.licence} licence · kept in this browser (${fmtBytes(cached.bytes)}): loads without downloading`;
      // A second visit loads from the cache at once, except in an embed, which waits for a click.
      if (!state.page.embed) loadHubModel();
    }
  }
  refreshCached();
}

/// A hub model whose base, kept as the settings keep it, would not fit the tab (gpt2-large in fp32): the reason is
/// said at the model's control and Load waits, before a byte is downloaded; settings that fit (a 4-bit base) bring
/// Load back. (The reader's own files are checked the same way as they are read.)
export function showLoadProblem(problem) {
  if (!MODELS[state.modelName].repo || state.modelLoaded || $('model-status').dataset.value === 'loading') return;
  if (problem) {
    state.loadRefused = true;
    $('model-load').disabled = true;
    modelStatus('refused', problem);
    setTrainingButtons(state.run ? state.run.status : 'idle');
  } else if (state.loadRefused) {
    state.loadRefused = false;
    $('model-load').disabled = false;
    modelStatus('', 'not loaded');
    setTrainingButtons(state.run ? state.run.status : 'idle');
  }
}

/// The Load button of a hub model: download what is not cached (one bar for all of it), then the engine reads it.
export async function loadHubModel() {
  const name = state.modelName;
  if (state.modelLoaded || $('model-load').disabled) return;
  $('model-load').disabled = true;
  clearError();
  const bar = $('model-progress');
  bar.hidden = false;
  bar.value = 0;
  const restarting = state.downloadFailed;
  modelStatus('loading', restarting ? 'the last download stopped part-way: starting it again from the beginning…' : 'loading…');
  // The other files' streams may still report after one has failed: the failure's message stays.
  let settled = false;
  try {
    const got = await download(name, ({ loaded, total }) => {
      if (settled) return;
      bar.max = total || 1;
      bar.value = loaded;
      bar.dataset.loaded = String(loaded);
      bar.dataset.total = String(total);
      const again = restarting ? ' (started again from the beginning)' : '';
      modelStatus('loading', `downloading ${fmtBytes(loaded)}${total ? ` of ${fmtBytes(total)}` : ''}${again}…`);
    });
    settled = true;
    state.downloadFailed = false;
    bar.removeAttribute('value'); // indeterminate while the engine reads and checks the weights
    modelStatus('loading', got.downloaded ? 'downloaded; reading the weights…' : 'reading the weights from this browser\'s cache…');
    send({ type: 'load' });
  } catch (e) {
    settled = true;
    state.downloadFailed = true;
    bar.hidden = true;
    $('model-load').disabled = false;
    modelStatus('error', e.message || String(e));
  }
  refreshCached();
}

/// The reader's own GPT-2 directory: its files go to the engine's worker, and nowhere else.
export function sendFiles(files) {
  if (!files.length) return;
  clearError();
  state.modelLoaded = false;
  modelStatus('loading', `reading ${files.length} file${files.length > 1 ? 's' : ''}…`);
  send({ type: 'files', files: [...files] });
}

/// The list of hub models kept in this browser, each with its size and a Delete button.
export async function refreshCached() {
  const list = await cachedModels().catch(() => []);
  $('cached-models').hidden = list.length === 0;
  $('cached-list').replaceChildren(...list.map(({ name, bytes, complete }) => {
    const del = el('button', { type: 'button', 'data-testid': 'delete-cached', 'data-name': name }, 'Delete');
    del.addEventListener('click', async () => {
      await deleteCached(name);
      if (name === state.modelName) {
        showModelBar();
        if (state.modelLoaded) modelStatus('loaded', 'deleted from this browser; the loaded copy stays until you leave the page');
      }
      refreshCached();
    });
    return el('li', { 'data-testid': 'cached-model', 'data-name': name, 'data-bytes': String(bytes) },
      `${MODELS[name].label}: ${fmtBytes(bytes)}${complete ? '' : ' (incomplete)'}`, del);
  }));
}
