// Where training runs and how fast: the backend badge and tagline (GPU through WebGPU, or the processor), the CPU
// executor's cores and instructions in words, and the step-time estimate before Train on the processor.

import { $, send, state } from './page.js';

/// On the CPU executor, the processor's multiply speed at the model's width (for the step-time estimate).
export function measureCpu() {
  if (state.backend !== 'cpu' || !state.config || !state.usable) return;
  const key = { d: state.config.n_embd, rows: speedRows() };
  const asked = state.cpuSpeedAsked;
  if (asked && asked.d === key.d && asked.rows === key.rows) return;
  state.cpuSpeedAsked = key;
  send({ type: 'cpu-speed', ...key });
}

/// The rows of the step's products that the speed is measured at: the batch's tokens, within what one timing needs
/// (of the settings as the engine settled them: a box being typed into may hold nothing yet).
const speedRows = () => Math.min(512, Math.max(8, state.usable.batch * state.usable.seq));

/// Before Train on the CPU executor: how long a step of these settings will take, from the step's matrix products
/// (the engine's count) and the multiply speed measured here. The reader may go on either way; the chart then shows
/// the real time per step.
export function showStepEstimate() {
  const box = $('step-estimate');
  const speed = state.cpuSpeed;
  const acc = state.accounting;
  const s = state.usable;
  // While a box is refused the numbers are its default's: no estimate for settings the reader did not choose.
  box.hidden = !(state.backend === 'cpu' && speed && acc && s && !state.problems.length);
  if (box.hidden) return;
  // Settings that changed the product's shape: time it again (the estimate stays hidden until then).
  if (speed.d !== state.config.n_embd || speed.rows !== speedRows()) {
    box.hidden = true;
    measureCpu();
    return;
  }
  const seconds = acc.step_flops / (speed.gflops * 1e9);
  const time = (x) => (x < 1 ? `${Math.round(x * 1000)} ms` : x < 120 ? `${x.toFixed(1)} s` : `${(x / 60).toFixed(1)} min`);
  box.dataset.seconds = String(seconds);
  box.dataset.flops = String(acc.step_flops);
  box.dataset.gflops = String(speed.gflops);
  box.textContent = `On this processor a step of ${s.batch} × ${s.seq} tokens takes about ${time(seconds)}` +
    ` (${s.steps} steps ≈ ${time(seconds * s.steps)}, plus validation): ${(acc.step_flops / 1e9).toFixed(1)} GFLOP of` +
    ` matrix products at the ${speed.gflops.toFixed(1)} GFLOP/s this tab just measured. An estimate: it counts the` +
    ' matrix products only; layer norms, softmax, GELU, dequantizing a 4-bit base and the optimizer add to it — ms/step' +
    ' in the Loss panel shows the real time.';
}

/// The CPU executor's threads and instructions, in plain words.
export function cpuInWords(cpu) {
  let threads = `It uses ${cpu.threads} of your processor's cores`;
  if (cpu.threads <= 1) {
    // In an iframe, isolation also needs the page around it (its headers, and allow="cross-origin-isolated").
    const why = cpu.threadsWhy && /isolated/.test(cpu.threadsWhy)
      ? (window.self !== window.top ? 'the page this playground is embedded in is not cross-origin isolated, which more cores need'
        : 'this page\'s host does not send the two headers that allow more')
      : cpu.threadsWhy;
    threads = `It uses one core of your processor${why ? ` (${why})` : ''}`;
  }
  let simd = 'and its fused multiply-add instructions.';
  if (!cpu.relaxed) {
    const why = cpu.relaxedWhy === 'this browser has no relaxed SIMD' ? 'this browser offers no fused ones to web pages' : cpu.relaxedWhy;
    simd = `with separate multiply and add instructions${why ? ` (${why})` : ''}.`;
  }
  return `${threads} ${simd}`;
}

/// Where training runs: the link's `backend=cpu` or `backend=webgpu` decides; otherwise a GPU through WebGPU, and the
/// CPU executor where there is no WebGPU or where WebGPU's adapter is itself software on the processor (SwiftShader,
/// lavapipe): emulating a GPU there costs far more than the CPU executor's own loops (a QLoRA step of the shipped model
/// at 1 × 16 tokens: ~0.7 s on SwiftShader in Chromium, 127 ms on lavapipe natively; BENCHMARKS.md, "A step at a few
/// rows on the CPU-emulated GPUs"; the CPU executor's takes milliseconds). A reader who wants to watch WGSL train on
/// such an adapter asks for it with `backend=webgpu`.
export function chooseBackend(gpu, wanted) {
  if (!gpu || !gpu.available || wanted === 'cpu') return 'cpu';
  return gpu.software && wanted !== 'webgpu' ? 'cpu' : 'webgpu';
}

/// Why the page trains on the processor (the notice at start), or null where it trains through WebGPU.
export function whyProcessor(gpu, wanted) {
  if (chooseBackend(gpu, wanted) !== 'cpu') return null;
  if (wanted === 'cpu') return 'Training runs on your processor, as the link asks (backend=cpu).';
  if (!gpu || !gpu.available) {
    const asked = wanted === 'webgpu' ? 'the link asks for WebGPU (backend=webgpu), but ' : '';
    const reason = gpu?.reason ?? 'this browser offers no WebGPU here';
    return `Training runs on your processor, not a graphics card: ${asked}${reason}. That is slower; small batches keep it responsive.`;
  }
  return `Training runs on your processor: this browser's WebGPU is ${gpu.software}, which runs a GPU's work on the ` +
    'processor too, many times slower than training there directly. Add backend=webgpu to the link to train through it anyway.';
}

/// The badge, its tooltip and the tagline say what trains: the GPU through WebGPU, or the CPU executor. `why` says
/// why a run the page meant for WebGPU is on the processor (the device was lost, WebGPU did not start).
export function showBackend(backend, why = null) {
  const badge = $('backend');
  badge.textContent = backend;
  badge.dataset.value = backend;
  const cpu = state.cpu ? cpuInWords(state.cpu) : '';
  // A software WebGPU adapter runs on the processor too: named as what it is, not as "your GPU".
  const soft = state.gpu && state.gpu.available && state.gpu.software;
  const gpu = soft ? `${soft} through WebGPU, which runs on your processor` : 'your GPU through WebGPU';
  badge.title = backend === 'webgpu'
    ? `Training runs on ${gpu}. Evaluation and generation run on the processor: ${cpu}`
    : `Training runs on your processor (wasm). ${cpu}`;
  const wanted = state.page && state.page.backend;
  const meantForGpu = chooseBackend(state.gpu, wanted) === 'webgpu';
  const onProcessor = wanted === 'cpu' ? 'as the link asks'
    : meantForGpu ? why ?? 'WebGPU did not start'
      : soft ? `faster than this browser's WebGPU, ${soft}` : 'no WebGPU here';
  $('tagline-where').textContent = backend === 'webgpu'
    ? (soft ? ` — through WebGPU (${soft}, on your processor)` : ' — on your GPU (WebGPU)')
    : ` — on your processor (${onProcessor})`;
}
