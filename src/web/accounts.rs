//! The numbers the page shows before training, computed from the settings alone: trainable and total parameters,
//! the memory breakdown of this run and of the three methods beside it, the same settings on large models, and
//! whether a run fits in what a browser tab can give it.

use crate::accounting::{self, AdapterSpec, Arch, Memory, MemoryQuery};
use crate::cpu::Activations;
use crate::figures::mib;
use crate::model::{ModelConfig, ParamLayout};
use crate::quant::Storage;
use crate::run::{Limits, Settings};
use crate::train::Method;
use crate::Result;
use serde::Serialize;

/// A memory breakdown by category, in bytes, with its total.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MemoryView {
    pub categories: Vec<(String, u64)>,
    pub total: u64,
}

impl From<Memory> for MemoryView {
    fn from(m: Memory) -> Self {
        MemoryView { categories: m.categories().iter().map(|(k, v)| (k.to_string(), *v)).collect(), total: m.total() }
    }
}

/// One row of the scale-up panel: these settings applied to a large model, from the accounting.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleRow {
    pub preset: String,
    pub params: u64,
    pub trainable: u64,
    pub percent: f64,
    /// Bytes to train in bf16 with batch 1 × 512 tokens and gradient checkpointing: full, LoRA (bf16 base),
    /// QLoRA (nf4 + double quantization).
    pub full_bytes: u64,
    pub lora_bytes: u64,
    pub qlora_bytes: u64,
}

/// Everything the page shows before training: counts and memory, computed from the settings alone.
#[derive(Clone, Debug, Serialize)]
pub struct Accounting {
    pub trainable: u64,
    pub total_params: u64,
    pub percent: f64,
    pub full_trainable: u64,
    /// The chosen configuration (fp32 training, the run's batch shape).
    pub memory: MemoryView,
    /// Full fine-tuning, LoRA on an fp32 base and QLoRA on nf4 + double quantization, same adapters and batch.
    pub compare: Vec<(String, MemoryView)>,
    pub scale_up: Vec<ScaleRow>,
    /// Floating-point operations of one training step's matrix products at the run's batch shape (what the page's
    /// step-time estimate on the CPU divides by the processor's measured multiply speed).
    pub step_flops: f64,
}

/// The matrix products of one training step of GPT-2 `c` at `batch` × `seq`, in floating-point operations: per
/// token and layer the four linear maps (24·d² for qkv, the attention's output, fc and proj) and attention's two
/// products over the context (4·seq·d at most), then the tied head (2·V·d). The backward pass takes the same again
/// for the input gradients and, in full fine-tuning, once more for the weight gradients; adapters add 6·r·(in + out)
/// per adapted matrix, forward and backward (`adapter_params` holds the sum of r·(in + out)).
pub fn step_flops(c: &ModelConfig, method: Method, batch: usize, seq: usize, adapter_params: u64) -> f64 {
    let (d, l, v, s) = (c.n_embd as f64, c.n_layer as f64, c.vocab_size as f64, seq as f64);
    let forward = l * (24.0 * d * d + 4.0 * s * d) + 2.0 * v * d;
    let passes = if method == Method::Full { 3.0 } else { 2.0 };
    (batch * seq) as f64 * (passes * forward + 6.0 * adapter_params as f64)
}

/// Our GPT-2 targets and their ranks in another family's terms: LLaMA's MLP has gate and up projections where GPT-2
/// has c_fc, and down where GPT-2 has mlp.c_proj.
fn targets_in(arch: &Arch, ranks: &[(String, usize)]) -> Vec<(String, u64)> {
    let llama = arch.family == accounting::Family::Llama;
    let mut out: Vec<(String, u64)> = Vec::new();
    for (t, r) in ranks {
        let names: &[&str] = match (llama, t.as_str()) {
            (true, "fc") => &["gate", "up"],
            (true, "proj") => &["down"],
            (true, "qkv") => &["q", "k", "v"],
            (_, other) => &[other][..],
        };
        out.extend(names.iter().map(|n| (n.to_string(), *r as u64)));
    }
    out
}

/// Counts and memory for `settings` on `model`, plus the scale-up presets.
pub fn accounting_of(settings: &Settings, model: &ModelConfig) -> Result<Accounting> {
    let spec = settings.validate(model)?;
    let arch = Arch::from_model(model);
    let ranks = settings.target_ranks()?;
    let adapters = AdapterSpec::with_ranks(&arch, &targets_in(&arch, &ranks))?;
    let full = accounting::full_params(&arch);
    let count = match spec.method {
        Method::Full => full,
        _ => accounting::lora_params(&arch, &adapters),
    };
    // This model trains in fp32 without checkpointing, at the run's batch shape.
    let query = |method: Method, storage: Storage| MemoryQuery {
        method,
        storage,
        dtype_bytes: 4,
        adapters: (method != Method::Full).then(|| adapters.clone()),
        batch: settings.batch as u64,
        seq: settings.seq as u64,
        checkpointing: false,
    };
    let memory = accounting::memory(&arch, &query(spec.method, spec.storage))?;
    let nf4dq = Storage::new(crate::quant::Format::Nf4, true)?;
    let mut compare = Vec::new();
    for (name, m, st) in
        [("full", Method::Full, Storage::FP32), ("lora", Method::Lora, Storage::FP32), ("qlora", Method::Qlora, nf4dq)]
    {
        compare.push((name.to_string(), accounting::memory(&arch, &query(m, st))?.into()));
    }
    let mut scale_up = Vec::new();
    for preset in ["gpt2", "gpt3-175b", "llama-7b", "llama-65b"] {
        let a = Arch::preset(preset)?;
        let spec_p = AdapterSpec::with_ranks(&a, &targets_in(&a, &ranks))?;
        let p = accounting::lora_params(&a, &spec_p);
        let seq = 512.min(a.ctx);
        let q = |m: Method, st: Storage| MemoryQuery {
            method: m,
            storage: st,
            dtype_bytes: 2,
            adapters: (m != Method::Full).then(|| spec_p.clone()),
            batch: 1,
            seq,
            checkpointing: true,
        };
        scale_up.push(ScaleRow {
            preset: preset.into(),
            params: p.total,
            trainable: p.trainable,
            percent: p.percent(),
            full_bytes: accounting::memory(&a, &q(Method::Full, Storage::FP32))?.total(),
            lora_bytes: accounting::memory(&a, &q(Method::Lora, Storage::FP32))?.total(),
            qlora_bytes: accounting::memory(&a, &q(Method::Qlora, nf4dq))?.total(),
        });
    }
    Ok(Accounting {
        trainable: count.trainable,
        total_params: count.total,
        percent: count.percent(),
        full_trainable: full.trainable,
        memory: memory.into(),
        compare,
        scale_up,
        step_flops: step_flops(
            model,
            spec.method,
            settings.batch,
            settings.seq,
            if spec.method == Method::Full { 0 } else { count.trainable },
        ),
    })
}

/// The memory a wasm32 module addresses: everything the page's engine holds lives there.
pub const ENGINE_ADDRESS_SPACE: u64 = 4 << 30;

/// What the engine keeps apart from the loaded base and the run: its code and stack, the reader's text (at most
/// 16 MiB), the tokenizer, the tensor being read while a model loads, and the allocator's slack.
pub const ENGINE_RESERVE: u64 = 1 << 30;

/// What the engine has for the loaded base and a run together.
pub const ENGINE_ROOM: u64 = ENGINE_ADDRESS_SPACE - ENGINE_RESERVE;

/// Bytes the loaded base takes in the engine at most: every parameter in fp32 (a model read whole is kept so; one
/// streamed from the reader's file may be kept smaller, in the format the page chose: [`loaded_bytes`]).
pub fn base_bytes(model: &ModelConfig) -> u64 {
    loaded_bytes(model, Storage::FP32)
}

/// Bytes a base read in `storage` holds in the engine (what `Gpt2::bytes` says of it once loaded): the block linear
/// weights in that format, values and quantization constants, and every other parameter in fp32.
pub fn loaded_bytes(model: &ModelConfig, storage: Storage) -> u64 {
    if storage == Storage::FP32 {
        return 4 * ParamLayout::new(model).total() as u64;
    }
    let arch = Arch::from_model(model);
    let per_layer: u64 =
        arch.linears().iter().map(|(_, i, o)| storage.value_bytes(i * o) + storage.constant_bytes(i * o)).sum();
    4 * ParamLayout::without_block_linears(model).total() as u64 + arch.n_layer * per_layer
}

/// What a run may hold in the page's engine beside a base loaded in fp32.
pub fn run_budget(model: &ModelConfig) -> u64 {
    run_budget_beside(base_bytes(model))
}

/// What a run may hold in the page's engine beside a loaded base of `loaded_bytes`.
pub fn run_budget_beside(loaded_bytes: u64) -> u64 {
    ENGINE_ROOM.saturating_sub(loaded_bytes)
}

/// What a run of `method` keeping its base in `run` may hold in the engine beside a base loaded in `loaded`
/// (`loaded_bytes` of it): all the room where the run shares that base (LoRA or QLoRA in the format it was loaded in),
/// since [`memory_needed`] counts the run's base and that base is the loaded one, not a second copy; else what is
/// left beside the loaded base (full fine-tuning trains a copy; another format is read again).
pub fn run_budget_on(loaded: Storage, loaded_bytes: u64, method: Method, run: Storage) -> u64 {
    if method != Method::Full && loaded == run {
        ENGINE_ROOM
    } else {
        run_budget_beside(loaded_bytes)
    }
}

/// A model the page can load with its frozen base kept as `settings` keep it, and then train: the base as loaded and
/// the smallest run of these settings on it (batch 1 × the shortest sequence, sharing the base; LoRA over fp32 where the
/// settings fine-tune fully, since the base is loaded in fp32 for that) must fit the engine. A model that does not
/// is refused before a byte of its weights is read — or downloaded — rather than running out of memory on the way;
/// the message names the narrower bases it would load with. Whether a larger run fits is asked before Train
/// ([`run_fit_problem`]) and at Train ([`check_memory_budget`]).
pub fn check_model_fits(model: &ModelConfig, settings: &Settings) -> Result<()> {
    let full = settings.method.parse::<Method>().is_ok_and(|m| m == Method::Full);
    let smallest = if full {
        Settings { method: "lora".into(), format: "fp32".into(), dq: false, ..settings.clone() }
    } else {
        settings.clone()
    };
    let smallest = Settings { batch: 1, seq: Limits::PAGE.min_seq, ..smallest };
    let storage = smallest.base_storage()?;
    // Settings this model cannot take (a rank above its width, a sequence beyond its context) are for their own
    // controls to say: the load is then judged by its base alone.
    let need = |run: &Settings, base: Storage| memory_needed(run, model).unwrap_or_else(|_| loaded_bytes(model, base));
    if need(&smallest, storage) <= ENGINE_ROOM {
        return Ok(());
    }
    let params = ParamLayout::new(model).total() as f64 / 1e6;
    let loaded = mib(loaded_bytes(model, storage));
    let room = mib(ENGINE_ROOM);
    let start = if full {
        format!(
            "full fine-tuning loads this model's {params:.0} M parameters in fp32, {loaded}, and with the smallest \
             run beside them it needs more than the {room} the page's engine can use in a tab"
        )
    } else {
        format!(
            "this model has {params:.0} M parameters: with its base kept in {} they take {loaded}, and with the \
             smallest run beside them they need more than the {room} the page's engine can use in a tab",
            storage.label()
        )
    };
    // The narrower bases it would load with (each with the smallest run of these settings): the way out, in numbers.
    let mut fits = Vec::new();
    for (method, format, dq) in [("lora", "fp16", false), ("qlora", "int8", false), ("qlora", "nf4", true)] {
        let narrower = Settings { method: method.into(), format: format.into(), dq, ..smallest.clone() };
        let base = narrower.base_storage()?;
        let bits = |s: Storage| s.bits_per_param(1 << 20);
        if bits(base) < bits(storage) && need(&narrower, base) <= ENGINE_ROOM {
            let name = if method == "lora" { "LoRA" } else { "QLoRA" };
            fits.push(format!("{} ({name}, {})", base.label(), mib(loaded_bytes(model, base))));
        }
    }
    Err(crate::Error::new(match fits.as_slice() {
        [] => format!("{start}; it is too large for the page even in 4 bits"),
        [one] => format!("{start}; it loads with its base in {one}"),
        [rest @ .., last] => format!("{start}; it loads with its base in {} or {last}", rest.join(", ")),
    }))
}

/// Why a run of `settings` would not fit the page's engine, if it would not: beside (or sharing) the base loaded as
/// `loaded` (its storage and bytes) or, before a load, the base as these settings would load it. The page says it
/// before Train, with the numbers [`check_memory_budget`] gives at Train.
pub fn run_fit_problem(
    settings: &Settings,
    model: &ModelConfig,
    loaded: Option<(Storage, u64)>,
) -> Result<Option<String>> {
    let spec = settings.validate(model)?;
    let (storage, bytes) = loaded.unwrap_or_else(|| (spec.storage, loaded_bytes(model, spec.storage)));
    let budget = run_budget_on(storage, bytes, spec.method, spec.storage);
    Ok(check_memory_budget(settings, model, budget).err().map(|e| e.to_string()))
}

/// Bytes a run of `settings` holds in the engine's memory, estimated before anything is allocated: the accounting's
/// fp32 training memory with the base in the run's format (the CPU executor keeps it so); what the CPU executor keeps
/// beyond the accounting — the tied embedding in fp32 below an fp32 base (its values are rounded to 16 bits; the head
/// multiplies by it in fp32) and its scratch (a chunk of the head's logits, the backward pass's buffers, one linear
/// weight dequantized); and the copies a page run keeps — the snapshot a divergence returns to (parameters and both
/// AdamW moments), the starting parameters until step 0 is scored and, for full fine-tuning, the untouched base for
/// "before" text.
pub fn memory_needed(settings: &Settings, model: &ModelConfig) -> Result<u64> {
    let spec = settings.validate(model)?;
    let arch = Arch::from_model(model);
    let ranks = settings.target_ranks()?;
    let adapters = AdapterSpec::with_ranks(&arch, &targets_in(&arch, &ranks))?;
    let full = spec.method == Method::Full;
    let query = MemoryQuery {
        method: spec.method,
        storage: spec.storage,
        dtype_bytes: 4,
        adapters: (!full).then_some(adapters.clone()),
        batch: settings.batch as u64,
        seq: settings.seq as u64,
        checkpointing: false,
    };
    let training = accounting::memory(&arch, &query)?.total();
    let stored = spec.storage != Storage::FP32;
    let embedding_in_fp32 = if stored { 2 * arch.embedding_params() } else { 0 };
    let max_rank = (!full).then(|| ranks.iter().map(|(_, r)| *r).max().unwrap_or(0));
    let scratch = Activations::training_scratch_bytes(model, max_rank, settings.batch, settings.seq, stored);
    let trainable = match spec.method {
        Method::Full => accounting::full_params(&arch).trainable,
        _ => accounting::lora_params(&arch, &adapters).trainable,
    };
    let untouched_base = if full { accounting::full_params(&arch).total * 4 } else { 0 };
    Ok(training + embedding_in_fp32 + scratch + 4 * trainable * 4 + untouched_base)
}

/// Refuses settings whose run would not fit in `budget` bytes, before anything is allocated, naming the estimate
/// and the largest batch (or else sequence length) that fits.
pub fn check_memory_budget(settings: &Settings, model: &ModelConfig, budget: u64) -> Result<()> {
    let need = memory_needed(settings, model)?;
    if need <= budget {
        return Ok(());
    }
    let fits = |s: &Settings| memory_needed(s, model).is_ok_and(|n| n <= budget);
    let batch = (1..settings.batch).rev().find(|&b| fits(&Settings { batch: b, ..settings.clone() }));
    let shortest = Limits::PAGE.min_seq;
    let seq = (shortest..settings.seq).rev().find(|&t| fits(&Settings { seq: t, batch: 1, ..settings.clone() }));
    let smallest = format!("even batch 1 × sequence {shortest}, the smallest run, does not fit");
    let suggestion = match (batch, seq) {
        (Some(b), _) => format!("try a batch of {b} or less"),
        (None, Some(t)) => format!("try batch 1 with a sequence of {t} or less"),
        (None, None) if settings.method == "full" => {
            format!("{smallest}: try LoRA or QLoRA instead of full fine-tuning")
        }
        // What is left is the frozen base: fewer bits for it is the way out, down to QLoRA's 4.
        (None, None) => match settings.base_storage() {
            Ok(storage) if storage.format.value_bits() > 4 => format!(
                "{smallest}, because of the frozen base in {}: keep it in fewer bits (QLoRA, nf4 with double \
                 quantization)",
                storage.label()
            ),
            _ => format!("{smallest}: this model is too large for a tab"),
        },
    };
    Err(crate::Error::new(format!(
        "this run would need about {} (batch {} × sequence {}), more than the {} a tab can give it; {suggestion}",
        mib(need),
        settings.batch,
        settings.seq,
        mib(budget)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gpt2;
    use crate::run::Run;

    #[test]
    fn a_step_of_gpt2_small_counts_its_products() {
        let c = ModelConfig::hf_preset("gpt2", None).unwrap();
        let (d, t, s) = (768.0f64, 32.0f64, 32.0f64);
        // Per token: qkv (d → 3d), the attention output (d → d), fc (d → 4d), proj (4d → d) at 2 flops per
        // multiply-add; the attention's scores and weighted sum over 32 positions; the head over 50,257 tokens.
        let layer = 2.0 * (d * 3.0 * d + d * d + d * 4.0 * d + 4.0 * d * d) + 2.0 * 2.0 * s * d;
        let forward = t * (12.0 * layer + 2.0 * 50257.0 * d);
        assert_eq!(step_flops(&c, Method::Qlora, 1, 32, 0), 2.0 * forward);
        assert_eq!(step_flops(&c, Method::Full, 1, 32, 0), 3.0 * forward);
        // ≈ 15.9 GFLOP: GPT-2's QLoRA step at 1 × 32, which the page's CPU executor takes in ~0.6 s on 2 cores.
        assert!((step_flops(&c, Method::Qlora, 1, 32, 0) / 1e9 - 15.89).abs() < 0.01);
        assert_eq!(
            step_flops(&c, Method::Lora, 2, 32, 100) - 2.0 * step_flops(&c, Method::Lora, 1, 32, 0),
            6.0 * 64.0 * 100.0
        );
    }

    #[test]
    fn accounting_of_the_default_settings_matches_the_accounting_module() {
        let cfg = ModelConfig::bytes(4, 4, 192, 256).unwrap();
        let s = Settings::default();
        let acc = accounting_of(&s, &cfg).unwrap();
        // Six targets at r = 8 on 4 blocks of width 192: q, k, v, o are 192→192, fc 192→768, proj 768→192.
        let per_block = 8 * (4 * (192 + 192) + 2 * (192 + 768));
        assert_eq!(acc.trainable, 4 * per_block as u64);
        assert_eq!(acc.full_trainable, Gpt2::init(cfg.clone(), 0).params.len() as u64);
        assert_eq!(acc.compare.len(), 3);
        assert!(acc.compare[2].1.total < acc.compare[1].1.total && acc.compare[1].1.total < acc.compare[0].1.total);
        let llama65 = acc.scale_up.iter().find(|r| r.preset == "llama-65b").unwrap();
        assert!(llama65.qlora_bytes < 48_000_000_000, "QLoRA's 65B on one 48 GB GPU: {}", llama65.qlora_bytes);
        // A full run keeps an fp32 base; its memory matches the accounting of full fine-tuning.
        let full = Settings { method: "full".into(), format: "fp32".into(), dq: false, ..Default::default() };
        let acc_full = accounting_of(&full, &cfg).unwrap();
        assert_eq!(acc_full.trainable, acc.full_trainable);
        assert_eq!(acc_full.memory.total, acc.compare[0].1.total);
    }

    #[test]
    fn a_run_over_the_memory_budget_is_refused_with_what_would_fit() {
        let cfg = ModelConfig::bytes(4, 4, 192, 256).unwrap();
        let s = Settings { batch: 64, seq: 256, ..Default::default() };
        let need = memory_needed(&s, &cfg).unwrap();
        // Activations grow with the batch: half the batch, about half the activations.
        let half = memory_needed(&Settings { batch: 32, ..s.clone() }, &cfg).unwrap();
        assert!(half < need && need < 2 * half + (8 << 20), "{half} {need}");
        check_memory_budget(&s, &cfg, need).unwrap();
        let err = check_memory_budget(&s, &cfg, need - 1).unwrap_err().to_string();
        assert!(err.contains(&format!("about {} (batch 64 × sequence 256)", mib(need))), "{err}");
        assert!(err.contains("try a batch of 63 or less"), "{err}");
        let budget = memory_needed(&Settings { batch: 1, seq: 100, ..s.clone() }, &cfg).unwrap();
        let err = check_memory_budget(&s, &cfg, budget).unwrap_err().to_string();
        assert!(err.contains("try batch 1 with a sequence of 100 or less"), "{err}");
        let full = Settings { method: "full".into(), format: "fp32".into(), dq: false, ..s };
        let err = check_memory_budget(&full, &cfg, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("try LoRA or QLoRA"), "{err}");
        // The page's largest settings on the shipped model's shape fit its budget; a long context with many heads
        // (the attention probabilities grow with heads × sequence²) does not.
        assert!(memory_needed(&full, &cfg).unwrap() < run_budget(&cfg));
        let long = ModelConfig::bytes(1, 16, 64, 1024).unwrap();
        assert!(memory_needed(&Settings { seq: 1024, ..full }, &long).unwrap() > run_budget(&long));
    }

    /// A run on the CPU executor holds what the accounting counts for its settings — the base in the run's format,
    /// byte for byte — except the tied embedding, which it keeps in fp32 below an fp32 base (2 more bytes per value
    /// than the accounting's 16 bits); and the page's estimate of a run's memory covers what the run measures.
    #[test]
    #[cfg(not(target_arch = "wasm32"))] // pollster drives the run natively; the browser tests run it in the page
    fn a_cpu_run_holds_what_the_accounting_counts() {
        let cfg = ModelConfig::bytes(2, 2, 64, 32).unwrap();
        let base = Gpt2::init(cfg.clone(), 0);
        let embedding = 4 * (256 * 64) as u64;
        for (method, format, dq, extra) in [
            ("qlora", "nf4", true, embedding / 2),
            ("qlora", "int8", false, embedding / 2),
            ("lora", "fp16", false, embedding / 2),
            ("lora", "fp32", false, 0),
            ("full", "fp32", false, 0),
        ] {
            let s =
                Settings { method: method.into(), format: format.into(), dq, batch: 2, seq: 16, ..Default::default() };
            let mut run = Run::new(&base, s.clone(), None, None).unwrap();
            pollster::block_on(run.step(false)).unwrap();
            let measured = run.measured_memory().unwrap();
            let theory = accounting_of(&s, &cfg).unwrap().memory;
            for (name, want) in theory.categories {
                let got = measured.iter().find(|(n, _)| *n == name).unwrap().1;
                let want = if name == "base_weights" { want + extra } else { want };
                assert_eq!(got, want, "{method} {format}: {name}");
            }
            // Beside what its executor holds, a run keeps 16 bytes per trainable value (the snapshot's parameters and
            // moments, the starting parameters) and, for full fine-tuning, the untouched base: the estimate is exact.
            let held: u64 = measured.iter().map(|(_, b)| b).sum();
            let kept = 16 * run.trainable() as u64 + if method == "full" { 4 * base.params.len() as u64 } else { 0 };
            assert_eq!(held + kept, memory_needed(&s, &cfg).unwrap(), "{method} {format}");
        }
    }

    #[test]
    fn a_model_is_refused_only_when_its_base_in_the_chosen_format_leaves_no_room_for_a_run() {
        let settings_in = |method: &str, format: &str, dq: bool, model: &ModelConfig| Settings {
            method: method.into(),
            format: format.into(),
            dq,
            ..Settings::defaults_for(model)
        };
        // GPT-2 124M: 0.5 GB in fp32; its runs keep what is left beside the base.
        let small = ModelConfig::hf_preset("gpt2", None).unwrap();
        assert_eq!(base_bytes(&small), 4 * 124_439_808);
        assert_eq!(run_budget(&small), (3 << 30) - 4 * 124_439_808);
        let qlora = Settings { batch: 4, seq: 128, ..Settings::defaults_for(&small) };
        check_memory_budget(&qlora, &small, run_budget(&small)).unwrap();
        // gpt2-medium (355 M) loads in any format, fp32 included, and with any method.
        let medium = ModelConfig::hf_preset("gpt2-medium", None).unwrap();
        for model in [&small, &medium] {
            for (method, format, dq) in [("full", "fp32", false), ("lora", "fp32", false), ("qlora", "nf4", true)] {
                check_model_fits(model, &settings_in(method, format, dq, model)).unwrap();
            }
        }
        // gpt2-large (774 M): 2,953 MiB in fp32, beyond the engine's 3,072 MiB once a run is beside it; in 16 bits,
        // 8 bits or 4 bits its base loads, and the message for fp32 says what nf4 would take.
        let large = ModelConfig::hf_preset("gpt2-large", None).unwrap();
        assert_eq!(ParamLayout::new(&large).total(), 774_030_080);
        for (method, format, dq) in [("lora", "fp16", false), ("qlora", "int8", false), ("qlora", "nf4", true)] {
            check_model_fits(&large, &settings_in(method, format, dq, &large)).unwrap();
        }
        let in_mib = |format, dq| mib(loaded_bytes(&large, Storage::new(format, dq).unwrap()));
        let nf4 = in_mib(crate::quant::Format::Nf4, true);
        let way_out = format!(
            "; it loads with its base in fp16 (LoRA, {}), int8 (QLoRA, {}) or nf4+dq (QLoRA, {nf4})",
            in_mib(crate::quant::Format::Fp16, false),
            in_mib(crate::quant::Format::Int8, false)
        );
        let room = "the smallest run beside them they need more than the 3,072 MiB the page's engine can use in a tab";
        let e = check_model_fits(&large, &settings_in("lora", "fp32", false, &large)).unwrap_err().to_string();
        let lora = "this model has 774 M parameters: with its base kept in fp32 they take 2,952 MiB, and with ";
        assert_eq!(e, format!("{lora}{room}{way_out}"));
        // Full fine-tuning loads the base in fp32 too; the message says so.
        let e = check_model_fits(&large, &settings_in("full", "fp32", false, &large)).unwrap_err().to_string();
        assert!(e.starts_with("full fine-tuning loads this model's 774 M parameters in fp32, 2,952 MiB,"), "{e}");
        assert!(e.ends_with(&way_out), "{e}");
        // From fp16, were it too wide (80 such layers: more than config.json allows), only narrower bases are offered.
        let huge = ModelConfig { n_layer: 80, ..large.clone() };
        let e = check_model_fits(&huge, &settings_in("lora", "fp16", false, &huge)).unwrap_err().to_string();
        assert!(e.starts_with("this model has 1640 M parameters: with its base kept in fp16"), "{e}");
        assert!(e.contains("; it loads with its base in int8 (QLoRA, ") && e.contains(" or nf4+dq (QLoRA, "), "{e}");
        // Settings this model cannot take (its context is shorter than the page's shortest sequence) do not stop the
        // load: their own control says what is wrong.
        let short = ModelConfig::bytes(1, 1, 8, 4).unwrap();
        check_model_fits(&short, &Settings::defaults_for(&short)).unwrap();
        // A vocabulary of 2^20 at width 768: 805 M parameters, nearly all in the embedding, which stays in fp32.
        let wide = ModelConfig { vocab_size: 1 << 20, n_layer: 1, ..small.clone() };
        let e = check_model_fits(&wide, &settings_in("qlora", "nf4", true, &wide)).unwrap_err().to_string();
        assert!(e.ends_with("it is too large for the page even in 4 bits"), "{e}");
    }

    /// A run on gpt2-large shares the base loaded in its format (counting it twice would refuse LoRA over fp16 at the
    /// defaults); one that needs the base in fp32 beside a 4-bit load is refused with the way out.
    #[test]
    fn a_run_sharing_the_loaded_base_has_the_room_of_both() {
        let large = ModelConfig::hf_preset("gpt2-large", None).unwrap();
        let fp16 = Storage::new(crate::quant::Format::Fp16, false).unwrap();
        let lora16 =
            Settings { method: "lora".into(), format: "fp16".into(), dq: false, ..Settings::defaults_for(&large) };
        let loaded = loaded_bytes(&large, fp16);
        check_memory_budget(&lora16, &large, run_budget_on(fp16, loaded, Method::Lora, fp16)).unwrap();
        assert!(check_memory_budget(&lora16, &large, run_budget_beside(loaded)).is_err());
        let nf4 = Storage::new(crate::quant::Format::Nf4, true).unwrap();
        let lora32 = Settings { format: "fp32".into(), ..lora16 };
        let budget = run_budget_on(nf4, loaded_bytes(&large, nf4), Method::Lora, Storage::FP32);
        assert_eq!(budget, run_budget_beside(loaded_bytes(&large, nf4)));
        let e = check_memory_budget(&lora32, &large, budget).unwrap_err().to_string();
        assert!(e.contains("because of the frozen base in fp32: keep it in fewer bits (QLoRA"), "{e}");
        // Full fine-tuning never shares: it trains a copy of its own.
        assert_eq!(run_budget_on(Storage::FP32, 7, Method::Full, Storage::FP32), run_budget_beside(7));
    }

    /// Before Train, the page learns whether a run fits: before a load as the settings would load the base, after one
    /// beside the base as loaded.
    #[test]
    fn whether_a_run_fits_is_known_before_train() {
        let medium = ModelConfig::hf_preset("gpt2-medium", None).unwrap();
        let qlora = Settings::defaults_for(&medium);
        assert_eq!(run_fit_problem(&qlora, &medium, None).unwrap(), None);
        // Full fine-tuning of 355 M parameters: weights, gradients and AdamW moments in fp32 alone are 5.3 GiB.
        let full = Settings { method: "full".into(), format: "fp32".into(), dq: false, ..qlora.clone() };
        let e = run_fit_problem(&full, &medium, None).unwrap().expect("too large");
        assert!(e.ends_with("try LoRA or QLoRA instead of full fine-tuning"), "{e}");
        // gpt2-large loaded in nf4 + dq: QLoRA over it fits; LoRA over fp32 would read the base again beside it.
        let large = ModelConfig::hf_preset("gpt2-large", None).unwrap();
        let nf4 = Storage::new(crate::quant::Format::Nf4, true).unwrap();
        let loaded = Some((nf4, loaded_bytes(&large, nf4)));
        let defaults = Settings::defaults_for(&large);
        assert_eq!(run_fit_problem(&defaults, &large, loaded).unwrap(), None);
        let lora32 = Settings { method: "lora".into(), format: "fp32".into(), dq: false, ..defaults };
        let e = run_fit_problem(&lora32, &large, loaded).unwrap().expect("too large");
        assert!(e.contains("because of the frozen base in fp32"), "{e}");
        // Bad settings are the settings' problem, said at their control, not this one's.
        assert!(run_fit_problem(&Settings { batch: 0, ..lora32 }, &large, loaded).is_err());
    }

    /// What a base loaded in each format holds is what the loaded model says it holds, byte for byte.
    #[test]
    fn loaded_bytes_are_those_of_the_base_kept_in_each_format() {
        let cfg = ModelConfig::bytes(2, 2, 96, 32).unwrap();
        let base = Gpt2::init(cfg.clone(), 1);
        let dq = |f: crate::quant::Format| f.supports_double_quant().then_some(true);
        let storages = crate::quant::Format::ALL
            .into_iter()
            .flat_map(|f| [Some(false), dq(f)].into_iter().flatten().map(move |d| Storage::new(f, d).unwrap()));
        for storage in storages {
            assert_eq!(crate::cpu::stored_base(&base, storage).bytes(), loaded_bytes(&cfg, storage), "{storage:?}");
        }
    }

    #[test]
    fn per_target_ranks_are_counted_as_the_engine_builds_them() {
        let cfg = ModelConfig::bytes(2, 2, 32, 32).unwrap();
        let s = Settings { ranks: "fc:16,q:2".into(), seq: 16, ..Default::default() };
        let acc = accounting_of(&s, &cfg).unwrap();
        // q at 2, k, v, o, proj at 8, fc at 16: width 32, MLP 128.
        let per_block = 2 * 64 + 8 * (3 * 64 + 160) + 16 * 160;
        assert_eq!(acc.trainable, 2 * per_block as u64);
        let run = Run::new(Gpt2::init(cfg, 0), s.clone(), None, None).unwrap();
        assert_eq!(run.trainable() as u64, acc.trainable);
        // LLaMA's gate and up take fc's rank, down takes proj's.
        let uniform =
            accounting_of(&Settings { seq: 16, ..Default::default() }, &ModelConfig::bytes(2, 2, 32, 32).unwrap())
                .unwrap();
        let (a, b) = (&acc.scale_up[2], &uniform.scale_up[2]);
        assert_eq!(a.preset, "llama-7b");
        let (d, f) = (4096i64, 11008i64);
        let delta = 32 * ((2 - 8) * 2 * d + (16 - 8) * 2 * (d + f));
        assert_eq!(a.trainable as i64 - b.trainable as i64, delta);
    }
}
