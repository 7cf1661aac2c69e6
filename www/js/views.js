// Rendering of numbers the engine computed: parameter counts, memory bars, the scale-up table, the runs table and
// the explainer. Only textContent and element construction: no user string is ever parsed as HTML.

import { PALETTE, runColor } from './charts.js';
import { storageLabel } from './protocol.js';

export const fmtInt = (n) => Number(n).toLocaleString('en-US');

export function fmtBytes(b) {
  if (b == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(b);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v.toFixed(u === 0 ? 0 : v < 10 ? 2 : 1)} ${units[u]}`;
}

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

const CATEGORY_LABEL = {
  base_weights: 'base weights',
  quant_constants: 'quantization constants',
  adapters: 'adapters',
  gradients: 'gradients',
  optimizer: 'optimizer state',
  activations: 'activations',
};
const CATEGORIES = Object.keys(CATEGORY_LABEL);
const color = (cat) => PALETTE[CATEGORIES.indexOf(cat) % PALETTE.length];

/// The trainable count of `settings` (as the engine settled them); `refused` names the controls whose default they
/// hold while the reader's value is refused, which the count says; `standIn` names the model counted on while the
/// reader's own is not read yet.
export function renderParams(acc, settings, config, refused = [], standIn = null) {
  const tp = document.getElementById('trainable-params');
  tp.textContent = fmtInt(acc.trainable);
  tp.dataset.value = String(acc.trainable);
  tp.classList.toggle('held', refused.length > 0);
  // PEFT's percentage: of the model's parameters and the adapters' together.
  const detail = settings.method === 'full'
    ? `Full fine-tuning: all ${fmtInt(acc.total_params)} parameters train (100%).`
    : `${acc.percent.toFixed(3)}% of ${fmtInt(acc.total_params)}, the model's ${fmtInt(acc.full_trainable)} parameters and the adapters' together (as PEFT counts) — full fine-tuning would train ${fmtInt(acc.full_trainable)}.`;
  const held = refused.length ? ` The numbers use the default for ${refused.join(' and ')} until ${refused.length > 1 ? 'they are' : 'it is'} fixed.` : '';
  const until = standIn ? `Counted on ${standIn} until your model's files are read: ` : '';
  document.getElementById('trainable-detail').textContent = until + detail + held;
  renderExplainer(settings, config);
}

/// Per-matrix ranks (`fc:16,q:2`, validated by the engine) as a Map target → rank text; they override r.
export function ownRanks(text) {
  return new Map(text.split(',').filter((p) => p.includes(':')).map((p) => p.trim().split(':').map((x) => x.trim())));
}

/// The smallest example (a 3×3 update as 3×1 · 1×3), then the same arithmetic on this model's matrices at rank r.
function renderExplainer(settings, config) {
  const box = document.getElementById('explainer');
  const c = config.n_embd;
  const r = settings.r;
  const rows = [['a 3×3 update at rank 1', 3, 3, 1]];
  const dims = { q: [c, c], k: [c, c], v: [c, c], o: [c, c], fc: [c, 4 * c], proj: [4 * c, c] };
  const own = ownRanks(settings.ranks);
  for (const t of settings.targets) rows.push([`${t} (${dims[t][0]}→${dims[t][1]})`, dims[t][1], dims[t][0], Number(own.get(t) ?? r)]);
  const table = el('table', { className: 'compact' },
    el('thead', {}, el('tr', {}, el('th', {}, 'matrix'), el('th', {}, 'ΔW numbers'), el('th', {}, 'B·A numbers'), el('th', {}, 'ratio'))));
  const body = el('tbody');
  for (const [name, dOut, dIn, rank] of settings.method === 'full' ? rows.slice(0, 1) : rows) {
    const dense = dOut * dIn;
    const lowRank = rank * (dOut + dIn);
    body.append(el('tr', {}, el('td', {}, name), el('td', {}, `${dOut}×${dIn} = ${fmtInt(dense)}`),
      el('td', {}, `${dOut}×${rank} + ${rank}×${dIn} = ${fmtInt(lowRank)}`), el('td', {}, `${(lowRank / dense * 100).toFixed(1)}%`)));
  }
  table.append(body);
  const lora = 'keeps W₀ frozen and learns ΔW = B·A (B: d_out×r, zero at the start; A: r×d_in, random), so h = W₀x + (α/r)·B·A·x. ';
  box.replaceChildren(
    settings.method === 'full'
      ? el('p', {}, 'Full fine-tuning trains every weight: each matrix\'s whole update, d_in·d_out numbers. LoRA would instead ', lora,
        'An update of rank r costs r·(d_in + d_out) numbers instead of d_in·d_out:')
      : el('p', {}, `LoRA ${lora}`, 'An update of rank r costs r·(d_in + d_out) numbers instead of d_in·d_out:'),
    table);
}

/// Stacked bars: this configuration (theory), the bytes the run's executor holds (GPU buffers, or the CPU executor's
/// buffers in the engine), and full / LoRA / QLoRA at the same settings.
export function renderMemory(acc, measured, backend) {
  const total = document.getElementById('memory-total');
  total.textContent = fmtBytes(acc.memory.total);
  total.dataset.value = String(acc.memory.total);
  const bars = [['this configuration (theory)', acc.memory.categories, acc.memory.total]];
  const m = document.getElementById('memory-measured');
  // WebGPU's buffers, whether a GPU holds them or a software adapter (SwiftShader, lavapipe) on the processor does.
  const where = backend === 'cpu' ? 'measured in the CPU executor' : 'measured in the WebGPU buffers';
  if (measured) {
    const cats = measured.filter(([k]) => k !== 'scratch');
    const scratch = measured.find(([k]) => k === 'scratch');
    const sum = cats.reduce((a, [, v]) => a + v, 0);
    m.textContent = `${fmtBytes(sum)}${scratch ? ` (+ ${fmtBytes(scratch[1])} scratch)` : ''}`;
    m.dataset.value = String(sum);
    bars.push([where, cats.map(([k, v]) => [k === 'quantization_constants' ? 'quant_constants' : k, v]), sum]);
  } else {
    m.textContent = 'shown once training starts';
    delete m.dataset.value;
  }
  document.getElementById('memory-where').textContent = where;
  const note = document.getElementById('memory-note');
  note.hidden = backend !== 'cpu';
  note.textContent = 'Training runs on the processor here. Its executor keeps the base as chosen: the linear weights in their '
    + 'format, each dequantized to fp32 only for its own product. Below an fp32 base it keeps the tied embedding (also the '
    + 'output head) in fp32, with values rounded to 16 bits, so it holds 2 bytes more per embedding value than the theory.';
  for (const [name, mem] of acc.compare) bars.push([`${name === 'qlora' ? 'QLoRA (nf4+dq)' : name === 'lora' ? 'LoRA (fp32 base)' : 'full fine-tuning'}`, mem.categories, mem.total]);
  const max = Math.max(...bars.map((b) => b[2]));
  const box = document.getElementById('memory-bars');
  box.replaceChildren(...bars.map(([label, cats, sum]) => {
    const bar = el('div', { className: 'bar', role: 'img', 'aria-label': `${label}: ${fmtBytes(sum)}` });
    for (const [k, v] of cats) {
      if (v > 0) bar.append(el('span', { className: 'seg', title: `${CATEGORY_LABEL[k] || k}: ${fmtBytes(v)}`, style: `width:${(v / max) * 100}%;background:${color(k)}` }));
    }
    return el('div', { className: 'bar-row' }, el('span', { className: 'bar-label' }, label), bar, el('span', { className: 'bar-value' }, fmtBytes(sum)));
  }));
  // The key carries this configuration's bytes per category, readable without a pointer (a phone has none).
  const mine = new Map(acc.memory.categories);
  const legend = document.getElementById('memory-legend');
  legend.replaceChildren(...CATEGORIES.map((k) => el('li', { 'data-category': k }, el('span', { className: 'swatch', style: `background:${color(k)}` }),
    `${CATEGORY_LABEL[k]} ${fmtBytes(mine.get(k) ?? 0)}`)));
  // Full fine-tuning trains every weight: there is no frozen base to speak of.
  document.getElementById('memory-share').textContent = memoryShare(acc.memory, acc.trainable === acc.full_trainable);
}

/// Where this configuration's bytes go, in one sentence: the frozen base's share, and the largest part when that is
/// not the base (at a small model's size the activations outweigh it, so fewer bits for the base save little).
function memoryShare(memory, full) {
  const cats = new Map(memory.categories);
  const base = (cats.get('base_weights') ?? 0) + (cats.get('quant_constants') ?? 0);
  const pct = (v) => `${Math.round((100 * v) / memory.total)}%`;
  let s = full
    ? `The weights, all of them trained, are ${fmtBytes(base)} of ${fmtBytes(memory.total)}, ${pct(base)}.`
    : `The frozen base (with its quantization constants) is ${fmtBytes(base)} of ${fmtBytes(memory.total)}, ${pct(base)}.`;
  const [top, bytes] = [...cats].filter(([k]) => k !== 'base_weights' && k !== 'quant_constants').sort((a, b) => b[1] - a[1])[0] ?? [];
  if (top && bytes > base) {
    const name = CATEGORY_LABEL[top] || top;
    s += ` The ${name} ${name.endsWith('s') ? 'take' : 'takes'} more, ${fmtBytes(bytes)} (${pct(bytes)})`;
    s += top === 'activations'
      ? `: they grow with batch × sequence, not with ${full ? 'the weights\' bits' : 'the base\'s bits, so a narrower base saves less here than on a large model'}.`
      : '.';
  }
  return s;
}

export function renderScale(acc) {
  const body = document.querySelector('#scale-table tbody');
  const names = { gpt2: 'GPT-2 small', 'gpt3-175b': 'GPT-3 175B', 'llama-7b': 'LLaMA 7B', 'llama-65b': 'LLaMA 65B' };
  body.replaceChildren(...acc.scale_up.map((r) => el('tr', {},
    el('td', {}, names[r.preset] || r.preset), el('td', {}, fmtInt(r.params)), el('td', {}, fmtInt(r.trainable)),
    el('td', {}, `${r.percent.toFixed(4)}%`), el('td', {}, fmtBytes(r.full_bytes)), el('td', {}, fmtBytes(r.lora_bytes)),
    el('td', {}, fmtBytes(r.qlora_bytes)))));
}

/// The Runs table: one row per run, its colour the one its curve has on the loss chart.
export function renderRuns(runs, label) {
  const body = document.querySelector('#runs-table tbody');
  body.replaceChildren(...runs.map((r, i) => el('tr', { 'data-label': label(r.settings) },
    el('td', {}, el('span', { className: 'swatch', style: `background:${runColor(i).stroke}` }), String(i + 1)),
    el('td', {}, r.settings.method), el('td', {}, r.settings.method === 'full' ? '–' : [String(r.settings.r), r.settings.ranks].filter(Boolean).join(' · ')),
    el('td', {}, storageLabel(r.settings)),
    el('td', {}, fmtInt(r.trainable)), el('td', {}, String(r.steps)), el('td', {}, r.loss.toFixed(4)),
    el('td', {}, r.val == null ? '–' : r.val.toFixed(4)), el('td', {}, r.accuracy == null ? '–' : `${(r.accuracy * 100).toFixed(0)}%`),
    el('td', {}, r.tokS ? fmtInt(Math.round(r.tokS)) : '–'), el('td', {}, r.backend || '–'))));
}

/// Each format's error on the weight shown; the row of `format`, the base as the settings keep it, is marked.
export function renderQuantErrors(h, format) {
  const body = document.querySelector('#quant-errors tbody');
  // fp32 is the reference; a format that keeps these weights exactly (the shipped model was saved in fp16) says so.
  const note = (e) => (e.format === 'fp32' ? ' (reference)' : e.rmse === 0 ? ' (exact: the weights were saved in it)' : '');
  const base = (e) => e.format === format;
  body.replaceChildren(...h.errors.map((e) => el('tr', base(e) ? { className: 'current', title: 'the base as your settings keep it' } : {},
    el('td', {}, `${e.format}${note(e)}`), el('td', {}, e.bits_per_param.toFixed(3)),
    el('td', {}, e.rmse === 0 ? '0' : e.rmse.toExponential(2)), el('td', {}, e.max_abs === 0 ? '0' : e.max_abs.toExponential(2)))));
}
