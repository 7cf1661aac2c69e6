// The reader's own training text: pasted, chosen or dropped; the bytes go to the worker, which checks them in Rust.

import { followTask } from './controls.js';
import { $, clearError, send, state } from './page.js';

/// Sends the text's bytes to the worker, which checks them (UTF-8, size).
export function sendUserText(bytes) {
  clearError();
  // The worker handles requests in order, so a Train after this uses this text (or reports why it could not).
  state.userTextSent = true;
  send({ type: 'text', bytes }, [bytes]);
}

/// A chosen or dropped file: shown in the box (the prompt follows it) and sent.
export function showDroppedText(bytes) {
  $('user-text').value = new TextDecoder().decode(bytes.slice(0, 1 << 20));
  followTask('text');
  sendUserText(bytes);
}
