// Generation: the base and the tuned model side by side from the prompt, with its boxes checked where they are.

import { $, clearError, send, state } from './page.js';
import { ensureModel } from './training.js';
import { el } from './views.js';

export function generationEnded() {
  $('generate').disabled = false;
  $('stop-generate').hidden = true;
}

/// The generation boxes as numbers within their own min and max, or null after naming the first bad one below them
/// (the engine checks the same bounds; this keeps its message at the box instead of the page's error bar).
function readGeneration() {
  for (const old of document.querySelectorAll('.gen-error')) old.remove();
  for (const node of document.querySelectorAll('.gen-controls [data-invalid]')) delete node.dataset.invalid;
  const out = {};
  for (const [id, name] of [['gen-tokens', 'tokens'], ['temperature', 'temperature'], ['top-k', 'top-k']]) {
    const box = $(id);
    const raw = box.value.trim();
    const v = Number(raw);
    const [lo, hi, whole] = [Number(box.min), Number(box.max), box.step === '1'];
    if (raw === '' || !Number.isFinite(v) || v < lo || v > hi || (whole && !Number.isInteger(v))) {
      box.closest('label').dataset.invalid = 'true';
      $('gen-controls').after(el('p', { className: 'field-error gen-error', role: 'alert', 'data-testid': 'field-error', 'data-for': id,
        textContent: `${name} must be ${whole ? 'a whole number' : 'a number'} between ${lo} and ${hi} (${box.validity.badInput ? 'not a number' : raw === '' ? 'the box is empty' : `got ${raw}`})` }));
      return null;
    }
    out[id] = v;
  }
  return out;
}

/// Generate: the base and the tuned model side by side, from the prompt, once the boxes hold usable numbers.
export function startGeneration() {
  clearError();
  const asked = readGeneration();
  if (!asked) {
    // The last generation's "stopped at n tokens" is old news beside the box's message.
    $('gen-progress').textContent = '';
    return;
  }
  ensureModel();
  $('generate').disabled = true;
  $('stop-generate').hidden = false;
  $('gen-progress').textContent = '';
  $('gen-progress').dataset.done = '0';
  send({
    type: 'generate',
    prompt: $('prompt').value,
    tokens: asked['gen-tokens'],
    temperature: asked.temperature,
    topK: asked['top-k'],
    seed: state.usable ? state.usable.seed : 0,
  });
}
