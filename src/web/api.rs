//! The wasm-bindgen API the page's Web Worker calls. Thin: every method converts between JavaScript values
//! (serde-wasm-bindgen) and the Rust types of [`crate::run`] and `web`, and turns errors into JavaScript `Error`s whose message
//! the page shows in its error area. Calls are awaited one at a time by the worker.

use super::accounts::{accounting_of, check_memory_budget, check_model_fits, run_budget_on, run_fit_problem};
use super::archive::{export_run, read_archive};
use super::inspect::{adapter_spectra, weight_histogram};
use super::link::parse_query;
use super::snippet::peft_snippet;
use crate::cpu::{products, Generation};
use crate::gpu::Gpu;
use crate::model::{load_model_bytes, Gpt2, Linear, ModelConfig, SafetensorsSource, TensorId};
use crate::quant::{Format, Storage};
use crate::run::pool::on_pool;
use crate::run::settings::method_for_format;
use crate::run::{Checkpoint, Problem, Run, RunSpec, Settings, MAX_GENERATED};
use crate::tokenizer::{Bpe, Tokenizer, TokenizerFiles};
use crate::train::Sampling;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// Largest user text the page trains on (bytes): more is slow to split and never needed for a demo.
pub const MAX_USER_TEXT: usize = 16 << 20;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The threaded build only (feature `threads`): starts rayon's pool on `n` Web Workers sharing the module's memory,
/// as `initThreadPool(n)`; the page's worker awaits it before anything trains.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threads the CPU executor computes on: rayon's pool, 1 in the single-threaded build.
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    rayon::current_num_threads()
}

/// The benchmark page's matrix-multiply measurement (bench.html): `reps` products C[m×n] = A[m×k]·B on the CPU
/// executor's multiply — this build's kernel, SIMD and threads — with B given transposed when `transpose_b`, as the
/// model's weights are. Returns the sum of C, so that the work is observable; the page times the call.
#[wasm_bindgen(js_name = cpuMatmul)]
pub fn cpu_matmul(m: usize, k: usize, n: usize, transpose_b: bool, reps: usize) -> Result<f32, JsError> {
    const MAX_SIDE: usize = 4096;
    const MAX_REPS: usize = 100_000;
    if [m, k, n].iter().any(|&d| d == 0 || d > MAX_SIDE) || reps == 0 || reps > MAX_REPS {
        return Err(JsError::new(&format!(
            "a benchmark product's sides are 1 to {MAX_SIDE} and its repetitions 1 to {MAX_REPS}, not {m}×{k}×{n} × {reps}"
        )));
    }
    // On the pool, as a training step multiplies (`on_pool`).
    Ok(on_pool(|| products::multiply_repeatedly(m, k, n, transpose_b, reps)))
}

/// The multiply's ceiling in this build (bench.html): `rounds` rounds of independent f32x4 multiply-adds in registers,
/// as the micro-kernel issues them. Returns the floating-point operations done; the page times the call.
#[wasm_bindgen(js_name = cpuMaddPeak)]
pub fn cpu_madd_peak(rounds: usize) -> Result<f64, JsError> {
    const MAX_ROUNDS: usize = 1 << 30;
    if rounds == 0 || rounds > MAX_ROUNDS {
        return Err(JsError::new(&format!("the multiply-add peak runs 1 to {MAX_ROUNDS} rounds, not {rounds}")));
    }
    std::hint::black_box(products::madd_peak(rounds));
    Ok((rounds * products::PEAK_CHAINS * 8) as f64)
}

/// The training step's products that bench.html times (the list `qlora bench --matmul --backend cpu` times natively).
#[wasm_bindgen(js_name = cpuMatmulProducts)]
pub fn cpu_matmul_products() -> Result<JsValue, JsError> {
    to_js(&products::STEP_PRODUCTS)
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsError::new(&e.to_string()))
}

fn settings_from(v: JsValue) -> Result<Settings, JsError> {
    serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("settings: {e}")))
}

fn err(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

#[derive(Serialize)]
struct ModelInfo {
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    n_positions: usize,
    vocab_size: usize,
    params: usize,
    /// How the loaded base keeps its block linear weights ("fp32", "nf4+dq"...): what "base" text comes from before a
    /// run is made.
    storage: String,
    /// Bytes of the loaded base's weights, which a run that does not share them has beside it.
    bytes: f64,
}

#[derive(Serialize)]
struct Started {
    backend: &'static str,
    /// Why the CPU executor runs, when it does.
    notice: Option<String>,
    trainable: usize,
    measured: Option<Vec<(String, u64)>>,
    /// Chance and the majority answer's score, beside accuracy (tasks only).
    baseline: Option<crate::data::tasks::Baseline>,
}

/// A run continued from a saved state: where it starts, and the `run.json` of an imported archive (the page's
/// history of it), if there was one.
#[derive(Serialize)]
struct Resumed {
    #[serde(flatten)]
    started: Started,
    step: usize,
    settings: Settings,
    run_json: Option<String>,
}

#[derive(Serialize)]
struct Step {
    step: usize,
    loss: f64,
    lr: f32,
    grad_norm: f32,
    tokens: usize,
}

fn too_long(bytes: usize) -> JsError {
    JsError::new(&format!("the text is {bytes} bytes; the playground takes at most {} MiB", MAX_USER_TEXT >> 20))
}

/// The reader's text is at most [`MAX_USER_TEXT`] bytes and not blank.
fn check_user_text(text: &str) -> Result<(), JsError> {
    if text.len() > MAX_USER_TEXT {
        return Err(too_long(text.len()));
    }
    if text.trim().is_empty() {
        return Err(JsError::new("the text is empty"));
    }
    Ok(())
}

/// Checked sampling settings for a generation of `tokens` tokens.
fn sampling(tokens: usize, temperature: f32, top_k: usize, seed: u32) -> Result<Sampling, JsError> {
    if tokens > MAX_GENERATED {
        return Err(JsError::new(&format!("at most {MAX_GENERATED} tokens per generation (asked for {tokens})")));
    }
    if !(temperature.is_finite() && (0.0..=5.0).contains(&temperature)) {
        return Err(JsError::new("temperature must be between 0 and 5"));
    }
    Ok(Sampling { temperature, top_k, seed: seed as u64 })
}

/// A WebGPU device when asked for and available; otherwise why the CPU executor trains instead.
async fn gpu_if(use_gpu: bool) -> (Option<Gpu>, Option<String>) {
    if !use_gpu {
        // The page already says why it chose the CPU.
        return (None, None);
    }
    match Gpu::new().await {
        Ok(g) => (Some(g), None),
        Err(e) => (None, Some(format!("WebGPU unavailable ({e}); training on the CPU executor (wasm)"))),
    }
}

fn started(run: &Run, notice: Option<String>) -> Started {
    Started {
        backend: run.backend(),
        notice,
        trainable: run.trainable(),
        measured: run.measured_memory(),
        baseline: run.baseline(),
    }
}

fn config_from(config_json: &str) -> Result<ModelConfig, JsError> {
    ModelConfig::from_json(config_json).map_err(|e| err(e.context("config.json")))
}

/// Settings from a URL query, with one message per bad parameter (never an exception for a bad query).
#[wasm_bindgen(js_name = parseQuery)]
pub fn parse_query_js(config_json: &str, query: &str) -> Result<JsValue, JsError> {
    to_js(&parse_query(query, &config_from(config_json)?))
}

/// The default settings for the model `config_json` describes ([`Settings::defaults_for`]).
#[wasm_bindgen]
pub fn defaults(config_json: &str) -> Result<JsValue, JsError> {
    to_js(&Settings::defaults_for(&config_from(config_json)?))
}

/// The URL query of settings (non-defaults only), after checking them against the model.
#[wasm_bindgen(js_name = toQuery)]
pub fn to_query(config_json: &str, settings: JsValue) -> Result<String, JsError> {
    let s = settings_from(settings)?;
    let model = config_from(config_json)?;
    s.validate(&model).map_err(err)?;
    Ok(s.to_query(&model))
}

/// What [`settle_settings`] answers: settings the engine can use and each problem, named by its control.
#[derive(Serialize)]
struct Settled {
    settings: Settings,
    problems: Vec<Problem>,
}

/// The settings with each faulty one replaced by its default, and a message per fault naming its control: the page
/// shows the message at that control and keeps every other number live. `settings` are the controls as read, where
/// a number box may hold a fraction, a negative number or nothing ([`Settings::settle_controls`]).
#[wasm_bindgen(js_name = settleSettings)]
pub fn settle_settings(config_json: &str, settings: JsValue) -> Result<JsValue, JsError> {
    let raw: serde_json::Value =
        serde_wasm_bindgen::from_value(settings).map_err(|e| JsError::new(&format!("settings: {e}")))?;
    let (settings, problems) = Settings::settle_controls(&raw, &config_from(config_json)?);
    to_js(&Settled { settings, problems })
}

/// Why the model `config_json` describes cannot be loaded with its frozen base kept as `settings` keep it, or
/// undefined if it can: the page says it at the model's control before anything is downloaded.
#[wasm_bindgen(js_name = loadProblem)]
pub fn load_problem(config_json: &str, settings: JsValue) -> Result<Option<String>, JsError> {
    let config = config_from(config_json)?;
    Ok(check_model_fits(&config, &settings_from(settings)?).err().map(|e| e.to_string()))
}

/// Why a run of `settings` would not fit the tab, or undefined if it would: beside the base loaded as
/// `loaded_storage` (its label, "nf4+dq") of `loaded_bytes`, or, with none loaded, as these settings would load it. The
/// page says it at the memory panel and Train waits; settings that are faulty are answered undefined (their own
/// control says why).
#[wasm_bindgen(js_name = runProblem)]
pub fn run_problem(
    config_json: &str,
    settings: JsValue,
    loaded_storage: Option<String>,
    loaded_bytes: Option<f64>,
) -> Result<Option<String>, JsError> {
    let config = config_from(config_json)?;
    let loaded = match (loaded_storage, loaded_bytes) {
        (Some(label), Some(bytes)) => Some((Storage::from_label(&label).map_err(err)?, bytes as u64)),
        _ => None,
    };
    Ok(run_fit_problem(&settings_from(settings)?, &config, loaded).ok().flatten())
}

/// One way to store the frozen base, as the page explains and offers it.
#[derive(Serialize)]
struct BaseFormat {
    name: &'static str,
    /// Stored block-wise with an absmax per block (the formats QLoRA's base uses).
    quantized: bool,
    /// Double quantization applies (bitsandbytes' 4-bit types).
    double_quant: bool,
    /// The method whose base this format is: `qlora` for quantized formats, `lora` for 16/32-bit ones.
    method: &'static str,
    /// Bits per weight of this model's largest block matrix, constants included; and with double quantization.
    bits: f64,
    bits_dq: Option<f64>,
}

/// The base formats with the facts the page's controls follow (which method, whether double quantization applies)
/// and its explanation quotes (bits per weight of this model's matrices, the block sizes).
#[wasm_bindgen(js_name = baseFormats)]
pub fn base_formats(config_json: &str) -> Result<JsValue, JsError> {
    let c = config_from(config_json)?;
    let n = (4 * c.n_embd * c.n_embd) as u64;
    let formats: Vec<BaseFormat> = Format::ALL
        .into_iter()
        .map(|f| BaseFormat {
            name: f.name(),
            quantized: f.is_blockwise(),
            double_quant: f.supports_double_quant(),
            method: method_for_format(f).name(),
            bits: Storage { format: f, double_quant: false }.bits_per_param(n),
            bits_dq: f.supports_double_quant().then(|| Storage { format: f, double_quant: true }.bits_per_param(n)),
        })
        .collect();
    #[derive(Serialize)]
    struct Formats {
        formats: Vec<BaseFormat>,
        block: usize,
        nested_block: usize,
    }
    to_js(&Formats { formats, block: crate::quant::BLOCK, nested_block: crate::quant::NESTED_BLOCK })
}

/// Trainable parameters, memory by category (this configuration and full/LoRA/QLoRA), and the scale-up rows —
/// from the settings and config.json alone, so the page shows them before the weights are downloaded.
#[wasm_bindgen]
pub fn accounting(config_json: &str, settings: JsValue) -> Result<JsValue, JsError> {
    to_js(&accounting_of(&settings_from(settings)?, &config_from(config_json)?).map_err(err)?)
}

/// The PEFT + bitsandbytes snippet for `settings` on the model `config_json` describes (its hub id, where it names one).
#[wasm_bindgen(js_name = peftSnippet)]
pub fn peft_snippet_js(config_json: &str, settings: JsValue) -> Result<String, JsError> {
    let config = ModelConfig::from_json(config_json).map_err(err)?;
    Ok(peft_snippet(&settings_from(settings)?, &config))
}

/// A file read through a JavaScript function `read(offset, length) -> Uint8Array` ([`Playground::from_reader`]).
struct JsReader {
    read: js_sys::Function,
    pos: u64,
    len: u64,
}

impl std::io::Read for JsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 {
            return Ok(0);
        }
        let failed = |what: String| std::io::Error::other(what);
        let got = self
            .read
            .call2(&JsValue::NULL, &JsValue::from_f64(self.pos as f64), &JsValue::from_f64(n as f64))
            .map_err(|e| match e.dyn_ref::<js_sys::Error>() {
                Some(e) => failed(String::from(e.message())),
                None => failed(format!("{e:?}")),
            })?;
        let bytes = js_sys::Uint8Array::new(&got);
        if bytes.length() as usize != n {
            return Err(failed(format!("{} bytes read at offset {} where {n} were asked", bytes.length(), self.pos)));
        }
        bytes.copy_to(&mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for JsReader {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::other("seek before the start of the file"))?;
        Ok(self.pos)
    }
}

/// The engine of one page: the base model as loaded, the user's text, and the current run.
#[wasm_bindgen]
pub struct Playground {
    /// The base as loaded: in fp32, or — read from the reader's file ([`Playground::from_reader`]) — with its block
    /// linear weights already in the storage format the page's settings chose.
    base: Gpt2,
    /// The reader's model file, for a base read from one: read again when a run needs the base in another format than
    /// the one it was loaded in, and for a weight's fp32 values (the histogram).
    source: Option<SafetensorsSource<JsReader>>,
    user_text: Option<String>,
    run: Option<Run>,
    generation: Option<SideBySide>,
}

/// A generation in progress: the base's and the tuned model's continuations of one prompt.
struct SideBySide {
    base: Generation,
    tuned: Generation,
    total: usize,
}

#[derive(Serialize)]
struct GenerationProgress {
    base: String,
    tuned: String,
    done: usize,
    total: usize,
}

impl Playground {
    /// A playground for `base`, with no text, run or generation yet.
    fn with_base(base: Gpt2) -> Playground {
        Playground { base, source: None, user_text: None, run: None, generation: None }
    }

    /// What a run of `spec` may hold in the engine beside (or sharing) the loaded base.
    fn run_budget(&self, spec: &RunSpec) -> u64 {
        run_budget_on(self.base.linear_storage(), self.base.bytes(), spec.method, spec.storage)
    }
}

/// The settings a base loaded whole in fp32 is checked with: LoRA over fp32, the page's defaults otherwise.
fn fp32_base_settings(config: &ModelConfig) -> Settings {
    Settings { method: "lora".into(), format: "fp32".into(), dq: false, ..Settings::defaults_for(config) }
}

/// The base a run keeping it in `storage` starts from: the loaded one, unless that keeps its linear weights in
/// another format, then read again from `source` in this one (the run keeps it; the loaded base stays as it is).
fn base_for_run<'a>(
    base: &'a Gpt2,
    source: &mut Option<SafetensorsSource<JsReader>>,
    storage: Storage,
) -> Result<Cow<'a, Gpt2>, JsError> {
    let kept = base.linear_storage();
    match source {
        Some(source) if kept != Storage::FP32 && kept != storage => {
            let mut read = source.load(storage).map_err(err)?;
            read.tokenizer = base.tokenizer.clone();
            Ok(Cow::Owned(read))
        }
        _ => Ok(Cow::Borrowed(base)),
    }
}

#[wasm_bindgen]
impl Playground {
    /// Loads a Hugging Face GPT-2 directory's two files: `config.json` text and `model.safetensors` bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, safetensors: &[u8]) -> Result<Playground, JsError> {
        let config = config_from(config_json)?;
        check_model_fits(&config, &fp32_base_settings(&config)).map_err(|e| err(e.context("config.json")))?;
        let base = load_model_bytes(config_json, safetensors).map_err(err)?;
        Ok(Playground::with_base(base))
    }

    /// Loads a model whose `model.safetensors` (`len` bytes) is too large to copy into wasm memory whole: `read(offset,
    /// length)` returns those bytes as a `Uint8Array` (the worker reads a `Blob` slice with `FileReaderSync`). The
    /// block linear weights are kept as `settings` (the page's, if any) store the frozen base, each quantized as it is
    /// read: peak memory is the model in that form plus one weight in fp32 and a few MiB. The file stays the
    /// engine's to read again (a run in another format, the histogram).
    #[wasm_bindgen(js_name = fromReader)]
    pub fn from_reader(
        config_json: &str,
        len: f64,
        read: js_sys::Function,
        settings: JsValue,
    ) -> Result<Playground, JsError> {
        let config = config_from(config_json)?;
        // Settings that name no storage (none sent, or unreadable) keep the base in fp32, as a plain load does.
        let settings = (!settings.is_undefined() && !settings.is_null())
            .then(|| settings_from(settings).ok())
            .flatten()
            .filter(|s| s.base_storage().is_ok())
            .unwrap_or_else(|| fp32_base_settings(&config));
        check_model_fits(&config, &settings).map_err(|e| err(e.context("config.json")))?;
        let storage = settings.base_storage().map_err(err)?;
        let reader = JsReader { read, pos: 0, len: len as u64 };
        let mut source = SafetensorsSource::open(config_json, reader, len as u64).map_err(err)?;
        let base = source.load(storage).map_err(err)?;
        Ok(Playground { source: Some(source), ..Playground::with_base(base) })
    }

    /// A randomly initialised model of a published shape (`gpt2`: 12 × 768, vocabulary 50,257; `distilgpt2`), for
    /// bench.html to time steps at that scale without downloading weights. It keeps the byte tokenizer: its text
    /// becomes ids below 256, and a step's time does not depend on which ids it embeds.
    pub fn random(preset: &str, seed: u32) -> Result<Playground, JsError> {
        let base = Gpt2::init(ModelConfig::hf_preset(preset, None).map_err(err)?, seed.into());
        Ok(Playground::with_base(base))
    }

    /// The model's config.json (as `qlora init` writes it), for the settings and accounting functions above.
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        self.base.config.to_json("float32", &self.base.tokenizer)
    }

    /// Gives the loaded model GPT-2's byte-level BPE from a Hugging Face directory's tokenizer files
    /// (`vocab.json` + `merges.txt`, or `tokenizer.json`; absent ones undefined), before any run starts.
    #[wasm_bindgen(js_name = useTokenizerFiles)]
    pub fn use_tokenizer_files(
        &mut self,
        vocab_json: Option<Vec<u8>>,
        merges_txt: Option<Vec<u8>>,
        tokenizer_json: Option<Vec<u8>>,
    ) -> Result<(), JsError> {
        if self.run.is_some() {
            return Err(JsError::new("the tokenizer is chosen with the model, before a run starts"));
        }
        let files = TokenizerFiles { vocab_json, merges_txt, tokenizer_json, tokenizer_config_json: None };
        let bpe = Bpe::from_files(files).map_err(err)?;
        self.base.set_tokenizer(Tokenizer::Bpe(Arc::new(bpe))).map_err(err)?;
        self.generation = None; // its ids were the old tokenizer's
        Ok(())
    }

    /// The ids of `text` under the model's tokenizer (one per byte for the byte-level models).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.base.tokenizer.encode(text)
    }

    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> Result<JsValue, JsError> {
        let c = &self.base.config;
        to_js(&ModelInfo {
            n_layer: c.n_layer,
            n_head: c.n_head,
            n_embd: c.n_embd,
            n_positions: c.n_positions,
            vocab_size: c.vocab_size,
            params: self.base.param_count(),
            storage: self.base.linear_storage().label(),
            bytes: self.base.bytes() as f64,
        })
    }

    /// The user's own text (bytes of a dropped file or pasted text): UTF-8, not empty, at most 16 MiB.
    #[wasm_bindgen(js_name = setUserText)]
    pub fn set_user_text(&mut self, bytes: &[u8]) -> Result<usize, JsError> {
        if bytes.len() > MAX_USER_TEXT {
            return Err(too_long(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            JsError::new(&format!("the text is not UTF-8 (invalid byte at offset {})", e.valid_up_to()))
        })?;
        check_user_text(text)?;
        self.user_text = Some(text.to_string());
        Ok(bytes.len())
    }

    /// Prepares a run; with `use_gpu`, on WebGPU when an adapter and device can be had, else on the CPU executor
    /// (the result says which, and why).
    pub async fn start(&mut self, settings: JsValue, use_gpu: bool) -> Result<JsValue, JsError> {
        let s = settings_from(settings)?;
        let spec = s.validate(&self.base.config).map_err(err)?;
        check_memory_budget(&s, &self.base.config, self.run_budget(&spec)).map_err(err)?;
        let (gpu, notice) = gpu_if(use_gpu).await;
        self.run = None;
        let base = base_for_run(&self.base, &mut self.source, spec.storage)?;
        let run = Run::new(base, s, self.user_text.as_deref(), gpu).map_err(err)?;
        let started = started(&run, notice);
        self.run = Some(run);
        to_js(&started)
    }

    /// The current run's state (`state.safetensors` bytes), for the page's autosave.
    pub async fn checkpoint(&mut self) -> Result<Vec<u8>, JsError> {
        let c = self.run_mut()?.checkpoint().await.map_err(err)?;
        c.to_bytes().map_err(err)
    }

    /// Continues the run saved in `state` (bytes of [`Playground::checkpoint`]); `text` is the reader's text it
    /// trained on, if it did. The current run and text are kept if this fails.
    pub async fn resume(&mut self, state: &[u8], text: Option<String>, use_gpu: bool) -> Result<JsValue, JsError> {
        self.resume_with(state, text, use_gpu, None).await
    }

    /// An exported run's zip (or a bare `state.safetensors`): its text, if any, becomes the user text and the run
    /// continues from its state. The current run and text are kept if this fails.
    #[wasm_bindgen(js_name = importRun)]
    pub async fn import_run(&mut self, bytes: &[u8], use_gpu: bool) -> Result<JsValue, JsError> {
        let archive = read_archive(bytes).map_err(err)?;
        self.resume_with(&archive.state, archive.user_text, use_gpu, archive.run_json).await
    }

    async fn resume_with(
        &mut self,
        state: &[u8],
        text: Option<String>,
        use_gpu: bool,
        run_json: Option<String>,
    ) -> Result<JsValue, JsError> {
        let checkpoint = Checkpoint::from_bytes(state).map_err(err)?;
        let spec =
            checkpoint.settings.validate(&self.base.config).map_err(|e| err(e.context("the saved run's settings")))?;
        check_memory_budget(&checkpoint.settings, &self.base.config, self.run_budget(&spec)).map_err(err)?;
        if let Some(t) = &text {
            check_user_text(t)?;
        }
        let (gpu, notice) = gpu_if(use_gpu).await;
        let run_text = text.as_deref().or(self.user_text.as_deref());
        let base = base_for_run(&self.base, &mut self.source, spec.storage)?;
        let run = Run::resume(base, &checkpoint, run_text, gpu).map_err(err)?;
        if text.is_some() {
            self.user_text = text;
        }
        let resumed =
            Resumed { started: started(&run, notice), step: checkpoint.step, settings: checkpoint.settings, run_json };
        self.run = Some(run);
        to_js(&resumed)
    }

    /// The current run as a zip: state, `run_json` (the page's history), the trained weights as a PEFT adapter or a
    /// transformers model, and the reader's text when the run trained on it.
    #[wasm_bindgen(js_name = exportRun)]
    pub async fn export_run(&mut self, run_json: &str) -> Result<Vec<u8>, JsError> {
        let own_text = self.run.as_ref().is_some_and(|r| r.settings.task == "text");
        let run = self.run.as_mut().ok_or_else(|| JsError::new("no run to export: press Train first"))?;
        let state = run.checkpoint().await.map_err(err)?.to_bytes().map_err(err)?;
        let weights = run.weight_files().await.map_err(err)?;
        let text = if own_text { self.user_text.as_deref() } else { None };
        export_run(&state, &weights, run_json, text).map_err(err)
    }

    /// The reader's text the current run trains on (for the autosave), if it trains on one.
    #[wasm_bindgen(js_name = runText)]
    pub fn run_text(&self) -> Option<String> {
        let run = self.run.as_ref()?;
        (run.settings.task == "text").then(|| self.user_text.clone()).flatten()
    }

    /// Steps the current run has taken (after a divergence or a lost device: the step it went back to).
    #[wasm_bindgen(js_name = stepIndex)]
    pub fn step_index(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.step_index())
    }

    fn run_mut(&mut self) -> Result<&mut Run, JsError> {
        self.run.as_mut().ok_or_else(|| JsError::new("no run: press Train first"))
    }

    /// The next step's result. With `lookahead` the step after it is already submitted on the GPU (pass it when the
    /// next request is another step); [`Playground::drain`] returns that step's result if something else comes first.
    pub async fn step(&mut self, lookahead: bool) -> Result<JsValue, JsError> {
        let run = self.run_mut()?;
        let tokens = run.spec.batch * run.spec.seq;
        let s = run.step(lookahead).await.map_err(err)?;
        to_js(&Step { step: s.step, loss: s.loss, lr: s.lr, grad_norm: s.grad_norm, tokens })
    }

    /// Whether a step submitted by `step(true)` is still in flight on the GPU.
    #[wasm_bindgen(js_name = stepInFlight)]
    pub fn step_in_flight(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.step_in_flight())
    }

    /// The result of a step still in flight from `step(true)`, read back; null when there is none (or no run).
    pub async fn drain(&mut self) -> Result<JsValue, JsError> {
        let Some(run) = self.run.as_mut() else { return Ok(JsValue::NULL) };
        let tokens = run.spec.batch * run.spec.seq;
        match run.drain().await.map_err(err)? {
            Some(s) => to_js(&Step { step: s.step, loss: s.loss, lr: s.lr, grad_norm: s.grad_norm, tokens }),
            None => Ok(JsValue::NULL),
        }
    }

    /// Forces the next step to diverge (for the page's tests of the divergence path).
    #[wasm_bindgen(js_name = injectNan)]
    pub async fn inject_nan(&mut self) -> Result<(), JsError> {
        self.run_mut()?.inject_nan().await.map_err(err)
    }

    /// Drops the current run (the base stays loaded).
    pub fn reset(&mut self) {
        self.run = None;
    }

    pub fn finished(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.finished())
    }

    /// Whether a validation is due after step `step` (0-based) of the current run.
    #[wasm_bindgen(js_name = validationDue)]
    pub fn validation_due(&self, step: usize) -> bool {
        self.run.as_ref().is_some_and(|r| r.validation_due(step))
    }

    /// Whether the next step should keep the one after it in flight (see `Run::lookahead_pays`).
    #[wasm_bindgen(js_name = lookaheadPays)]
    pub fn lookahead_pays(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.lookahead_pays())
    }

    pub async fn validate(&mut self) -> Result<JsValue, JsError> {
        let v = self.run_mut()?.validate().await.map_err(err)?;
        to_js(&v)
    }

    /// The notice of a move from WebGPU to the CPU executor (a lost device), once; null otherwise.
    #[wasm_bindgen(js_name = takeNotice)]
    pub fn take_notice(&mut self) -> Option<String> {
        self.run.as_mut().and_then(|r| r.take_notice())
    }

    /// Test hook: destroys the run's GPU device (the page tests check that training continues on the CPU).
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&mut self) -> Result<(), JsError> {
        self.run_mut()?.lose_device_for_test().map_err(err)
    }

    /// Test hook: the engine aborts, as Rust's allocation failure aborts it when the tab's memory runs out (a
    /// WebAssembly trap); the page tests check what the reader is told and that the kept run comes back.
    #[wasm_bindgen(js_name = abortForTest)]
    pub fn abort_for_test(&mut self) {
        std::process::abort()
    }

    /// The validation of step 0 the first time it is asked for, then null (see `Run::validate_start`).
    #[wasm_bindgen(js_name = validateStart)]
    pub fn validate_start(&mut self) -> Result<JsValue, JsError> {
        match self.run_mut()?.validate_start() {
            Some(v) => to_js(&v),
            None => Ok(JsValue::NULL),
        }
    }

    /// Continues `prompt`: `tuned` uses the run's trained model, otherwise its base (as stored). Without a run both
    /// are the loaded base.
    pub async fn generate(
        &mut self,
        prompt: &str,
        tokens: usize,
        temperature: f32,
        top_k: usize,
        seed: u32,
        tuned: bool,
    ) -> Result<String, JsError> {
        let tokenizer = self.base.tokenizer.clone();
        let mut g = Generation::new(&tokenizer.encode_prompt(prompt), sampling(tokens, temperature, top_k, seed)?);
        self.advance(&mut g, tuned, tokens).await?;
        Ok(tokenizer.decode(g.generated()))
    }

    /// Starts a side-by-side generation (base and tuned, same sampling) that [`Playground::generate_more`] advances a
    /// few tokens at a time, so the page shows the text as it grows and can stop it. Replaces one in progress.
    #[wasm_bindgen(js_name = generateBegin)]
    pub fn generate_begin(
        &mut self,
        prompt: &str,
        tokens: usize,
        temperature: f32,
        top_k: usize,
        seed: u32,
    ) -> Result<(), JsError> {
        let s = sampling(tokens, temperature, top_k, seed)?;
        let p = self.base.tokenizer.encode_prompt(prompt);
        self.generation =
            Some(SideBySide { base: Generation::new(&p, s), tuned: Generation::new(&p, s), total: tokens });
        Ok(())
    }

    /// Up to `tokens` more tokens of both texts of the generation begun last; the texts so far, and how far along.
    #[wasm_bindgen(js_name = generateMore)]
    pub async fn generate_more(&mut self, tokens: usize) -> Result<JsValue, JsError> {
        let mut g = self.generation.take().ok_or_else(|| JsError::new("no generation in progress"))?;
        let n = tokens.min(g.total - g.base.generated().len());
        let advanced = match self.advance(&mut g.base, false, n).await {
            Ok(()) => self.advance(&mut g.tuned, true, n).await,
            Err(e) => Err(e),
        };
        advanced?;
        // A character split across tokens appears once its last token is there (the last round shows all).
        let t = &self.base.tokenizer;
        let text = |ids: &[u32], done: bool| if done { t.decode(ids) } else { t.decode_so_far(ids) };
        let finished = g.base.generated().len() >= g.total;
        let progress = GenerationProgress {
            base: text(g.base.generated(), finished),
            tuned: text(g.tuned.generated(), finished),
            done: g.base.generated().len(),
            total: g.total,
        };
        if progress.done < g.total {
            self.generation = Some(g);
        }
        to_js(&progress)
    }

    /// `n` more tokens of `g` from the run's base (as stored) or tuned model; without a run, from the loaded base.
    async fn advance(&mut self, g: &mut Generation, tuned: bool, n: usize) -> Result<(), JsError> {
        match &mut self.run {
            Some(run) => run.continue_generation(g, tuned, n).await.map_err(err),
            None => {
                for _ in 0..n {
                    g.step(&self.base, None);
                }
                Ok(())
            }
        }
    }

    /// Singular values of every adapter's update.
    pub async fn spectra(&mut self) -> Result<JsValue, JsError> {
        let adapters = self.run_mut()?.adapters().await.map_err(err)?;
        let s = adapters.as_ref().map(adapter_spectra).unwrap_or_default();
        to_js(&s)
    }

    /// The distribution of one base weight against the 4-bit levels, and each format's error on it.
    pub fn histogram(&mut self, layer: usize, linear: &str, bins: usize) -> Result<JsValue, JsError> {
        let lin = match linear {
            "attn" => Linear::Attn,
            "o" => Linear::AttnProj,
            "fc" => Linear::Fc,
            "proj" => Linear::MlpProj,
            other => return Err(JsError::new(&format!("unknown weight {other:?}; expected attn, o, fc or proj"))),
        };
        let id = TensorId::Block(layer.min(self.base.config.n_layer - 1), lin.weight());
        let weight = match &mut self.source {
            Some(source) if !self.base.layout.has_block_linears() => Cow::Owned(source.tensor(id).map_err(err)?),
            _ => Cow::Borrowed(self.base.tensor(id)),
        };
        to_js(&weight_histogram(self.base.layout.hf_name(id), &weight, lin, self.base.config.n_embd, bins))
    }

    #[wasm_bindgen(js_name = measuredMemory)]
    pub fn measured_memory(&self) -> Result<JsValue, JsError> {
        to_js(&self.run.as_ref().and_then(|r| r.measured_memory()))
    }
}
