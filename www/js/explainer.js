// The explainer under the base controls: what LoRA, QLoRA, the chosen base format and double quantization are, with
// the bits per weight the engine computes for each format.

import { dqApplies, formatInfo } from './controls.js';
import { $, state } from './page.js';
import { el } from './views.js';

/// What LoRA, QLoRA, the chosen base format and double quantization are, with this model's numbers.
export function renderBaseExplainer(s) {
  const box = $('base-explainer');
  if (!state.formats) return;
  const { block, nested_block: nested } = state.formats;
  const info = formatInfo(s.method === 'full' ? 'fp32' : s.format);
  const nf4 = formatInfo('nf4');
  const bits = (b) => b.toFixed(3).replace(/\.?0+$/, '');
  const lines = [];
  if (s.method === 'full') {
    lines.push('Full fine-tuning trains every weight in fp32: 32 bits per weight, plus a gradient and two AdamW moments each.');
  } else if (s.method === 'lora') {
    lines.push(`LoRA: the base W₀ stays frozen in ${info.name} (${bits(info.bits)} bits per weight); only the thin B and A train, in fp32.`);
  } else {
    lines.push(`QLoRA: the frozen base is stored quantized (${info.name}: ${bits(s.dq && info.bits_dq ? info.bits_dq : info.bits)} bits per weight) ` +
      'and dequantized block by block for each product; B and A train in fp32 through it.');
    // The paper's QLoRA is one recipe; the page names LoRA over any quantized base QLoRA, and says so.
    lines.push(s.format === 'nf4' && s.dq
      ? 'This is the QLoRA paper\'s base (nf4 with double quantization); the paper computes in bf16 and keeps B and A in bf16, while this page keeps both in fp32.'
      : 'The QLoRA paper\'s base is nf4 with double quantization; this page calls LoRA over any quantized base QLoRA, to compare formats.');
  }
  if (s.method !== 'full' && ['nf4', 'fp4', 'int4', 'int8'].includes(info.name)) {
    const what = {
      nf4: `NF4 (4-bit NormalFloat) keeps one of 16 levels per weight, placed at the quantiles of a normal distribution — where trained weights cluster — scaled by the largest magnitude (absmax) of its block of ${block} weights`,
      fp4: `FP4 keeps a 4-bit float per weight (sign, exponent, mantissa), scaled by the absmax of its block of ${block} weights`,
      int4: `INT4 keeps one of 15 evenly spaced levels per weight (−7…7, symmetric about zero), scaled by the absmax of its block of ${block} weights`,
      int8: `INT8 keeps one of 255 evenly spaced levels per weight, scaled by the absmax of its block of ${block} weights`,
    }[info.name];
    lines.push(`${what}: ${bits(info.bits)} bits per weight with its fp32 absmax.`);
  }
  if (nf4 && nf4.bits_dq) {
    lines.push(`Double quantization stores those absmax constants in 8 bits too (their mean subtracted first, then bitsandbytes' 8-bit dynamic code), with one fp32 constant per ${nested} of them: ` +
      `NF4 goes from ${bits(nf4.bits)} to ${bits(nf4.bits_dq)} bits per weight.${dqApplies(s.method, s.format) ? '' : ' It applies to fp4 and nf4 only.'}`);
  }
  box.replaceChildren(...lines.map((t) => el('p', {}, t)));
}
