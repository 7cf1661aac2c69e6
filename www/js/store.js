// The run kept in this browser (IndexedDB): one record, overwritten by every autosave, read back after a reload or a
// crash. The worker is the only writer. A record is
//   {savedAt, runId, step, settings, history, state: Uint8Array (state.safetensors), text: string | null}.
// Every failure (no IndexedDB, a full quota, a blocked database) rejects with an Error whose message says what the
// browser refused, so the page can show it.

const DB = 'qlora-playground';
const STORE = 'runs';
const KEY = 'autosave';

let opening = null;

function open() {
  if (!self.indexedDB) return Promise.reject(new Error('this browser offers no IndexedDB here'));
  opening = opening || new Promise((resolve, reject) => {
    const req = self.indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('the saved-runs database is blocked by another tab'));
  });
  // A failed open is retried on the next call rather than remembered.
  opening.catch(() => { opening = null; });
  return opening;
}

/// One request in its own transaction; resolves when the transaction has committed (not merely when the request
/// succeeded: a quota error can surface at commit).
async function transact(mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error || req.error);
    tx.onabort = () => reject(tx.error || new Error('the browser aborted the write'));
  });
}

const describe = (e) => (e && e.name ? `${e.name}: ${e.message}` : String(e));
const failure = (what) => (e) => { throw new Error(`${what} (${describe(e)})`); };

export function saveRun(record) {
  return transact('readwrite', (s) => s.put(record, KEY)).catch(failure('the browser refused to store the run'));
}

export function loadRun() {
  return transact('readonly', (s) => s.get(KEY)).then((r) => r || null).catch(failure('the saved run cannot be read'));
}

export function discardRun() {
  return transact('readwrite', (s) => s.delete(KEY)).catch(failure('the saved run cannot be deleted'));
}
