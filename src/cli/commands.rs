//! The work behind each `qlora` subcommand.

use super::*;
use crate::accounting::{self, AdapterSpec, Arch, MemoryQuery};
use crate::bail;
use crate::cpu::eval::greedy_accuracy;
use crate::cpu::{eval_loss, quantize_base, Trainer};
use crate::data::read_text_file;
use crate::figures::thousands;
use crate::gpu::{wgpu, Gpu, GpuTrainer};
use crate::lora::{self, load_adapter_dir, parse_targets, save_adapter_dir, Adapters, LoraConfig};
use crate::model::{load_model_dir, load_tokenizer_dir, save_model_dir, Gpt2, ModelConfig, StoreDtype};
use crate::quant::{Format, Storage};
use crate::run::{run_data, Limits, Run, Settings};
use crate::tokenizer::Tokenizer;
use crate::train::{Method, OptimConfig, Sampling, StepStats};
use crate::{ensure, rng, Error, Result};
use serde_json::json;
use std::time::Instant;

/// The GPU to train on for a `--backend` value, if any.
pub(super) fn resolve_gpu(choice: BackendChoice) -> Result<Option<Gpu>> {
    Ok(match Backend::resolve(choice)? {
        Backend::Gpu(g) => Some(*g),
        Backend::Cpu => None,
    })
}

/// Where training runs.
enum Backend {
    Gpu(Box<Gpu>),
    Cpu,
}

impl Backend {
    /// `gpu` insists on a device; `auto` takes one only if it is real hardware (a CPU-emulated adapter such as
    /// Mesa's lavapipe is slower than the CPU executor); `cpu` never looks.
    fn resolve(choice: BackendChoice) -> Result<Self> {
        Ok(match choice {
            BackendChoice::Cpu => Backend::Cpu,
            BackendChoice::Gpu => Backend::Gpu(Box::new(Gpu::new_blocking()?)),
            BackendChoice::Auto => match Gpu::new_blocking() {
                Ok(g) if g.info.device_type != wgpu::DeviceType::Cpu => Backend::Gpu(Box::new(g)),
                _ => Backend::Cpu,
            },
        })
    }
}

/// The base storage the flags ask for, the method's default format when none is named.
fn storage(a: &StorageArgs, method: Method) -> Result<Storage> {
    Storage::new(a.format.unwrap_or(method.default_format()), a.double_quant)
}

fn arch_of(a: &ArchArgs) -> Result<Arch> {
    match (&a.preset, &a.model) {
        (Some(p), _) => Arch::preset(p),
        (None, Some(dir)) => {
            let path = dir.join("config.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
            Ok(Arch::from_model(&ModelConfig::from_json(&text).map_err(|e| e.context(path.display()))?))
        }
        (None, None) => Err(Error::new("give --preset or --model")),
    }
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

pub(super) fn params(a: ParamsArgs) -> Result<()> {
    let arch = arch_of(&a.arch)?;
    let spec = AdapterSpec::uniform(&arch, &a.adapters.targets, a.adapters.rank as u64)?;
    let p = accounting::lora_params(&arch, &spec);
    let full = accounting::full_params(&arch);
    if a.output.json {
        println!(
            "{}",
            json!({"trainable": p.trainable, "total": p.total, "percent": p.percent(), "full_trainable": full.trainable})
        );
    } else {
        println!(
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            thousands(p.trainable),
            thousands(p.total),
            p.percent()
        );
        println!("full fine-tuning would train {} parameters", thousands(full.trainable));
    }
    Ok(())
}

pub(super) fn memory(a: MemoryArgs) -> Result<()> {
    let arch = arch_of(&a.arch)?;
    let method = a.method;
    let st = storage(&a.storage, method)?;
    let adapters = match method {
        Method::Full => None,
        _ => Some(AdapterSpec::uniform(&arch, &a.adapters.targets, a.adapters.rank as u64)?),
    };
    let q = MemoryQuery {
        method,
        storage: st,
        dtype_bytes: a.dtype.bytes(),
        adapters,
        batch: a.batch,
        seq: a.seq,
        checkpointing: a.checkpointing,
    };
    let m = accounting::memory(&arch, &q)?;
    if a.output.json {
        let mut obj = serde_json::Map::new();
        for (k, v) in m.categories() {
            obj.insert(k.into(), json!(v));
        }
        obj.insert("total".into(), json!(m.total()));
        println!("{}", serde_json::Value::Object(obj));
    } else {
        println!(
            "{} · {} · base {} · {} · batch {} × seq {}{}",
            arch.name,
            method,
            st.label(),
            a.dtype.name(),
            a.batch,
            a.seq,
            if a.checkpointing { " · checkpointing" } else { "" }
        );
        for (k, v) in m.categories() {
            println!("  {k:<16} {:>20} B  {:>12}", thousands(v), gib(v));
        }
        println!("  {:<16} {:>20} B  {:>12}", "total", thousands(m.total()), gib(m.total()));
    }
    Ok(())
}

pub(super) fn init(a: InitArgs) -> Result<()> {
    let model = match &a.preset {
        Some(p) => {
            let preset = ModelConfig::hf_preset(p, a.layers)?;
            let mut cfg = preset.clone();
            cfg.n_head = a.heads.unwrap_or(cfg.n_head);
            cfg.n_embd = a.embd.unwrap_or(cfg.n_embd);
            cfg.n_positions = a.ctx.unwrap_or(cfg.n_positions);
            if cfg != preset {
                cfg.name_or_path = None; // another shape is not the hub model
            }
            cfg.validate()?;
            Gpt2::init(cfg, a.seed).with_tokenizer(Tokenizer::gpt2()?)?
        }
        None => {
            let need = |v: Option<usize>| v.expect("clap requires it without --preset");
            Gpt2::init(ModelConfig::bytes(need(a.layers), need(a.heads), need(a.embd), need(a.ctx))?, a.seed)
        }
    };
    save_model_dir(&model, &a.out, StoreDtype::F32)?;
    println!(
        "wrote {} ({} parameters, {} tokenizer)",
        a.out.display(),
        thousands(model.params.len() as u64),
        model.tokenizer.kind()
    );
    Ok(())
}

pub(super) fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tokenizer = load_tokenizer_dir(&a.model)?;
    let ids = tokenizer.encode(&read_text_file(&a.text_file)?);
    if a.output.json {
        println!("{}", json!({ "ids": ids }));
    } else {
        let line: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("{}", line.join(" "));
    }
    Ok(())
}

/// Loads the model, quantizes its base if asked, and loads the adapter if given.
fn load_base(b: &BaseArgs) -> Result<(Gpt2, Option<Adapters>)> {
    let mut model = load_model_dir(&b.model)?;
    if b.storage.format.is_some() || b.storage.double_quant {
        let st = storage(&b.storage, Method::Lora)?;
        quantize_base(&mut model, st);
    }
    let adapters = match &b.adapter {
        Some(dir) => Some(load_adapter_dir(dir, model.config.n_layer, model.config.n_embd)?),
        None => None,
    };
    Ok((model, adapters))
}

pub(super) fn eval(a: EvalArgs) -> Result<()> {
    let text = read_text_file(&a.text_file)?;
    let tokens = load_tokenizer_dir(&a.base.model)?.encode(&text);
    ensure!(tokens.len() >= 2, "{} needs at least two tokens to predict one", a.text_file.display());
    let (loss, count) = match Backend::resolve(a.backend.backend)? {
        Backend::Gpu(gpu) => pollster::block_on(gpu_generator(*gpu, &a.base)?.eval_loss(&tokens))?,
        Backend::Cpu => {
            let (model, adapters) = load_base(&a.base)?;
            eval_loss(&model, adapters.as_ref(), &tokens)
        }
    };
    if a.output.json {
        println!("{}", json!({"loss": loss, "tokens": count}));
    } else {
        println!("loss {loss:.4} nats/token over {count} predicted tokens");
    }
    Ok(())
}

/// The settings of a `qlora finetune` run, as the page would write them, with the command line's recipe flags.
fn finetune_settings(a: &FinetuneArgs) -> Result<Settings> {
    let (method, rank) = (a.method, a.adapters.rank);
    Ok(Settings {
        method: method.name().into(),
        r: rank,
        ranks: String::new(),
        alpha: a.alpha.unwrap_or(rank as f32),
        targets: parse_targets(&a.adapters.targets)?.iter().map(|t| t.name().to_string()).collect(),
        format: a.storage.format.unwrap_or(method.default_format()).name().into(),
        dq: a.storage.double_quant,
        adapter_storage: a.adapter_storage.map_or("none", AdapterStorage::name).into(),
        lr: a.lr,
        batch: a.batch,
        seq: a.seq,
        steps: a.steps,
        seed: a.seed,
        task: a.task.clone().unwrap_or_else(|| "text".into()),
        warmup: a.warmup,
        weight_decay: a.weight_decay,
        grad_clip: a.grad_clip,
        dropout: a.dropout,
        rslora: a.rslora,
    })
}

pub(super) fn finetune(a: FinetuneArgs) -> Result<()> {
    let model = load_model_dir(&a.model)?;
    let settings = finetune_settings(&a)?;
    settings.validate_within(&model.config, &Limits::CLI)?;
    let user_text = match &a.data {
        Some(path) if a.task.is_none() => Some(read_text_file(path)?),
        _ => None,
    };
    let data = run_data(&settings, &model.tokenizer, user_text.as_deref(), a.eval_examples)?;
    let gpu = resolve_gpu(a.backend.backend)?;
    let mut run = Run::start(&model, settings, &Limits::CLI, data, gpu)?;
    let backend_name = if run.backend() == "webgpu" { "gpu" } else { "cpu" };
    let (val0, acc0) = held_out_scores(&run, None);
    let (method, storage) = (run.spec.method, run.spec.storage);
    if !a.output.json {
        let trainable = thousands(run.trainable() as u64);
        println!(
            "{method} · base {} · {trainable} trainable parameters · {backend_name} · validation loss {val0:.4}",
            storage.label()
        );
        if let Some(acc) = acc0 {
            println!("validation accuracy before training: {:.1}%", 100.0 * acc);
        }
    }
    // On the GPU the run keeps the next step in flight while a result comes back, so the GPU never waits for the
    // readback or for the next step's encoding; a step's time is the time between two results.
    let mut since = Instant::now();
    while !run.finished() {
        let s = pollster::block_on(run.step(true))?;
        report_step(&s, &mut since, &a);
    }
    pollster::block_on(run.sync())?;
    // Adapter storage (bf16: the QLoRA paper's adapters; int4: the claim that QLoRA quantizes them): what is written
    // and scored is A and B rounded through the format.
    let mut adapters = run.trained().1.cloned();
    if let (Some(st), Some(ad)) = (run.spec.adapter_storage, adapters.as_mut()) {
        ad.round_through(st);
    }
    let (val, acc) = held_out_scores(&run, adapters.as_ref());
    let model = run.trained().0;
    match &adapters {
        Some(ad) => save_adapter_dir(ad, &model.config, &a.out)?,
        None => save_model_dir(model, &a.out, StoreDtype::F32)?,
    }
    if a.output.json {
        let summary = json!({"val_loss_before": val0, "val_loss": val, "accuracy_before": acc0, "accuracy": acc,
            "trainable": run.trainable(), "backend": backend_name, "out": a.out.display().to_string()});
        println!("{summary}");
    } else {
        if let (Some(before), Some(after)) = (acc0, acc) {
            println!("validation accuracy {:.1}% → {:.1}%", 100.0 * before, 100.0 * after);
        }
        println!("validation loss {val0:.4} → {val:.4}; wrote {}", a.out.display());
    }
    Ok(())
}

/// The loss over the whole held-out text (what `qlora eval` gives for it) and, for a generated task, the accuracy on
/// the held-out examples, of the run's model as last synced — with `adapters` in place of its own when given.
fn held_out_scores(run: &Run, adapters: Option<&Adapters>) -> (f64, Option<f64>) {
    let (model, own) = run.trained();
    let adapters = adapters.or(own);
    let data = run.data();
    let loss = eval_loss(model, adapters, &data.split.val).0;
    (loss, data.task.map(|_| greedy_accuracy(model, adapters, &data.val_examples)))
}

/// Prints one fine-tuning step (every 10th, and the last, without `--json`).
fn report_step(s: &StepStats, since: &mut Instant, a: &FinetuneArgs) {
    let ms = since.elapsed().as_secs_f64() * 1e3;
    *since = Instant::now();
    if a.output.json {
        println!("{}", json!({"step": s.step, "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm, "ms": ms}));
    } else if s.step % 10 == 0 || s.step + 1 == a.steps {
        println!("step {:>5}  loss {:.4}  lr {:.2e}  grad_norm {:.3}  {:.0} ms", s.step, s.loss, s.lr, s.grad_norm, ms);
    }
}

/// The model (and adapter) on the GPU for decoding; the base is stored in the format there, from the fp32 weights.
fn gpu_generator(gpu: Gpu, b: &BaseArgs) -> Result<crate::gpu::GpuGenerator> {
    let model = load_model_dir(&b.model)?;
    let st = storage(&b.storage, Method::Lora)?;
    let adapters = match &b.adapter {
        Some(dir) => Some(load_adapter_dir(dir, model.config.n_layer, model.config.n_embd)?),
        None => None,
    };
    crate::gpu::GpuGenerator::new(gpu, &model, st, adapters)
}

pub(super) fn generate(a: GenerateArgs) -> Result<()> {
    ensure!(a.temperature.is_finite() && a.temperature >= 0.0, "temperature must be ≥ 0");
    ensure!(a.tokens <= 100_000, "at most 100,000 tokens");
    let tokenizer = load_tokenizer_dir(&a.base.model)?;
    let prompt = tokenizer.encode_prompt(&a.prompt);
    let sampling = Sampling { temperature: a.temperature, top_k: a.top_k, seed: a.seed };
    let out = match Backend::resolve(a.backend.backend)? {
        Backend::Gpu(gpu) => pollster::block_on(gpu_generator(*gpu, &a.base)?.generate(&prompt, a.tokens, sampling))?,
        Backend::Cpu => {
            let (model, adapters) = load_base(&a.base)?;
            crate::cpu::generate(&model, adapters.as_ref(), &prompt, a.tokens, sampling)
        }
    };
    let out = tokenizer.up_to_end_of_text(&out);
    let text = tokenizer.decode(out);
    if a.output.json {
        println!("{}", json!({"prompt": a.prompt, "text": text, "ids": out}));
    } else {
        println!("{}{}", a.prompt, text);
    }
    Ok(())
}

pub(super) fn merge(a: MergeArgs) -> Result<()> {
    let base = BaseArgs { model: a.model.clone(), adapter: Some(a.adapter.clone()), storage: a.storage.clone() };
    let (mut model, adapters) = load_base(&base)?;
    lora::merge(&mut model, adapters.as_ref().expect("adapter given"))?;
    save_model_dir(&model, &a.out, StoreDtype::F32)?;
    println!("wrote merged model {}", a.out.display());
    Ok(())
}

pub(super) fn bench(a: BenchArgs) -> Result<()> {
    if let Some(n) = a.threads {
        ensure!(n >= 1, "threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::new(format!("cannot set threads: {e}")))?;
    }
    ensure!(a.steps >= 1 && a.steps <= 100_000, "steps must be between 1 and 100,000");
    let backend = match Backend::resolve(a.backend.backend)? {
        Backend::Gpu(_) if a.webgpu_limits => {
            Backend::Gpu(Box::new(Gpu::with_limits_blocking(wgpu::Limits::default())?))
        }
        Backend::Cpu if a.webgpu_limits || a.memory || a.profile => {
            bail!("--webgpu-limits, --memory and --profile measure the GPU; use them with --backend gpu")
        }
        b => b,
    };
    if a.matmul {
        return bench_matmul(backend, a.steps, a.preset.as_deref() == Some("gpt2"), a.output.json);
    }
    let model = match (&a.model, &a.preset) {
        (Some(dir), _) => load_model_dir(dir)?,
        (None, Some(p)) => Gpt2::init(ModelConfig::hf_preset(p, None)?, 0),
        (None, None) => Gpt2::init(ModelConfig::bytes(a.layers, a.heads, a.embd, a.ctx)?, 0),
    };
    ensure!(
        a.seq >= 1 && a.seq <= model.config.n_positions,
        "seq must be between 1 and n_positions {}",
        model.config.n_positions
    );
    ensure!(a.batch >= 1, "batch must be at least 1");
    let method = a.method;
    let st = Storage::new(a.format.unwrap_or(method.default_format()), a.double_quant)?;
    let lora = match method {
        Method::Full => None,
        _ => Some(LoraConfig::uniform(&parse_targets(&a.targets)?, a.rank, a.rank as f32)),
    };
    if a.generate {
        return bench_generate(backend, &model, a.format, a.seq, a.steps, a.output.json);
    }
    let cfg = model.config.clone();
    let optim = OptimConfig { lr: 1e-4, min_lr: 0.0, warmup: 0, steps: a.steps + 2, weight_decay: 0.0, grad_clip: 1.0 };
    let mut r = rng::stream(0, "bench");
    let vocab = model.config.vocab_size as u32;
    let tokens: Vec<u32> = (0..a.batch * a.seq).map(|_| rand::RngExt::random_range(&mut r, 0..vocab)).collect();
    let (backend_name, device) = match &backend {
        Backend::Gpu(g) => ("gpu", g.info.name.clone()),
        Backend::Cpu => ("cpu", format!("{} threads", rayon::current_num_threads())),
    };
    let mut times = Vec::new();
    // GPU only: the median time of a step awaited before the next is submitted, beside `times` (one kept in flight).
    let mut serial = None;
    // GPU only: bytes allocated per category beside the accounting's.
    let mut memory: Option<Vec<(&'static str, u64, u64)>> = None;
    let flops = match backend {
        Backend::Gpu(gpu) => {
            let optim = OptimConfig { steps: 2 * a.steps + 8, ..optim }; // both loops below, within the schedule
            let mut g = GpuTrainer::new(*gpu, &model, method, st, lora.clone(), optim.clone(), 0, a.batch, a.seq)?;
            memory = Some(measured_beside_accounting(&g, &model, method, st, &a)?);
            if a.memory {
                print_memory(memory.as_deref().unwrap_or_default(), a.output.json);
                return Ok(());
            }
            if a.profile {
                let least = step_flops(&cfg, g.adapters(), a.batch, a.seq);
                let header = format!(
                    "{method} · {} · {} layers × {} wide, vocabulary {} · batch {} × seq {} · built on {device}",
                    st.label(),
                    cfg.n_layer,
                    cfg.n_embd,
                    cfg.vocab_size,
                    a.batch,
                    a.seq
                );
                let timed_passes = a.time_kernels.then_some(a.steps);
                return profile::print_profile(&g, least, &header, timed_passes, a.output.json);
            }
            // Awaited one by one, then with the next step submitted before each readback (as the page and
            // `qlora finetune` train), where a step's time is the time between two results.
            let mut one_by_one = Vec::new();
            for i in 0..a.steps + 2 {
                let t0 = Instant::now();
                pollster::block_on(g.step(&tokens, &tokens))?;
                if i >= 2 {
                    one_by_one.push(t0.elapsed().as_secs_f64());
                }
            }
            serial = Some(median(&mut one_by_one));
            let mut in_flight = g.submit_step(&tokens, &tokens)?;
            let mut t0 = Instant::now();
            for i in 0..a.steps + 2 {
                let next = g.submit_step(&tokens, &tokens)?;
                pollster::block_on(g.finish_step(std::mem::replace(&mut in_flight, next)))?;
                if i >= 2 {
                    times.push(t0.elapsed().as_secs_f64());
                }
                t0 = Instant::now();
            }
            pollster::block_on(g.finish_step(in_flight))?;
            step_flops(&cfg, g.adapters(), a.batch, a.seq)
        }
        Backend::Cpu => {
            let mut trainer = Trainer::new(&model, method, st, lora, optim, 0)?;
            for i in 0..a.steps + 2 {
                let t0 = Instant::now();
                trainer.step(&tokens, &tokens, a.batch, a.seq);
                if i >= 2 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            step_flops(&cfg, trainer.adapters.as_ref(), a.batch, a.seq)
        }
    };
    let median = median(&mut times);
    let tok = (a.batch * a.seq) as f64;
    let mut out = json!({"tokens_per_s": tok / median, "ms_per_step": median * 1e3, "gflops": flops / median / 1e9,
        "backend": backend_name, "device": device, "method": method.name(), "format": st.label(),
        "batch": a.batch, "seq": a.seq, "layers": cfg.n_layer, "embd": cfg.n_embd});
    if let Some(serial) = serial {
        out["ms_per_step_awaited"] = json!(serial * 1e3);
        out["in_flight_speedup"] = json!(serial / median);
    }
    if let Some(mem) = &memory {
        out["memory"] =
            mem.iter().map(|(k, got, want)| (k.to_string(), json!({"measured": got, "accounting": want}))).collect();
    }
    if a.output.json {
        println!("{out}");
    } else {
        if let Some(mem) = &memory {
            print_memory(mem, false);
        }
        println!(
            "{method} · {} · {} layers × {} wide · batch {} × seq {} · {backend_name} ({device})",
            st.label(),
            cfg.n_layer,
            cfg.n_embd,
            a.batch,
            a.seq
        );
        println!(
            "median {:.1} ms/step · {:.0} tokens/s · {:.2} GFLOP/s",
            median * 1e3,
            tok / median,
            flops / median / 1e9
        );
        if let Some(serial) = serial {
            println!(
                "awaiting each step before submitting the next: {:.1} ms/step (speed-up from keeping one in flight: {:.2}×)",
                serial * 1e3,
                serial / median
            );
        }
    }
    Ok(())
}

/// Prints [`measured_beside_accounting`]'s rows: a table, or one JSON object.
fn print_memory(rows: &[(&'static str, u64, u64)], json_out: bool) {
    if json_out {
        let obj: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(k, got, want)| (k.to_string(), json!({"measured": got, "accounting": want}))).collect();
        println!("{}", json!({ "memory": obj }));
        return;
    }
    println!("GPU memory by category: allocated (every buffer is tagged) beside the accounting (`qlora memory`):");
    for (k, got, want) in rows {
        let ratio = if *want > 0 { format!("{:.3}", *got as f64 / *want as f64) } else { "—".into() };
        println!("  {k:<16} {:>16} B  {:>16} B  {ratio:>6}", thousands(*got), thousands(*want));
    }
}

/// The GPU's allocated bytes per category (scratch included, which the accounting leaves out) beside the accounting
/// for the same run.
fn measured_beside_accounting(
    g: &GpuTrainer,
    model: &Gpt2,
    method: Method,
    storage: Storage,
    a: &BenchArgs,
) -> Result<Vec<(&'static str, u64, u64)>> {
    let arch = Arch::from_model(&model.config);
    let q = MemoryQuery {
        method,
        storage,
        dtype_bytes: 4,
        adapters: (method != Method::Full)
            .then(|| AdapterSpec::uniform(&arch, &a.targets, a.rank as u64))
            .transpose()?,
        batch: a.batch as u64,
        seq: a.seq as u64,
        checkpointing: false,
    };
    let want = accounting::memory(&arch, &q)?;
    let measured = g.measured_memory();
    let got = |name: &str| measured.iter().find(|(c, _)| c.name() == name).map_or(0, |(_, b)| *b);
    let mut rows: Vec<(&'static str, u64, u64)> = want.categories().iter().map(|(k, w)| (*k, got(k), *w)).collect();
    rows.push(("scratch", got("scratch"), 0));
    Ok(rows)
}

/// Generation speed: `tokens` new tokens after an 8-token prompt, greedy, median over `reps` runs after one warm-up.
/// The GPU decodes with its KV cache (one position per step); the CPU executor recomputes the whole window per token.
fn bench_generate(
    backend: Backend,
    model: &Gpt2,
    format: Option<Format>,
    tokens: usize,
    reps: usize,
    json_out: bool,
) -> Result<()> {
    ensure!(tokens >= 1 && tokens + 8 <= model.config.n_positions, "seq (tokens to generate) must fit the context");
    let st = Storage::new(format.unwrap_or(Format::Fp32), false)?;
    let prompt = model.tokenizer.encode("To be, or");
    let sampling = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    let mut times = Vec::new();
    let (name, device) = match backend {
        Backend::Gpu(gpu) => {
            let device = gpu.info.name.clone();
            let g = crate::gpu::GpuGenerator::new(*gpu, model, st, None)?;
            for i in 0..reps.min(20) + 1 {
                let t0 = Instant::now();
                pollster::block_on(g.generate(&prompt, tokens, sampling))?;
                if i > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            ("gpu", device)
        }
        Backend::Cpu => {
            let mut m = model.clone();
            quantize_base(&mut m, st);
            for i in 0..reps.min(20) + 1 {
                let t0 = Instant::now();
                crate::cpu::generate(&m, None, &prompt, tokens, sampling);
                if i > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            ("cpu", format!("{} threads", rayon::current_num_threads()))
        }
    };
    let secs = median(&mut times);
    let out = json!({"generate_tokens_per_s": tokens as f64 / secs, "ms_per_token": secs * 1e3 / tokens as f64,
        "tokens": tokens, "backend": name, "device": device, "format": st.label(),
        "layers": model.config.n_layer, "embd": model.config.n_embd});
    if json_out {
        println!("{out}");
    } else {
        println!(
            "generation · {} · {} layers × {} wide · {tokens} tokens · {name} ({device}): {:.1} tokens/s ({:.2} ms/token)",
            st.label(),
            model.config.n_layer,
            model.config.n_embd,
            tokens as f64 / secs,
            secs * 1e3 / tokens as f64
        );
    }
    Ok(())
}

pub(super) fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// GFLOP/s of the f32 matmul and of the fused NF4 dequantize + matmul at n×n×n. On a real GPU n = 1024 and 4096;
/// on a CPU (our CPU executor, or an emulated adapter such as lavapipe) n = 256 and 512 so the run takes seconds.
/// `gpt2_products`: list GPT-2 124M's step products on the CPU instead of the shipped model's.
fn bench_matmul(backend: Backend, reps: usize, gpt2_products: bool, json_out: bool) -> Result<()> {
    use crate::cpu::{gemm, Mat};
    use crate::gpu::{submit, Category, GpuQuantWeight, Matmul, MatmulDequant, MatmulShape};
    use crate::quant::QuantizedTensor;
    let real_gpu = matches!(&backend, Backend::Gpu(g) if g.info.device_type != wgpu::DeviceType::Cpu);
    let sizes: &[usize] = if real_gpu { &[1024, 4096] } else { &[256, 512] };
    let mut r = rng::stream(1, "bench-matmul");
    let report = |kernel: &str, n: usize, secs: f64, device: &str| {
        let gflops = 2.0 * (n as f64).powi(3) / secs / 1e9;
        if json_out {
            println!("{}", json!({"kernel": kernel, "size": n, "ms": secs * 1e3, "gflops": gflops, "device": device}));
        } else {
            println!("{kernel:<14} {n:>5}³  {:>9.2} ms  {gflops:>9.1} GFLOP/s  ({device})", secs * 1e3);
        }
    };
    if !real_gpu && !json_out {
        println!("sizes reduced to {sizes:?} because this run is on a CPU");
    }
    for &n in sizes {
        let a: Vec<f32> = (0..n * n).map(|_| rand::RngExt::random_range(&mut r, -1.0f32..1.0)).collect();
        let b: Vec<f32> = (0..n * n).map(|_| rand::RngExt::random_range(&mut r, -0.1f32..0.1)).collect();
        let q = QuantizedTensor::quantize(&b, Storage::new(Format::Nf4, false)?);
        match &backend {
            Backend::Gpu(gpu) => {
                let name = gpu.info.name.clone();
                let (ga, gb) = (gpu.upload("a", &a, Category::Scratch)?, gpu.upload("b", &b, Category::Scratch)?);
                let gc = gpu.buffer("c", 4 * (n * n) as u64, Category::Scratch, wgpu::BufferUsages::empty())?;
                let gw = GpuQuantWeight::upload(gpu, "w", &q, n, n)?;
                let n32 = n as u32;
                let mm = Matmul::new(gpu).prepare(gpu, MatmulShape::plain(n32, n32, n32), ga.all(), gb.all(), gc.all());
                let mmq = MatmulDequant::new(gpu).prepare_forward(gpu, &gw, n32, ga.all(), None, gc.all());
                for (kernel, d) in [("matmul_f32", &mm), ("matmul_nf4", &mmq)] {
                    // GPU timestamps when the device offers them; otherwise wall time of submit + wait.
                    let mut times = Vec::new();
                    for i in 0..reps.min(20) + 1 {
                        let t0 = Instant::now();
                        let gpu_time = pollster::block_on(gpu.time_dispatch(d))?;
                        if gpu_time.is_none() {
                            submit(gpu, &[d]);
                            gpu.wait();
                        }
                        if i > 0 {
                            times.push(gpu_time.unwrap_or_else(|| t0.elapsed().as_secs_f64()));
                        }
                    }
                    report(kernel, n, median(&mut times), &name);
                }
            }
            Backend::Cpu => {
                let threads = format!("cpu, {} threads", rayon::current_num_threads());
                let mut c = vec![0.0f32; n * n];
                let mut times = Vec::new();
                for i in 0..reps.min(10) + 1 {
                    let t0 = Instant::now();
                    gemm(n, n, n, 1.0, Mat::new(&a, n), Mat::new(&b, n), 0.0, &mut c, n);
                    if i > 0 {
                        times.push(t0.elapsed().as_secs_f64());
                    }
                }
                report("matmul_f32", n, median(&mut times), &threads);
                let mut times = Vec::new();
                for i in 0..reps.min(10) + 1 {
                    let t0 = Instant::now();
                    let w = q.dequantize();
                    gemm(n, n, n, 1.0, Mat::new(&a, n), Mat::t(&w, n), 0.0, &mut c, n);
                    if i > 0 {
                        times.push(t0.elapsed().as_secs_f64());
                    }
                }
                report("matmul_nf4", n, median(&mut times), &threads);
            }
        }
    }
    if matches!(backend, Backend::Cpu) {
        bench_step_products(gpt2_products, json_out);
    }
    Ok(())
}

/// GFLOP/s of the CPU executor's multiply on the training step's products, measured as bench.html measures the page's:
/// the median of five calls of ~1 GFLOP each after half a second of the same calls. Here the operands are made once,
/// outside the timing; the page's timed calls make theirs (a ~0.2 M-element fill against a ~1 GFLOP call: about 1 %
/// of a call there), while GPT-2's products (`gpt2`: 40 M-element operands for the head) would be skewed by it.
fn bench_step_products(gpt2: bool, json_out: bool) {
    use crate::cpu::products::{reps_for, Operands, GPT2_STEP_PRODUCTS, STEP_PRODUCTS};
    let threads = rayon::current_num_threads();
    let (products, what) = if gpt2 {
        (&GPT2_STEP_PRODUCTS, "GPT-2 124M, batch 4 × 128")
    } else {
        (&STEP_PRODUCTS, "shipped model, batch 8 × 64")
    };
    if !json_out {
        println!("the training step's products ({what}), {threads} threads:");
    }
    for p in products {
        let reps = reps_for(p, 1e9);
        // The operands are made once: only the multiplies are timed.
        let mut operands = Operands::new(p.m, p.k, p.n, p.transpose_b);
        let mut run = || std::hint::black_box(operands.multiply(reps));
        let warm = Instant::now();
        while warm.elapsed().as_secs_f64() < 0.5 {
            run();
        }
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t0 = Instant::now();
                run();
                t0.elapsed().as_secs_f64()
            })
            .collect();
        let gflops = p.flops() * reps as f64 / median(&mut times) / 1e9;
        if json_out {
            println!(
                "{}",
                json!({"product": p.name, "m": p.m, "k": p.k, "n": p.n, "transpose_b": p.transpose_b,
                    "gflops": gflops, "cpu_threads": threads})
            );
        } else {
            println!("  {:<22} {:>4} × {:>5} × {:>5}  {gflops:>7.1} GFLOP/s", p.name, p.m, p.k, p.n);
        }
    }
}

/// Floating-point operations of one training step, counted from the shapes: forward matmuls 2·m·k·n, attention
/// 2·T·C per token per layer for scores and again for the weighted sum (causal: half of T² on average); backward
/// twice the forward for full fine-tuning (input and weight gradients), once for LoRA (input gradients only), plus
/// the adapters' own matmuls.
fn step_flops(cfg: &ModelConfig, adapters: Option<&Adapters>, b: usize, t: usize) -> f64 {
    let (c, l, v) = (cfg.n_embd as f64, cfg.n_layer as f64, cfg.vocab_size as f64);
    let tokens = (b * t) as f64;
    let matmul = 2.0 * tokens * (l * 12.0 * c * c + c * v);
    let attention = 2.0 * tokens * l * t as f64 * c; // 2 matmuls × 2 flops × T/2 positions × C
    let forward = matmul + attention;
    match adapters {
        None => 3.0 * forward,
        Some(ad) => {
            let adapter: f64 =
                ad.entries.iter().map(|e| 2.0 * tokens * e.rank as f64 * (e.d_in + e.d_out) as f64).sum();
            2.0 * forward + 3.0 * adapter
        }
    }
}

pub(super) fn quant(a: QuantArgs) -> Result<()> {
    let st = Storage::new(a.format, a.double_quant)?;
    let mut model = load_model_dir(&a.model)?;
    let reports = quantize_base(&mut model, st);
    let (mut values, mut constants, mut n) = (0u64, 0u64, 0u64);
    for r in &reports {
        let bits = 8.0 * (r.value_bytes + r.constant_bytes) as f64 / r.len as f64;
        if a.output.json {
            println!(
                "{}",
                json!({"tensor": r.name, "params": r.len, "value_bytes": r.value_bytes, "constant_bytes": r.constant_bytes,
                "bits_per_param": bits, "rmse": r.error.rmse, "max_abs_error": r.error.max_abs})
            );
        } else {
            println!(
                "{:<32} {:>9} params  {:.3} bits/param  rmse {:.3e}  max {:.3e}",
                r.name, r.len, bits, r.error.rmse, r.error.max_abs
            );
        }
        values += r.value_bytes;
        constants += r.constant_bytes;
        n += r.len as u64;
    }
    let bits = 8.0 * (values + constants) as f64 / n.max(1) as f64;
    if a.output.json {
        println!(
            "{}",
            json!({"format": st.label(), "params": n, "value_bytes": values, "constant_bytes": constants, "bits_per_param": bits})
        );
    } else {
        println!(
            "{}: {} quantized parameters, {} + {} bytes, {bits:.3} bits/param",
            st.label(),
            thousands(n),
            thousands(values),
            thousands(constants)
        );
    }
    Ok(())
}
