// The base-weight histogram: which weight, asked of the engine, drawn against the levels of the base's format.

import { drawHistogram } from './charts.js';
import { $, send, state } from './page.js';
import { storageLabel } from './protocol.js';
import { el, renderQuantErrors } from './views.js';

export function fillHistogramChoices() {
  const sel = $('hist-weight');
  const names = { attn: 'attn.c_attn', o: 'attn.c_proj', fc: 'mlp.c_fc', proj: 'mlp.c_proj' };
  sel.replaceChildren();
  for (let l = 0; l < state.config.n_layer; l++) {
    for (const [k, v] of Object.entries(names)) sel.append(el('option', { value: `${l}:${k}`, textContent: `h.${l}.${v}` }));
  }
  sel.value = '0:fc';
}

export function requestHistogram() {
  const [layer, linear] = $('hist-weight').value.split(':');
  send({ type: 'histogram', layer: Number(layer), linear });
}

export function drawHist() {
  if (!state.histogram) return;
  const s = state.usable || state.settings;
  const f = s ? (s.method === 'full' ? 'fp32' : s.format) : 'nf4';
  state.histFormat = s ? storageLabel(s) : 'nf4';
  state.histPlot = drawHistogram($('hist-chart'), state.histogram, f, state.histPlot);
  renderQuantErrors(state.histogram, state.histFormat);
}
