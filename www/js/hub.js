// Hub models in the browser's Cache Storage: downloaded on the reader's click (never before), with the progress of
// the whole download, kept for the next visit, listed and deleted. The engine's worker reads them from the same
// cache (worker.js), a file at a time as a Blob, so nothing is held twice in memory.
//
// A response is stored only once its body has arrived whole (Cache.put resolves after the last byte, and stores
// nothing when the stream fails), so an interrupted download never leaves a corrupt entry: the next Load fetches
// what is missing again from the beginning, and says so.

import { HUB_FILES, MODEL_CACHE, MODELS, hubUrl } from './models.js';

/// Which of a hub model's files are in the cache, and their bytes.
export async function cachedFiles(name) {
  const cache = await caches.open(MODEL_CACHE);
  const files = {};
  for (const file of HUB_FILES) {
    const res = await cache.match(hubUrl(MODELS[name].repo, file));
    if (res) files[file] = Number(res.headers.get('Content-Length')) || (await res.clone().blob()).size;
  }
  const bytes = Object.values(files).reduce((a, b) => a + b, 0);
  return { complete: Object.keys(files).length === HUB_FILES.length, files, bytes };
}

/// Every hub model with files in the cache: [{name, bytes, complete}].
export async function cachedModels() {
  if (!self.caches) return [];
  const out = [];
  for (const name of Object.keys(MODELS)) {
    if (!MODELS[name].repo) continue;
    const c = await cachedFiles(name);
    if (Object.keys(c.files).length) out.push({ name, bytes: c.bytes, complete: c.complete });
  }
  return out;
}

export async function deleteCached(name) {
  const cache = await caches.open(MODEL_CACHE);
  for (const file of HUB_FILES) await cache.delete(hubUrl(MODELS[name].repo, file));
}

/// Milliseconds without a byte after which a download is abandoned.
const STALL_MS = 60000;

/// Why a download failed, in one sentence that names the file.
class DownloadError extends Error {}

/// Downloads the files of hub model `name` that are not cached yet into the cache, reporting
/// `onProgress({loaded, total})` over all of them. Resolves with {downloaded}: the bytes fetched (0 when every file
/// was cached already).
export async function download(name, onProgress) {
  if (!self.caches) throw new DownloadError('this browser offers no Cache Storage here, so a hub model cannot be kept');
  const { repo } = MODELS[name];
  const cache = await caches.open(MODEL_CACHE);
  // A connection that stops sending without closing would leave the bar still for minutes: after STALL_MS without a
  // byte the download is abandoned, and says so.
  const stall = new AbortController();
  let lastByte = Date.now();
  const watchdog = setInterval(() => { if (Date.now() - lastByte > STALL_MS) stall.abort(); }, 1000);
  try {
    return await fetchAll();
  } catch (e) {
    if (stall.signal.aborted) {
      throw new DownloadError(`the download stalled (no data for ${STALL_MS / 1000} s); nothing partial was kept, and Load fetches what is missing again from the start`);
    }
    throw e;
  } finally {
    clearInterval(watchdog);
  }

  async function fetchAll() {
    const missing = [];
    for (const file of HUB_FILES) if (!(await cache.match(hubUrl(repo, file)))) missing.push(file);
    // Every response's headers first, so the bar shows the whole download's size from the start.
    const responses = await Promise.all(missing.map(async (file) => {
      let res;
      try {
        res = await fetch(hubUrl(repo, file), { mode: 'cors', credentials: 'omit', signal: stall.signal });
      } catch (e) {
        throw new DownloadError(`cannot reach the Hugging Face hub for ${file} (${e.message || e}); check the connection and press Load again, or load the files from your disk with "Your own GPT-2 files…" in the model picker`);
      }
      if (!res.ok) throw new DownloadError(`the Hugging Face hub answered HTTP ${res.status} for ${repo}/${file}`);
      return { file, res, total: Number(res.headers.get('Content-Length')) || 0 };
    }));
    const total = responses.reduce((a, r) => a + r.total, 0);
    let loaded = 0;
    onProgress({ loaded, total });
    await Promise.all(responses.map(async ({ file, res, total: expected }) => {
      let got = 0;
      let cut = null;
      const counted = res.body.pipeThrough(new TransformStream({
        transform(chunk, out) {
          lastByte = Date.now();
          got += chunk.byteLength;
          loaded += chunk.byteLength;
          onProgress({ loaded, total });
          out.enqueue(chunk);
        },
        flush() {
          // A body cut short without an error from the network still must not be kept.
          if (expected && got !== expected) {
            cut = new DownloadError(`the download of ${file} ended after ${got} of its ${expected} bytes; nothing partial was kept, and Load fetches it again from the start`);
            throw cut;
          }
        },
      }));
      const headers = { 'Content-Type': res.headers.get('Content-Type') || 'application/octet-stream' };
      if (expected) headers['Content-Length'] = String(expected);
      try {
        await cache.put(hubUrl(repo, file), new Response(counted, { headers }));
      } catch (e) {
        if (cut) throw cut;
        if (e && e.name === 'QuotaExceededError') {
          throw new DownloadError(`the browser refused to store ${file} (its storage quota for this page is full); delete a cached model or free space, then press Load again`);
        }
        throw new DownloadError(`the download of ${file} stopped at ${got} of ${expected || '?'} bytes (${e.message || e}); nothing partial was kept, and Load fetches it again from the start`);
      }
    }));
    return { downloaded: loaded };
  }
}
