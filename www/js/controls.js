// Settings <-> controls: reads the controls into settings and writes settings back, makes dependent controls follow
// their parent (method, base format, double quantization), asks the engine for the numbers on every change, and
// shows each setting it refused at its own control.

import { renderBaseExplainer } from './explainer.js';
import { $, clearError, send, showError, state, TARGETS } from './page.js';
import { article } from './protocol.js';
import { setTrainingButtons } from './training.js';
import { el, ownRanks } from './views.js';

function readControls() {
  // An empty box is null, not 0: the engine says "the box is empty" at that control (and "got 1.5" for a fraction).
  // Text in a number box reads as '' too; the browser says so in `badInput`, and the engine says "not a number".
  const num = (id) => {
    const v = $(id).value.trim();
    if ($(id).validity.badInput) return 'not a number';
    return v === '' ? null : Number(v);
  };
  const r = num('rank');
  const targets = TARGETS.filter((t) => $(`targets-${t}`).checked);
  // Only ranks that differ from r travel (an empty box travels as `q:` and is refused as empty, like any bad rank; a
  // box holding text as `q:not a number`).
  const ranks = $('per-target').checked
    ? targets.filter((t) => num(`rank-${t}`) !== r).map((t) => `${t}:${num(`rank-${t}`) ?? ''}`).join(',')
    : '';
  return {
    method: $('method').value,
    r,
    ranks,
    alpha: num('alpha'),
    targets,
    format: $('format').value,
    dq: $('double-quant').checked,
    adapter_storage: $('adapter-storage').value,
    lr: num('lr'),
    batch: num('batch'),
    seq: num('seq'),
    steps: num('steps'),
    seed: num('seed'),
    task: $('task').value,
  };
}

export function writeControls(s) {
  $('method').value = s.method;
  $('rank').value = String(s.r);
  for (const t of TARGETS) $(`targets-${t}`).checked = s.targets.includes(t);
  const own = ownRanks(s.ranks);
  $('per-target').checked = own.size > 0;
  for (const t of TARGETS) $(`rank-${t}`).value = own.get(t) ?? String(s.r);
  $('format').value = s.format;
  $('double-quant').checked = s.dq;
  $('adapter-storage').value = s.adapter_storage;
  // Settings hold f32 values: show them at f32 precision, not as their f64 expansion (0.003, not 0.0030000000261).
  $('lr').value = String(Number(s.lr.toPrecision(7)));
  $('alpha').value = String(Number(s.alpha.toPrecision(7)));
  $('batch').value = String(s.batch);
  $('seq').value = String(s.seq);
  $('steps').value = String(s.steps);
  $('seed').value = String(s.seed);
  $('task').value = s.task;
  if (s.method !== 'full') state.base[s.method] = s.format;
  if (dqApplies(s.method, s.format)) state.base.dq = s.dq;
  syncDependentControls(s);
}

export const formatInfo = (name) => state.formats.formats.find((f) => f.name === name);

/// Double quantization applies to bitsandbytes' 4-bit formats (fp4, nf4) of a LoRA/QLoRA base.
export const dqApplies = (method, format) => method !== 'full' && Boolean(formatInfo(format)?.double_quant);

/// Marks a control that changed because another did, so the reader sees it move.
function flash(control) {
  control.classList.remove('followed');
  void control.offsetWidth;
  control.classList.add('followed');
}

/// The method follows the base and the base the method: LoRA keeps a 16/32-bit base, QLoRA a quantized one, full
/// fine-tuning fp32 weights. Double quantization follows the format: off where it does not apply, the reader's last
/// choice where it does. Returns what followed, in words ('' when nothing did).
function follow(changed) {
  const method = $('method');
  const format = $('format');
  const dq = $('double-quant');
  let said = '';
  if (changed === 'method') {
    if (method.value === 'full') {
      format.value = 'fp32';
      said = 'Full fine-tuning trains every weight, so they stay fp32: the base format does not apply.';
    } else {
      const want = state.base[method.value];
      if (format.value !== want) {
        format.value = want;
        flash(format);
        said = method.value === 'lora'
          ? `LoRA keeps the frozen base in 16 or 32 bits: the base is now ${want}.`
          : `QLoRA keeps the frozen base quantized: the base is now ${want}.`;
      }
    }
  } else if (changed === 'format') {
    const info = formatInfo(format.value);
    if (method.value !== info.method) {
      method.value = info.method;
      flash(method);
      said = info.quantized ? `A quantized base (${info.name}) makes this QLoRA.` : `${article(info.name) === 'an' ? 'An' : 'A'} ${info.name} base is not quantized, which makes this LoRA.`;
    }
    state.base[info.method] = info.name;
  } else if (changed === 'double-quant') {
    state.base.dq = dq.checked;
  }
  const applies = dqApplies(method.value, format.value);
  const wanted = applies && state.base.dq;
  if (changed !== 'double-quant' && dq.checked !== wanted) {
    dq.checked = wanted;
    flash(dq);
    if (!applies && method.value !== 'full') {
      said += ` Double quantization applies to fp4 and nf4 only: off for ${format.value}, back when you pick fp4 or nf4.`;
    }
  }
  dq.disabled = !applies;
  return said.trim();
}

/// Controls whose meaning depends on others: the base format only matters for LoRA/QLoRA, double quantization only
/// for fp4 and nf4, the text box only for "your own text", the scaling per matrix when ranks differ.
function syncDependentControls(s) {
  const full = s.method === 'full';
  for (const id of ['rank', 'alpha', 'adapter-storage', 'per-target', ...TARGETS.map((t) => `targets-${t}`)]) $(id).disabled = full;
  for (const t of TARGETS) {
    $(`rank-${t}`).hidden = !$('per-target').checked;
    $(`rank-${t}`).disabled = full || !s.targets.includes(t);
  }
  $('format').disabled = full;
  if (full) $('format').value = 'fp32';
  $('double-quant').disabled = !dqApplies(s.method, s.format);
  const own = ownRanks(s.ranks);
  // A rank box left empty shows '–', not "null" or 0.
  const shown = (r) => (r == null || r === '' || Number.isNaN(Number(r)) ? '–' : String(r));
  const ranks = s.targets.map((t) => [t, own.get(t) ?? s.r]);
  // Any matrix off r: listed, even when they all agree (every box at 16 while r is 8) or one matrix is adapted.
  const mixed = !full && ranks.some(([, r]) => shown(r) !== shown(s.r));
  $('rank-out').textContent = mixed ? `${shown(s.r)} (mixed: ${ranks.map(([t, r]) => `${t} ${shown(r)}`).join(', ')})` : shown(s.r);
  $('rank-out').dataset.mixed = String(mixed);
  showScaling(s, own, mixed);
  $('user-text-box').hidden = s.task !== 'text';
  renderBaseExplainer(s);
}

/// α/r, per matrix where the ranks differ. A per-matrix rank the engine cannot take (empty, text, a fraction, past
/// the page's limit) gives no number either: '–' until it is fixed, its box saying why. The box is judged by its own
/// min/max/step, which are the engine's limits (a test in src/run/settings.rs compares them); r is a slider, always
/// within them.
function showScaling(s, own, mixed) {
  const takes = (t, r) => Number(r) > 0 && (!t || !own.has(t) || $(`rank-${t}`).validity.valid);
  const scaling = (t, r) => (s.alpha > 0 && takes(t, r) ? (s.alpha / Number(r)).toFixed(3) : '–');
  $('scaling-out').textContent = mixed
    ? s.targets.map((t) => `${t} ${scaling(t, own.get(t) ?? s.r)}`).join(', ')
    : scaling(null, s.r);
}

/// Asks the engine for the numbers of `settings`. Requests are numbered, and the page marks which answer it shows
/// (body data-account-sent / data-account-shown), so a reader's script or a test can tell when it is current.
export function account(settings) {
  state.accountsSent += 1;
  document.body.dataset.accountSent = String(state.accountsSent);
  send({ type: 'account', settings, seq: state.accountsSent });
}

/// Whether the numbers on screen answer the last change (Train and the experiments wait for them otherwise).
export const answered = () => document.body.dataset.accountSent === document.body.dataset.accountShown;

/// Every control change: recompute counts and memory at once (before any training), update the URL.
export function onSettingsChanged(event) {
  // Moving r moves the per-matrix ranks that were following it.
  if (event && event.target.id === 'rank' && state.settings) {
    // Compared as text: a box left empty (null in the settings) follows as an empty box does.
    const was = typeof state.settings.r === 'number' ? String(state.settings.r) : '';
    for (const t of TARGETS) if ($(`rank-${t}`).value.trim() === was) $(`rank-${t}`).value = $('rank').value;
  }
  const changed = event && event.target.id;
  if (changed) forgetLinkErrors(changed);
  // Selects and checkboxes fire 'input' then 'change': follow once, on the first.
  if (['method', 'format', 'double-quant'].includes(changed) && event.type === 'input') {
    const said = follow(changed);
    if (said || changed !== 'double-quant') $('follow-note').textContent = said;
  } else if (changed && !['method', 'format', 'double-quant'].includes(changed)) {
    // The note explains the last move of the base controls; another control's change makes it old news.
    $('follow-note').textContent = '';
  }
  const s = readControls();
  if (s.method === 'full') { s.format = 'fp32'; s.dq = false; s.adapter_storage = 'none'; }
  if (!dqApplies(s.method, s.format)) s.dq = false;
  if (s.task !== (state.settings && state.settings.task)) followTask(s.task);
  syncDependentControls(s);
  state.settings = s;
  if (state.run && state.run.status !== 'new') state.dirty = true;
  account(s);
}

/// The link parameters a control's change settles: its own, and those that follow it (the method, base format and
/// double quantization follow each other; a per-matrix rank is refused for a matrix that is not adapted).
function linkParameters(id) {
  if (['method', 'format', 'double-quant'].includes(id)) return ['method', 'format', 'dq'];
  if (id === 'rank') return ['r'];
  if (id === 'per-target' || id.startsWith('rank-')) return ['ranks'];
  if (id.startsWith('targets-')) return ['targets', 'ranks'];
  return [{ 'adapter-storage': 'astore' }[id] ?? id];
}

/// The reader changed a control: what the opening link got wrong about it is old news. The error bar keeps the link's
/// other messages, and goes with the last; a message shown there since (a failed run, say) is left alone.
function forgetLinkErrors(id) {
  const params = linkParameters(id);
  const before = state.linkErrors;
  if (!before.some((e) => params.includes(e.param))) return;
  state.linkErrors = before.filter((e) => !params.includes(e.param));
  if ($('error').hidden || $('error').textContent !== before.map((e) => e.message).join('\n')) return;
  if (state.linkErrors.length) showError(state.linkErrors.map((e) => e.message).join('\n'));
  else clearError();
}

/// The generation prompt follows the data: each task's question form, or the first line of the reader's text.
const TASK_PROMPTS = { even: 'Q: is 47 even? A: ', add: '23+58=', reverse: 'reverse kitab: ', hamlet: 'HAMLET:' };

export function followTask(task) {
  const prompt = task === 'text' ? ($('user-text').value.split('\n')[0] || '').slice(0, 40) : TASK_PROMPTS[task];
  if (prompt != null) $('prompt').value = prompt;
}

/// The control's visible name, for messages about it.
export function controlName(field) {
  const names = { r: 'rank r', ranks: 'the per-matrix ranks', targets: 'the matrices to adapt', dq: 'double quantization',
    astore: 'adapter storage', lr: 'the learning rate', seq: 'the sequence length', data: 'your own text' };
  return names[field] || `the ${field}`;
}

/// Shows each refused setting at its control; the numbers meanwhile use its default (the engine settled them).
export function showProblems(problems) {
  state.problems = problems;
  for (const old of document.querySelectorAll('.field-error:not(.gen-error)')) old.remove();
  for (const node of document.querySelectorAll('#controls [data-invalid]')) delete node.dataset.invalid;
  for (const p of problems) {
    const at = p.field === 'ranks' ? 'targets' : p.field;
    const control = document.querySelector(`#controls [data-control="${at}"]`) || $('train');
    control.dataset.invalid = 'true';
    control.after(el('p', { className: 'field-error', role: 'alert', 'data-testid': 'field-error', 'data-for': p.field, textContent: p.message }));
  }
  setTrainingButtons(state.run ? state.run.status : 'idle');
}

/// Why Train cannot start now, or '' when it can.
export function trainBlocked() {
  if (state.engineStopped) return 'Train waits for a reload: the engine stopped (see the message above).';
  if (state.problems.length) {
    const [p] = state.problems;
    return `Train waits for ${controlName(p.field)}: ${p.message}.`;
  }
  if (!state.modelLoaded && state.modelName !== 'shakespeare') {
    if (state.modelName === 'files') return 'Train waits for your model: choose its files above.';
    if (!state.loadRefused) return 'Train waits for the model: press Load above.';
    return state.settings?.method === 'full'
      ? 'Train waits for the model, which full fine-tuning does not fit in this tab: choose LoRA or QLoRA with a base the message above names, then press Load.'
      : 'Train waits for the model, which does not fit this tab with this base format: choose one the message above names, then press Load.';
  }
  if (state.runProblem) return 'Train waits for settings whose run fits this tab (see Memory while training).';
  if (state.settings && state.settings.task === 'text' && !state.userTextSent) {
    return 'Train waits for your own text: paste it or drop a .txt file into the box (or pick a built-in task).';
  }
  return '';
}
