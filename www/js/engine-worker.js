// Starts the engine's worker (worker.js) for a page, and replaces it when its threaded engine never finishes starting.
//
// Why: in Firefox (ESR 153, headless, 2 cores) the thread pool of the threaded engine now and then never finishes
// starting — seen about once in ten starts when several run one after another — and the worker is then blocked
// inside the start, so no timer of its own can fire. The worker says when it begins and ends that start
// ('threads-starting', 'threads-settled'); a start that takes longer than THREAD_START_MS (it takes ~0.1 s) makes
// the page terminate that worker and try the threaded engine again in a new one, since the hang is passing: each
// start hangs or not on its own, so THREAD_START_TRIES starts all hang about once in a thousand page loads. Only
// then does the page start the single-threaded engine, whose CPU notice says why.

/// How long the thread pool may take to start (50 times what it takes). Compiling the module comes before and is
/// not counted.
export const THREAD_START_MS = 5000;
/// How many threaded starts the page tries before it settles for one thread.
export const THREAD_START_TRIES = 3;

/// Starts a worker and sends it `init` (`init.engine` may ask for builds). `onMessage(m)` gets every message but the
/// two about the thread start; `onWorker(worker)` is told each worker started (the first, and a replacement).
export function startEngineWorker(init, { onMessage, onError, onWorker = () => {} }) {
  let watchdog = null;
  let hangs = 0;
  const start = (message) => {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    handle.worker = worker;
    onWorker(worker);
    worker.onmessage = ({ data: m }) => {
      if (m.type === 'threads-starting') {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          worker.terminate();
          hangs += 1;
          const engine = { ...message.engine, stallThreadStart: lessStall(message.engine?.stallThreadStart) };
          if (hangs < THREAD_START_TRIES) {
            start({ ...message, engine });
          } else {
            const why = `its thread pool did not start within ${THREAD_START_MS / 1000} s, ${hangs} times`;
            start({ ...message, engine: { ...engine, threads: false, threadsWhy: `the threaded engine failed to start (${why})` } });
          }
        }, THREAD_START_MS);
      } else if (m.type === 'threads-settled') {
        clearTimeout(watchdog);
      } else {
        onMessage(m);
      }
    };
    worker.onerror = onError;
    worker.postMessage(message);
  };
  const handle = { worker: null, post: (msg, transfer) => handle.worker.postMessage(msg, transfer || []) };
  start(init);
  return handle;
}

/// The tests' hook `stallThreadStart` (worker.js): `true` blocks every start, a number blocks that many starts.
function lessStall(stall) {
  return typeof stall === 'number' ? Math.max(0, stall - 1) : stall;
}
