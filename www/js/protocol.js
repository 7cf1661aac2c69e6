// The messages between the page (main.js and its modules) and the engine's worker (worker.js). Requests carry `type`
// and go page → worker; replies and events go worker → page. Settings are the Rust `run::settings::Settings` struct as a
// plain object (serde-wasm-bindgen), so both sides agree on every field name.
//
// page → worker
//   {type:'init', query, engine, keepRuns}     load wasm and config.json; read the URL query; engine: optional
//                                              {relaxed: false} asks for plain SIMD (the benchmark page's simd=plain);
//                                              keepRuns: false neither reads nor writes the kept run (the benchmark
//                                              page's throwaway runs must not replace the reader's)
//   {type:'account', settings, seq}            counts, memory, scale-up, snippet for settings (answered at once;
//                                              seq is echoed)
//   {type:'load'}                              load the model's weights: the built-in model from this site (progress
//                                              events), a hub model from Cache Storage (hub.js downloaded it)
//   {type:'files', files}                      the reader's own GPT-2 directory (File objects); read here, never sent
//   {type:'cpu-speed', d, rows}                time the CPU executor's multiply at width d over `rows` rows (the step estimate)
//   {type:'text', bytes}                       the user's own text (ArrayBuffer); checked in Rust
//   {type:'start', settings, preferGpu}        new run, then steps stream until done or paused
//   {type:'pause'} / {type:'resume'} / {type:'reset'}
//   {type:'generate', prompt, tokens, temperature, topK, seed}
//   {type:'histogram', layer, linear}          a base weight against the 4-bit levels
//   {type:'matmul'}                            the benchmark page: time the CPU executor's matrix multiply
//   {type:'random-model', preset}              the benchmark page: a random model of a published shape (gpt2,
//                                              distilgpt2) made here; answered with 'loaded'
//   {type:'save'}                              autosave now (the page is hiding or closing)
//   {type:'restore', preferGpu} / {type:'discard'}   the run saved in this browser (IndexedDB, store.js)
//   {type:'export'}                            the run as a zip (web::archive); {type:'import', bytes, preferGpu}
//   {type:'inject-nan'}                        test hook: the next step diverges (the engine restores and reports)
//   {type:'lose-device'}                       test hook: the run's GPU device is destroyed
//   {type:'abort-engine'}                      test hook: the engine aborts (a trap, as when memory runs out)
// worker → page
//   {type:'init', parsed:{settings, page, errors}, defaults, config, modelBytes, gpu, saved, storage, cpu, formats}
//                                              formats: {formats:[{name, quantized, double_quant, method, bits,
//                                              bits_dq}], block, nested_block} (web::api::base_formats)
//                                              saved: {savedAt, runId, step, settings, model} of a kept run, or null; storage: why
//                                              runs cannot be kept here, or null; cpu: {threads, threadsWhy, relaxed,
//                                              relaxedWhy} of the CPU executor (…Why: why one thread only / plain
//                                              SIMD, else null)
//   {type:'account', accounting, query, snippet, problems, loadProblem, runProblem, seq}   problems:
//                                              [{field, message}], each faulty setting (named as in the link); the
//                                              numbers use its default meanwhile; loadProblem: why the model, not
//                                              loaded yet, would not fit the tab with its base kept as these settings
//                                              keep it (else null); runProblem: why a run of these settings would not
//                                              fit beside the base (as loaded, or as they would load it), else null
//   {type:'init', …, model}                    model: the name the link chose (models.js; 'shakespeare' by default)
//   {type:'progress', loaded, total} · {type:'loaded', info, memoryBytes}   info: {n_layer, n_head, n_embd,
//                                              n_positions, vocab_size, params, storage, bytes} (storage: the loaded
//                                              base's format, "fp32", "nf4+dq"…; bytes: its weights'); memoryBytes: the engine's wasm memory
//                                              after loading (its peak so far; it never shrinks)
//   {type:'model', config, formats, ignored}   the loaded model brought its own config.json: every view follows it;
//                                              ignored: the reader's files that are not part of a GPT-2 directory
//   {type:'cpu-speed', d, rows, gflops}        the multiply speed measured at width d over `rows` rows
//   {type:'text', bytes}
//   {type:'started', runId, backend, notice, trainable, measured, memoryBytes}   memoryBytes: the engine's wasm memory once the run is made
//   {type:'fallback', backend, notice, step, measured}   the GPU device was lost: the run is back at `step` on the CPU
//   {type:'step', step, loss, lr, grad_norm, tokens, ms}   ms: time since the last result when the GPU had this
//                                              step in flight already, else since it was asked for · {type:'val', step, val_loss, accuracy, val_loss_adapter_rounded}
//   {type:'done', spectra} · {type:'paused'} · {type:'resumed'} · {type:'reset'}
//   {type:'restored', source:'autosave'|'file', savedAt, runId, settings, step, finished, history:{steps, vals},
//    backend, notice, trainable, measured}     a saved or imported run, stopped: the page offers Resume
//   {type:'saved', step} · {type:'discarded'} · {type:'exported', bytes, name}
//   {type:'generated', base, tuned} · {type:'histogram', histogram}
//   {type:'matmul', peak, results:[{name,m,k,n,transposeB,gflops}], cpu}   GFLOP/s: medians of five timed calls
//                                              after a warm-up; peak: the multiply-add ceiling (cpuMaddPeak)
//   {type:'error', during, message}
//   {type:'stopped', during, message}          the engine trapped (out of memory, or a bug) and cannot go on: every
//                                              later request is answered so; the page offers a reload

/// The frozen base of a run's settings, as the engine labels it (quant::Storage::label): "nf4+dq", "int4", "fp32"
/// (full fine-tuning trains fp32 weights). The one place the page and the worker spell it.
export function storageLabel(s) {
  return s.method === 'full' ? 'fp32' : `${s.format}${s.dq ? '+dq' : ''}`;
}

/// "a" or "an" before a format's name as it is read aloud: an fp16, an nf4, an int4, but a bf16 (the engine's
/// messages, run/settings.rs, follow the same rule).
export function article(format) {
  return format.startsWith('bf') ? 'a' : 'an';
}
