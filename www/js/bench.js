// The browser benchmark (bench.html): the playground's worker trains the shipped model (or, with model=gpt2, a
// random GPT-2 it makes) for a few steps per configuration; the medians go to a table and, as JSON, to #bench-json
// (read by bench/page-bench.mjs).
import { startEngineWorker } from './engine-worker.js';
import { el } from './views.js';

const params = new URLSearchParams(location.search);
const int = (name, fallback, max) => {
  const v = Number(params.get(name) ?? fallback);
  if (!Number.isInteger(v) || v < 1 || v > max) throw new Error(`${name} must be a whole number from 1 to ${max}`);
  return v;
};
const CONFIGS = [
  { method: 'lora', format: 'fp32', dq: false },
  { method: 'qlora', format: 'nf4', dq: false },
  { method: 'full', format: 'fp32', dq: false },
];
/// model=gpt2 (or distilgpt2): a randomly initialised model of that shape, made in the worker, with the configurations
/// `bench/side-by-side.sh --shapes gpt2` runs natively: LoRA r 8 on c_attn over an fp32 base, and QLoRA r 8 with an
/// nf4 + double-quantized base on every block linear (α = r, as there).
const GPT2_CONFIGS = [
  { method: 'lora', format: 'fp32', dq: false, targets: ['qkv'], r: 8, alpha: 8 },
  { method: 'qlora', format: 'nf4', dq: true, targets: ['qkv', 'o', 'fc', 'proj'], r: 8, alpha: 8 },
];
const MODELS = ['shakespeare', 'gpt2', 'distilgpt2'];
const WARMUP = 2;

/// The playground's worker with the engine build `engine` asks for, started once for the whole benchmark: each
/// configuration is a new run in it, as Train after Train is on the page. (One worker per configuration, terminated
/// after its steps, made headless Firefox ESR 153 hang starting the next one's thread pool about once in ten;
/// engine-worker.js replaces a worker whose pool never starts.)
class Engine {
  static start(engine) {
    const e = new Engine();
    e.handle = startEngineWorker({ type: 'init', query: '', engine, keepRuns: false }, {
      onMessage: (m) => {
        if (m.type === 'error') e.fail(new Error(`${m.during}: ${m.message}`));
        else e.onMessage?.(m);
      },
      onError: (ev) => e.fail(new Error(ev.message || 'the worker failed')),
    });
    // Its throwaway runs are neither saved nor restored (keepRuns: false): the reader's kept run stays.
    return e.expect((m, finish) => { if (m.type === 'init') finish(m.cpu); }).then((cpu) => { e.cpu = cpu; return e; });
  }

  /// Hands the worker's messages to `onMessage(m, finish)` until `finish(value)` resolves with `value`; an error
  /// from the worker rejects (one that came while nothing was waiting rejects the next wait).
  expect(onMessage) {
    return new Promise((resolve, reject) => {
      if (this.failure) { reject(this.failure); return; }
      this.settle = (error, value) => {
        this.onMessage = null;
        this.settle = null;
        if (error) reject(error);
        else resolve(value);
      };
      this.onMessage = (m) => onMessage(m, (value) => this.settle(null, value));
    });
  }

  fail(error) {
    if (this.settle) this.settle(error);
    else this.failure = error;
  }

  /// Posts `message`, then as `expect`.
  request(message, onMessage) {
    const answer = this.expect(onMessage);
    this.handle.post(message);
    return answer;
  }

  close() { this.handle.worker.terminate(); }
}

/// The CPU executor's SIMD as the tables name it.
const simdName = (cpu) => (cpu.relaxed ? 'relaxed' : 'simd128');

/// Runs one configuration to its end; resolves with the backend and the step times.
function measure(engine, settings, preferGpu) {
  const ms = [];
  let backend = null;
  return engine.request({ type: 'start', settings, preferGpu }, (m, finish) => {
    if (m.type === 'started') backend = m.backend;
    else if (m.type === 'step') ms.push(m.ms);
    else if (m.type === 'done') finish({ backend, cpu: engine.cpu, ms });
  });
}

/// Times the CPU executor's matrix multiply (the build and threads training gets).
function measureMatmul(engine) {
  return engine.request({ type: 'matmul' }, (m, finish) => {
    if (m.type === 'matmul') finish(m);
  });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function main() {
  const model = params.get('model') ?? 'shakespeare';
  if (!MODELS.includes(model)) throw new Error(`model must be one of ${MODELS.join(', ')}, not ${model}`);
  const shipped = model === 'shakespeare';
  // GPT-2's defaults are issue 21's native comparison (4 × 128); its steps take seconds on the CPU, so fewer.
  const steps = int('steps', shipped ? 10 : 3, 1000);
  const batch = int('batch', shipped ? 8 : 4, 64);
  const seq = int('seq', shipped ? 64 : 128, 256);
  const backends = (params.get('backends') ?? (shipped ? 'webgpu,cpu' : 'cpu')).split(',');
  // simd=plain measures the engine build without relaxed SIMD, to compare (the default: relaxed where the browser has it).
  const simd = params.get('simd') ?? 'relaxed';
  if (simd !== 'relaxed' && simd !== 'plain') throw new Error(`simd must be relaxed or plain, not ${simd}`);
  const status = document.getElementById('bench-status');
  const results = [];
  const engine = await Engine.start({ relaxed: simd === 'relaxed' });
  if (!shipped) {
    status.textContent = `making a random ${model}…`;
    await engine.request({ type: 'random-model', preset: model }, (m, finish) => { if (m.type === 'loaded') finish(m); });
  }
  for (const backend of backends) {
    if (backend !== 'cpu' && backend !== 'webgpu') throw new Error(`unknown backend ${backend}; backends are webgpu, cpu`);
    if (backend === 'webgpu' && !navigator.gpu) { status.textContent = 'no WebGPU in this browser: CPU only'; continue; }
    for (const c of shipped ? CONFIGS : GPT2_CONFIGS) {
      status.textContent = `measuring ${model} on ${backend}: ${c.method} ${c.format}…`;
      const settings = { ...c, steps: steps + WARMUP, batch, seq, task: 'hamlet' };
      const r = await measure(engine, settings, backend === 'webgpu');
      if (r.backend !== backend) { status.textContent = `${backend} unavailable here (the run used ${r.backend})`; break; }
      const med = median(r.ms.slice(WARMUP));
      // The CPU executor's threads and SIMD (the page's fallback; on WebGPU it only evaluates).
      const cpuSimd = simdName(r.cpu);
      const row = { model, backend, ...c, batch, seq, steps, cpu_threads: r.cpu.threads, cpu_simd: cpuSimd, ms_per_step: med, tokens_per_s: (batch * seq * 1000) / med };
      results.push(row);
      document.getElementById('bench-rows').append(el('tr', {}, el('td', {}, model), el('td', {}, backend), el('td', {}, String(r.cpu.threads)),
        el('td', {}, cpuSimd), el('td', {}, c.method), el('td', {}, `${c.format}${c.dq ? ' + dq' : ''}`), el('td', {}, `${batch} × ${seq}`), el('td', {}, med.toFixed(1)),
        el('td', {}, row.tokens_per_s.toFixed(0)), el('td', {}, String(steps))));
    }
  }
  const matmul = [];
  let matmulPeak = null;
  // The multiply table is the shipped model's products: a GPT-2 run measures steps only and shows no such table.
  document.getElementById('matmul-section').hidden = !shipped;
  if (backends.includes('cpu') && shipped) {
    status.textContent = 'measuring the CPU matrix multiply…';
    const { peak, results: products, cpu } = await measureMatmul(engine);
    const cpuSimd = simdName(cpu);
    const show = (row, shape, threads) => document.getElementById('matmul-rows').append(el('tr', {}, el('td', {}, row.name),
      el('td', {}, shape), el('td', {}, String(threads)), el('td', {}, cpuSimd), el('td', {}, row.gflops.toFixed(1)),
      el('td', {}, `${(row.gflops / peak).toFixed(2)}×`)));
    show({ name: 'multiply-add peak', gflops: peak }, '12 chains × 4 lanes', 1);
    for (const p of products) {
      const row = { name: p.name, m: p.m, k: p.k, n: p.n, transpose_b: p.transposeB, cpu_threads: cpu.threads, cpu_simd: cpuSimd, gflops: p.gflops };
      matmul.push(row);
      show(row, `${p.m} × ${p.k} × ${p.n}`, cpu.threads);
    }
    matmulPeak = { gflops: peak, cpu_simd: cpuSimd };
  }
  engine.close();
  document.getElementById('bench-json').textContent = JSON.stringify({ userAgent: navigator.userAgent, results, matmul, madd_peak: matmulPeak }, null, 1);
  status.textContent = 'done';
  document.body.dataset.bench = 'done';
}

main().catch((e) => {
  const box = document.getElementById('error');
  box.textContent = e.message;
  box.hidden = false;
  document.body.dataset.bench = 'failed';
});
