// Charts (uPlot, vendored): the loss curves with earlier runs overlaid, the adapters' singular values, and a base
// weight's histogram with the 4-bit levels. Series are decimated to the chart's pixel width before drawing.

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { article } from './protocol.js';

// Okabe–Ito: distinguishable with every common colour-vision deficiency.
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];

/// The colour (and dash, once the palette's six run colours are used) of earlier run `i`, on the chart and in the
/// Runs table. The first two colours are the current run's training and validation curves.
export function runColor(i) {
  const colors = PALETTE.slice(2);
  return { stroke: colors[i % colors.length], dash: i < colors.length ? undefined : [6, 3] };
}

/// At most `width` points: each bucket of consecutive steps becomes its mean (nulls skipped).
export function decimate(xs, ys, width) {
  const n = xs.length;
  if (n <= width) return [xs, ys];
  const per = n / width;
  const ox = [];
  const oy = [];
  for (let b = 0; b < width; b++) {
    const lo = Math.floor(b * per);
    const hi = Math.min(n, Math.floor((b + 1) * per));
    let sum = 0;
    let cnt = 0;
    for (let i = lo; i < hi; i++) if (ys[i] != null) { sum += ys[i]; cnt++; }
    ox.push(xs[lo]);
    oy.push(cnt ? sum / cnt : null);
  }
  return [ox, oy];
}

function widthOf(el) {
  return Math.max(200, Math.floor(el.clientWidth || 600));
}

/// The loss chart: current train loss, current validation loss, and the train loss of earlier runs.
export class LossChart {
  constructor(el) {
    this.el = el;
    this.log = false;
    this.plot = null;
    this.shape = '';
  }

  /// current: {steps:[], loss:[], valSteps:[], val:[], label, index} (index: its row in the Runs table, if it has one);
  /// previous: [{label, steps, loss, index}]
  draw(current, previous) {
    const width = widthOf(this.el);
    const series = [{ label: 'step' }];
    const curves = [];
    previous.forEach((r) => {
      curves.push([r.steps, r.loss]);
      const { stroke, dash } = runColor(r.index);
      series.push({ label: r.label, stroke, dash, width: 1.5, spanGaps: true });
    });
    curves.push([current.steps, current.loss]);
    // A run already in the Runs table (finished, or kept by a Reset) keeps the colour and number it has there.
    const kept = current.index != null ? runColor(current.index) : null;
    const name = current.label && (kept ? `#${current.index + 1} ${current.label}` : current.label);
    series.push({ label: name ? `train loss (${name})` : 'train loss', stroke: kept ? kept.stroke : PALETTE[0], dash: kept?.dash, width: 2, spanGaps: true });
    curves.push([current.valSteps, current.val]);
    series.push({ label: 'validation loss', stroke: PALETTE[1], width: 2, spanGaps: true, points: { show: true, size: 5 } });
    const data = joinOnSteps(curves.map(([x, y]) => decimate(x, y, width)));
    // The loss is per token of the model's tokenizer: a byte for the built-in model, a BPE token for GPT-2's.
    const unit = this.unit || 'byte';
    const shape = `${series.map((s) => s.label).join('|')}|${this.log}|${width}|${unit}`;
    if (!this.plot || shape !== this.shape) {
      if (this.plot) this.plot.destroy();
      this.plot = new uPlot({
        width,
        height: 260,
        series,
        scales: { x: { time: false }, y: { distr: this.log ? 3 : 1 } },
        // Whole steps only on the axis (uPlot would tick 2.5 on a short run).
        axes: [{ label: 'step', incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000] }, { label: `loss (nats/${unit})` }],
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      }, data, this.el);
      this.shape = shape;
    } else {
      this.plot.setData(data);
    }
  }

  /// Number of points drawn in the current train-loss series (for tests and the status line).
  points() {
    return this.plot ? this.plot.data[this.plot.data.length - 2].filter((v) => v != null).length : 0;
  }
}

/// Merges several (x, y) series into uPlot's shared-x table, with nulls where a series has no point.
function joinOnSteps(curves) {
  const xs = [...new Set(curves.flatMap(([x]) => x))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const table = [xs];
  for (const [x, y] of curves) {
    const col = new Array(xs.length).fill(null);
    x.forEach((v, i) => { col[index.get(v)] = y[i]; });
    table.push(col);
  }
  return table;
}

/// Singular values of every adapter: one line per adapter, index on x.
export function drawSpectra(el, spectra, old) {
  if (old) old.destroy();
  el.textContent = '';
  if (!spectra || spectra.length === 0) {
    el.textContent = 'No adapters (full fine-tuning trains W itself).';
    return null;
  }
  const r = Math.max(...spectra.map((s) => s.singular_values.length));
  const xs = Array.from({ length: r }, (_, i) => i + 1);
  const data = [xs, ...spectra.map((s) => xs.map((_, i) => s.singular_values[i] ?? null))];
  const targets = [...new Set(spectra.map((s) => s.target))];
  const series = [{ label: 'index' }, ...spectra.map((s) => ({
    label: `L${s.layer} ${s.target}`,
    stroke: PALETTE[targets.indexOf(s.target) % PALETTE.length],
    width: 1,
    points: { show: r <= 16 },
  }))];
  return new uPlot({
    width: widthOf(el),
    height: 200,
    series,
    scales: { x: { time: false } },
    axes: [{ label: 'singular value index', incrs: [1, 2, 4, 8, 16, 32, 64] }, { label: 'σ of s·B·A' }],
    legend: { show: false },
  }, data, el);
}

/// The spectra chart's key: one colour per adapted matrix, one line per layer.
export function spectraKey(spectra) {
  const targets = [...new Set((spectra || []).map((s) => s.target))];
  const layers = new Set((spectra || []).map((s) => s.layer)).size;
  return { layers, targets: targets.map((t, i) => ({ target: t, color: PALETTE[i % PALETTE.length] })) };
}

/// Histogram of w / absmax(block) with the levels of the base's 4-bit format as ticks along the bottom; for a wider
/// base (`format` not among the levels), nf4's, labelled as a comparison.
export function drawHistogram(el, h, format, old) {
  if (old) old.destroy();
  el.textContent = '';
  const xs = h.counts.map((_, i) => -1 + (2 * i + 1) / h.bins);
  const chosen = h.levels.find((l) => l.format === format) || h.levels[0];
  const peak = Math.max(...h.counts);
  // The levels become extra x positions carrying a marker just above the tallest bar, drawn as points only.
  const countAt = new Map(xs.map((x, i) => [x, h.counts[i]]));
  const levelSet = new Set(chosen.levels);
  const allX = [...new Set([...xs, ...chosen.levels])].sort((a, b) => a - b);
  const data = [allX, allX.map((x) => countAt.get(x) ?? null), allX.map((x) => (levelSet.has(x) ? peak * 1.05 : null))];
  return new uPlot({
    width: widthOf(el),
    height: 200,
    series: [
      { label: 'w / absmax' },
      { label: 'weights', stroke: PALETTE[0], fill: PALETTE[0] + '55', paths: uPlot.paths.bars({ size: [1, Infinity] }), spanGaps: false },
      { label: chosen.format === format ? `${chosen.format} levels` : `${chosen.format} levels (for comparison: ${article(format)} ${format} base has too many to mark)`, stroke: PALETTE[3], width: 0, points: { show: true, size: 7, fill: PALETTE[3] } },
    ],
    scales: { x: { time: false, range: [-1.05, 1.05] } },
    // The weight is named by the select above; the axis label stays short enough for a phone.
    axes: [{ label: 'w / its block\'s absmax' }, { label: 'count' }],
    // A static key: a live one shows "--" until the pointer is over the chart.
    legend: { live: false },
  }, data, el);
}
