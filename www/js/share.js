// Page options from the link (embed, hidden controls, forced backend) and copying the link, the iframe code and the
// PEFT snippet.

import { showNotice, state } from './page.js';

export function applyPageOptions() {
  document.body.classList.toggle('embed', state.page.embed);
  for (const name of state.page.hide) {
    for (const node of document.querySelectorAll(`[data-control="${name}"]`)) node.hidden = true;
  }
}

/// The page options of this link (embed, hidden controls, forced backend), appended to the settings' query. Copied
/// from an embed as a plain link, the page is a full one again: the controls the embed hid come back with it (a full
/// page's own `hide=` is kept).
export function pageQuery(embed = state.page.embed) {
  const p = state.page;
  const model = state.modelName !== 'shakespeare' ? `&model=${state.modelName}` : '';
  const hide = p.hide.length && (embed || !p.embed) ? `&hide=${p.hide.join(',')}` : '';
  return `${model}${embed ? '&embed=1' : ''}${hide}${p.backend ? `&backend=${p.backend}` : ''}`;
}

export function shareUrl(embed) {
  return `${location.origin}${location.pathname}?${state.query}${pageQuery(embed)}`;
}

export async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.dataset.copied = text;
    const label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label; }, 1200);
  } catch {
    // Clipboard refused (permissions, insecure context): show the text so it can be copied by hand.
    button.dataset.copied = text;
    showNotice(text);
  }
}
