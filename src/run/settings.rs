//! A run's settings: one struct shared by the page, the worker, the URL (see `web::link`), the command line and the
//! checkpoints. Strings stay strings (they travel to JavaScript as they are); [`Settings::check`] turns them into the
//! engine's types within a set of [`Limits`], naming the setting at fault, and [`Settings::settle`] replaces each
//! faulty setting by what it follows from, so the page keeps every other number live.

use crate::data::tasks::{Task, TextTask};
use crate::lora::{parse_targets, LoraConfig, Target};
use crate::model::ModelConfig;
use crate::quant::{Format, Storage};
use crate::train::{Method, OptimConfig, FULL_KEEPS_FP32};
use crate::{ensure, Error, Result};
use serde::{Deserialize, Serialize};

/// Largest values the page accepts: beyond them a step takes minutes in a browser tab.
pub const MAX_RANK: usize = 64;
pub const MAX_BATCH: usize = 64;
pub const MAX_STEPS: usize = 5000;
/// Scaling and step size beyond these only blow a run up; the same bounds on the page and the command line.
pub const MAX_ALPHA: f32 = 1024.0;
pub const MAX_LR: f32 = 1.0;

/// The bounds a run's numbers are held to: the page's keep a step within seconds in a browser tab; the command line
/// allows whatever the machine can do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_rank: usize,
    pub max_batch: usize,
    pub max_steps: usize,
    pub min_seq: usize,
    pub max_seed: u64,
}

impl Limits {
    /// The page's seed fits 32 bits: a link and JavaScript's numbers (exact to 2^53) carry it unchanged.
    pub const PAGE: Limits = Limits {
        max_rank: MAX_RANK,
        max_batch: MAX_BATCH,
        max_steps: MAX_STEPS,
        min_seq: 8,
        max_seed: u32::MAX as u64,
    };
    pub const CLI: Limits =
        Limits { max_rank: 4096, max_batch: 4096, max_steps: 10_000_000, min_seq: 1, max_seed: u64::MAX };
}

/// Every setting of a run. The page sets the first fourteen (its controls and link parameters); the recipe settings
/// after them (warmup, weight decay, gradient clipping, adapter dropout, rsLoRA) keep their defaults there and are set
/// by the command line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub method: String,
    pub r: usize,
    /// Ranks that differ from `r` for some targets, as `target:rank` pairs (`fc:16,q:2`); empty: `r` everywhere.
    pub ranks: String,
    pub alpha: f32,
    pub targets: Vec<String>,
    pub format: String,
    pub dq: bool,
    /// A and B rounded through this format for a second validation loss: `bf16` is the QLoRA paper's adapter dtype,
    /// `fp16` and `int4` the claim some write that QLoRA quantizes the adapters; "none" keeps them fp32, as PEFT does.
    pub adapter_storage: String,
    pub lr: f32,
    pub batch: usize,
    pub seq: usize,
    pub steps: usize,
    pub seed: u64,
    /// A built-in task name, or `text` for the user's own text.
    pub task: String,
    /// Warmup steps (more than the run has: the rate never reaches `lr`); None: the recipe's default
    /// ([`OptimConfig::with_defaults`]).
    pub warmup: Option<usize>,
    pub weight_decay: f32,
    /// Largest gradient norm (0: no clipping).
    pub grad_clip: f32,
    /// Adapter dropout on the input of each adapted matrix.
    pub dropout: f32,
    /// Scale adapters by α/√r (rsLoRA) instead of α/r.
    pub rslora: bool,
}

/// Models above this many parameters take the large-model defaults ([`Settings::defaults_for`]).
const LARGE_MODEL_PARAMS: usize = 20_000_000;

impl Settings {
    /// The page's defaults for `model`: [`Settings::default`] for small models like the built-in one; for a model of
    /// GPT-2's size (over 20 M parameters) a batch, sequence and run that suit a laptop's integrated GPU — 4 × 64
    /// tokens (≈ 127 GFLOP a step on GPT-2 124M, well under a second at a few hundred GFLOP/s) for 100 steps. Links
    /// name only what differs from these, so the model a link names decides what its absent settings mean.
    pub fn defaults_for(model: &ModelConfig) -> Settings {
        let d = Settings::default();
        if crate::model::ParamLayout::new(model).total() <= LARGE_MODEL_PARAMS {
            return d;
        }
        Settings { batch: 4, seq: 64, steps: 100, ..d }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            method: "qlora".into(),
            r: 8,
            ranks: String::new(),
            alpha: 16.0,
            targets: ["q", "k", "v", "o", "fc", "proj"].map(String::from).to_vec(),
            format: "nf4".into(),
            dq: true,
            adapter_storage: "none".into(),
            lr: 3e-3,
            batch: 8,
            seq: 64,
            steps: 300,
            seed: 0,
            task: "even".into(),
            warmup: None,
            weight_decay: 0.0,
            grad_clip: 1.0,
            dropout: 0.0,
            rslora: false,
        }
    }
}

/// Settings turned into what the engine takes.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub method: Method,
    pub storage: Storage,
    pub lora: Option<LoraConfig>,
    pub adapter_storage: Option<Storage>,
    pub optim: OptimConfig,
    pub batch: usize,
    pub seq: usize,
    pub seed: u64,
}

/// The names the URL and the page use for settings (also the names `hide=` accepts in an embed).
pub const SETTING_NAMES: [&str; 15] = [
    "method", "r", "ranks", "alpha", "targets", "format", "dq", "astore", "lr", "batch", "seq", "steps", "seed",
    "task", "data",
];

/// The recipe settings the command line sets and the page leaves at their defaults (field names, as problems name them).
pub const RECIPE_NAMES: [&str; 5] = ["warmup", "weight_decay", "grad_clip", "dropout", "rslora"];

/// A setting that cannot be used as it is: the control (and link parameter) it belongs to, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A name from [`SETTING_NAMES`] or [`RECIPE_NAMES`].
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(field: &str, message: impl Into<String>) -> Problem {
        Problem { field: field.into(), message: message.into() }
    }
}

/// The page's word for a number box whose text is no number (www/js/controls.js sends it).
pub const NOT_A_NUMBER: &str = "not a number";

/// What a number box held, for a message: "got 1.5", "not a number", or "the box is empty" (JavaScript's `null`).
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "the box is empty".into(),
        // What the page sends for a number box holding text (the browser keeps the text to itself: `badInput`).
        serde_json::Value::String(s) if s == NOT_A_NUMBER => NOT_A_NUMBER.into(),
        serde_json::Value::String(s) => format!("got {s:?}"),
        other => format!("got {other}"),
    }
}

/// `Err(Problem)` for `field` unless `cond` holds.
fn require(cond: bool, field: &str, message: impl FnOnce() -> String) -> std::result::Result<(), Problem> {
    if cond {
        Ok(())
    } else {
        Err(Problem::new(field, message()))
    }
}

/// Why `method` cannot train on a base stored as `format`, if it cannot: full fine-tuning trains fp32 weights, LoRA
/// keeps a 16/32-bit frozen base, QLoRA a quantized one.
pub fn method_format_conflict(method: Method, format: Format) -> Option<String> {
    let quantized = format.is_blockwise();
    match method {
        Method::Full if format != Format::Fp32 => Some(format!("{FULL_KEEPS_FP32} (not {format})")),
        Method::Lora if quantized => {
            // Every quantized format's name starts with a vowel sound: an int8, an fp4, an nf4.
            Some(format!("LoRA keeps its frozen base in 16 or 32 bits; an {format} base is QLoRA (method=qlora)"))
        }
        Method::Qlora if !quantized => Some(format!(
            "QLoRA keeps its frozen base quantized (int8, int4, fp4 or nf4); {} {format} base is LoRA (method=lora)",
            if format == Format::Bf16 { "a" } else { "an" }
        )),
        _ => None,
    }
}

/// The method a base format belongs to when only the format is chosen: quantized formats are QLoRA's, 16/32-bit
/// ones LoRA's.
pub fn method_for_format(format: Format) -> Method {
    if format.is_blockwise() {
        Method::Qlora
    } else {
        Method::Lora
    }
}

/// Whether a base stored as `format` gets double quantization unless told otherwise: wherever it applies, as in the
/// QLoRA paper's recipe.
pub fn default_double_quant(format: Format) -> bool {
    format.supports_double_quant()
}

impl Settings {
    /// Checks every setting against the model within the page's limits and returns the engine's view of them; the
    /// first problem is the error.
    pub fn validate(&self, model: &ModelConfig) -> Result<RunSpec> {
        self.validate_within(model, &Limits::PAGE)
    }

    /// [`Settings::validate`] within `limits`.
    pub fn validate_within(&self, model: &ModelConfig, limits: &Limits) -> Result<RunSpec> {
        self.check_within(model, limits).map_err(|p| Error::new(p.message))
    }

    /// [`Settings::validate`], naming the setting at fault.
    pub fn check(&self, model: &ModelConfig) -> std::result::Result<RunSpec, Problem> {
        self.check_within(model, &Limits::PAGE)
    }

    /// [`Settings::check`] within `limits`.
    pub fn check_within(&self, model: &ModelConfig, limits: &Limits) -> std::result::Result<RunSpec, Problem> {
        let method: Method = self.method.parse().map_err(|e: Error| Problem::new("method", e.to_string()))?;
        let format: Format = self.format.parse().map_err(|e: Error| Problem::new("format", e.to_string()))?;
        if let Some(why) = method_format_conflict(method, format) {
            return Err(Problem::new("format", why));
        }
        let storage = match method {
            Method::Full => {
                require(!self.dq, "dq", || {
                    "double quantization applies to a quantized base, not to full fine-tuning".into()
                })?;
                Storage::FP32
            }
            _ => Storage::new(format, self.dq).map_err(|e| Problem::new("dq", e.to_string()))?,
        };
        require(self.r >= 1 && self.r <= limits.max_rank, "r", || {
            format!("rank r must be between 1 and {} (got {})", limits.max_rank, self.r)
        })?;
        require(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= MAX_ALPHA, "alpha", || {
            format!("alpha must be a number in (0, {MAX_ALPHA}] (got {})", self.alpha)
        })?;
        let lora = match method {
            Method::Full => None,
            _ => {
                require(!self.targets.is_empty(), "targets", || {
                    "choose at least one matrix to adapt (q, k, v, o, fc or proj)".into()
                })?;
                let targets: Vec<Target> =
                    parse_targets(&self.targets.join(",")).map_err(|e| Problem::new("targets", e.to_string()))?;
                let mut cfg = LoraConfig::uniform(&targets, self.r, self.alpha);
                let ranks = self.target_ranks().map_err(|e| Problem::new("ranks", e.to_string()))?;
                for (target, rank) in &mut cfg.targets {
                    *rank = ranks.iter().find(|(t, _)| t == target.name()).map_or(self.r, |(_, r)| *r);
                }
                cfg.rslora = self.rslora;
                cfg.dropout = self.dropout;
                require(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout), "dropout", || {
                    format!("dropout must be in [0, 1) (got {})", self.dropout)
                })?;
                cfg.validate(model.n_embd).map_err(|e| Problem::new("r", e.to_string()))?;
                Some(cfg)
            }
        };
        let adapter_storage = match self.adapter_storage.as_str() {
            "none" | "" => None,
            "bf16" | "fp16" | "int4" => {
                require(method != Method::Full, "astore", || {
                    "adapter storage applies to LoRA and QLoRA adapters".into()
                })?;
                let f: Format =
                    self.adapter_storage.parse().map_err(|e: Error| Problem::new("astore", e.to_string()))?;
                Some(Storage::new(f, false).map_err(|e| Problem::new("astore", e.to_string()))?)
            }
            other => {
                return Err(Problem::new(
                    "astore",
                    format!("unknown adapter storage {other:?}; expected none, bf16, fp16 or int4"),
                ))
            }
        };
        require(self.seed <= limits.max_seed, "seed", || {
            format!("seed must be between 0 and {} (got {})", limits.max_seed, self.seed)
        })?;
        require(self.batch >= 1 && self.batch <= limits.max_batch, "batch", || {
            format!("batch must be between 1 and {} (got {})", limits.max_batch, self.batch)
        })?;
        require(self.seq >= limits.min_seq && self.seq <= model.n_positions, "seq", || {
            format!(
                "sequence length must be between {} and the model's context of {} (got {})",
                limits.min_seq, model.n_positions, self.seq
            )
        })?;
        require(self.steps >= 1 && self.steps <= limits.max_steps, "steps", || {
            format!("steps must be between 1 and {} (got {})", limits.max_steps, self.steps)
        })?;
        require(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR, "lr", || {
            format!("learning rate must be a number in (0, {MAX_LR}] (got {})", self.lr)
        })?;
        require(
            self.task == "text" || TextTask::parse(&self.task).is_some() || Task::parse(&self.task).is_ok(),
            "task",
            || {
                format!(
                    "unknown task {:?}; built-in tasks: {}, or text (your own)",
                    self.task,
                    crate::data::tasks::all_names()
                )
            },
        )?;
        let defaults = OptimConfig::with_defaults(self.lr, self.steps);
        require(self.weight_decay.is_finite() && (0.0..1.0).contains(&self.weight_decay), "weight_decay", || {
            format!("weight decay must be in [0, 1) (got {})", self.weight_decay)
        })?;
        require(self.grad_clip.is_finite() && self.grad_clip >= 0.0, "grad_clip", || {
            format!("gradient clip must be ≥ 0, 0 disabling it (got {})", self.grad_clip)
        })?;
        let optim = OptimConfig {
            warmup: self.warmup.unwrap_or(defaults.warmup),
            weight_decay: self.weight_decay,
            grad_clip: self.grad_clip,
            ..defaults
        };
        Ok(RunSpec { method, storage, lora, adapter_storage, optim, batch: self.batch, seq: self.seq, seed: self.seed })
    }

    /// [`Settings::settle`] for the page's controls as JavaScript reads them: a number box may hold a fraction, a
    /// negative number or nothing (`null`), which no whole-number setting can take. Each such box is one problem at
    /// its control ("batch must be a whole number between 1 and 64 (got 1.5)") and its default stands in, so every
    /// other number stays live; the rest is [`Settings::settle`].
    pub fn settle_controls(raw: &serde_json::Value, model: &ModelConfig) -> (Settings, Vec<Problem>) {
        let limits = Limits::PAGE;
        let d = Settings::defaults_for(model);
        let mut raw = raw.clone();
        let mut problems = Vec::new();
        let whole: [(&str, &str, u64, u64, u64); 5] = [
            ("r", "rank r", 1, limits.max_rank as u64, d.r as u64),
            ("batch", "batch", 1, limits.max_batch as u64, d.batch as u64),
            ("seq", "sequence length", limits.min_seq as u64, model.n_positions as u64, d.seq as u64),
            ("steps", "steps", 1, limits.max_steps as u64, d.steps as u64),
            ("seed", "seed", 0, limits.max_seed, d.seed),
        ];
        let real: [(&str, &str, f32, f64); 2] =
            [("alpha", "alpha", MAX_ALPHA, d.alpha as f64), ("lr", "learning rate", MAX_LR, d.lr as f64)];
        if let Some(fields) = raw.as_object_mut() {
            for (field, name, lo, hi, default) in whole {
                let Some(v) = fields.get(field) else { continue };
                // Out of range is said here too, in the same words, and before a value too large for wasm32's usize
                // could fail to read at all.
                if v.as_u64().is_some_and(|n| (lo..=hi).contains(&n)) {
                    continue;
                }
                let got = shown(v);
                problems
                    .push(Problem::new(field, format!("{name} must be a whole number between {lo} and {hi} ({got})")));
                fields.insert(field.into(), default.into());
            }
            for (field, name, max, default) in real {
                let Some(v) = fields.get(field) else { continue };
                // The range of a real number is the engine's check, with its message; a box without one is said here.
                if v.is_number() {
                    continue;
                }
                let got = shown(v);
                problems.push(Problem::new(field, format!("{name} must be a number in (0, {max}] ({got})")));
                fields.insert(field.into(), default.into());
            }
        }
        let read = match serde_json::from_value::<Settings>(raw) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem::new("settings", format!("the page's settings could not be read: {e}")));
                d
            }
        };
        let (settled, more) = read.settle(model);
        problems.extend(more);
        (settled, problems)
    }

    /// Every problem of these settings, each with the setting at fault, and settings the engine can use: each
    /// faulty setting replaced by its default (the page keeps every other number live while one control is wrong).
    pub fn settle(&self, model: &ModelConfig) -> (Settings, Vec<Problem>) {
        let mut usable = self.clone();
        let mut problems: Vec<Problem> = Vec::new();
        // Each round fixes one setting; there are fewer settings than rounds.
        for _ in 0..=SETTING_NAMES.len() + RECIPE_NAMES.len() {
            match usable.check(model) {
                Ok(_) => return (usable, problems),
                Err(p) => {
                    if problems.iter().any(|q| q.field == p.field) {
                        break;
                    }
                    usable.reset(&p.field, model);
                    problems.push(p);
                }
            }
        }
        // Not reached with the checks above; if a future check cannot be fixed field by field, start over.
        (Settings::defaults_for(model), problems)
    }

    /// Puts one setting back to what it follows from (the method's base format, the format's double quantization)
    /// or to its default for `model`.
    fn reset(&mut self, field: &str, model: &ModelConfig) {
        let d = Settings::defaults_for(model);
        let method = self.method.parse::<Method>().ok();
        match field {
            "method" => {
                self.method = d.method;
                if let Ok(f) = self.format.parse::<Format>() {
                    self.method = method_for_format(f).name().into();
                }
            }
            "format" => {
                let f = method.map_or(Format::Nf4, Method::default_format);
                self.format = f.name().into();
                self.dq = method != Some(Method::Full) && default_double_quant(f);
            }
            "dq" => self.dq = false,
            "r" => self.r = d.r,
            "alpha" => self.alpha = d.alpha,
            "targets" => {
                self.targets = d.targets;
                self.ranks.clear();
            }
            "ranks" => self.ranks.clear(),
            "astore" => self.adapter_storage = d.adapter_storage,
            "batch" => self.batch = d.batch,
            "seq" => self.seq = d.seq,
            "steps" => self.steps = d.steps,
            "seed" => self.seed = d.seed,
            "lr" => self.lr = d.lr,
            "task" => self.task = d.task,
            "weight_decay" => self.weight_decay = d.weight_decay,
            "grad_clip" => self.grad_clip = d.grad_clip,
            "dropout" => self.dropout = d.dropout,
            _ => *self = d,
        }
    }

    /// The frozen base as the engine labels it ([`Storage::label`]): "nf4+dq", "int4", "fp32" — full fine-tuning
    /// trains fp32 weights whatever the format says. Settings that do not parse keep their own spelling.
    pub fn base_label(&self) -> String {
        self.base_storage().map_or_else(|_| self.format.clone(), |s| s.label())
    }

    /// How a run of these settings keeps its frozen base ([`Storage::FP32`] for full fine-tuning), judged from the
    /// method, format and double quantization alone.
    pub fn base_storage(&self) -> Result<Storage> {
        match (self.method.parse::<Method>(), self.format.parse::<Format>()) {
            (Ok(Method::Full), _) => Ok(Storage::FP32),
            (_, Ok(format)) => Storage::new(format, self.dq),
            (_, Err(e)) => Err(e),
        }
    }

    /// The settings that differ between these and `other`, each as `name this → other`.
    pub fn differences(&self, other: &Settings) -> Vec<String> {
        // Through text, so an f32 prints as it was written (0.003, not its f64 widening).
        let json = |s: &Settings| -> serde_json::Value {
            serde_json::from_str(&serde_json::to_string(s).expect("settings serialize")).expect("and parse back")
        };
        let (mine, theirs) = (json(self), json(other));
        let fields = mine.as_object().expect("settings serialize to an object");
        fields
            .iter()
            .filter(|(k, v)| theirs.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k} {v} → {}", theirs[k]))
            .collect()
    }

    /// The rank of every chosen target: `r`, or its entry in `ranks`. An entry for a target that is not chosen, a
    /// repeated one or a rank outside 1..=MAX_RANK is an error.
    pub fn target_ranks(&self) -> Result<Vec<(String, usize)>> {
        let overrides = parse_ranks(&self.ranks)?;
        for (t, _) in &overrides {
            ensure!(
                self.targets.contains(t),
                "a rank is given for {t}, which is not adapted (adapted: {})",
                self.targets.join(", ")
            );
        }
        Ok(self
            .targets
            .iter()
            .map(|t| (t.clone(), overrides.iter().find(|(o, _)| o == t).map_or(self.r, |(_, r)| *r)))
            .collect())
    }
}

/// Reads `target:rank` pairs (`fc:16,q:2`), each target once, each rank in 1..=MAX_RANK.
pub fn parse_ranks(text: &str) -> Result<Vec<(String, usize)>> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, rank) = pair
            .split_once(':')
            .ok_or_else(|| Error::new(format!("per-target rank {pair:?} is not target:rank (e.g. fc:16)")))?;
        let target: Target = name.parse()?;
        let rank = rank.trim().parse::<usize>().ok().filter(|r| (1..=MAX_RANK).contains(r)).ok_or_else(|| {
            Error::new(format!(
                "the rank of {} must be a whole number between 1 and {MAX_RANK} ({})",
                target.name(),
                match rank.trim() {
                    "" => "the box is empty".to_string(),
                    NOT_A_NUMBER => NOT_A_NUMBER.to_string(),
                    _ => format!("got {rank:?}"),
                }
            ))
        })?;
        ensure!(!out.iter().any(|(t, _)| t == target.name()), "{} has two ranks", target.name());
        out.push((target.name().to_string(), rank));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig::bytes(2, 2, 32, 64).unwrap()
    }

    /// The `min` and `max` of the page's `<input id="{id}">`.
    fn input_range(html: &str, id: &str) -> (String, String) {
        let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("index.html has no #{id}"));
        let start = html[..at].rfind("<input").unwrap();
        let tag = &html[start..start + html[start..].find('>').unwrap()];
        let attr = |name: &str| {
            let from =
                tag.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("#{id} has no {name}")) + name.len() + 3;
            tag[from..from + tag[from..].find('"').unwrap()].to_string()
        };
        (attr("min"), attr("max"))
    }

    /// The page judges some boxes by their own min and max before the engine answers (the per-matrix scaling says
    /// '–' for a rank out of range, www/js/controls.js), and the reader sees them as the spinners' limits: they
    /// must be the engine's.
    #[test]
    fn the_page_boxes_have_the_engines_limits() {
        let html = include_str!("../../www/index.html");
        let page = Limits::PAGE;
        let whole = |lo: u64, hi: u64| (lo.to_string(), hi.to_string());
        assert_eq!(input_range(html, "rank"), whole(1, page.max_rank as u64));
        for t in ["q", "k", "v", "o", "fc", "proj"] {
            assert_eq!(input_range(html, &format!("rank-{t}")), whole(1, page.max_rank as u64), "rank-{t}");
        }
        assert_eq!(input_range(html, "batch"), whole(1, page.max_batch as u64));
        assert_eq!(input_range(html, "steps"), whole(1, page.max_steps as u64));
        assert_eq!(input_range(html, "seed"), whole(0, page.max_seed));
        assert_eq!(input_range(html, "alpha").1, MAX_ALPHA.to_string());
        assert_eq!(input_range(html, "lr").1, MAX_LR.to_string());
        // The sequence's maximum is the model's context, set when a model loads.
        assert_eq!(input_range(html, "seq").0, page.min_seq.to_string());
    }

    #[test]
    fn the_command_line_allows_what_the_page_refuses() {
        let big = Settings { batch: 128, steps: 20_000, seq: 4, ..Default::default() };
        let page = big.check(&cfg()).unwrap_err();
        assert_eq!(page.field, "batch");
        let spec = big.validate_within(&cfg(), &Limits::CLI).unwrap();
        assert_eq!((spec.batch, spec.optim.steps, spec.seq), (128, 20_000, 4));
        let e = Settings { batch: 5000, ..big }.validate_within(&cfg(), &Limits::CLI).unwrap_err().to_string();
        assert!(e.contains("between 1 and 4096 (got 5000)"), "{e}");
    }

    #[test]
    fn the_recipe_settings_reach_the_engine() {
        let s = Settings {
            warmup: Some(7),
            weight_decay: 0.1,
            grad_clip: 0.0,
            dropout: 0.05,
            rslora: true,
            ..Default::default()
        };
        let spec = s.validate(&cfg()).unwrap();
        let (o, l) = (&spec.optim, spec.lora.as_ref().unwrap());
        assert_eq!((o.warmup, o.weight_decay, o.grad_clip), (7, 0.1, 0.0));
        assert_eq!((l.dropout, l.rslora), (0.05, true));
        // The page leaves them at the recipe's defaults: a tenth of the steps to warm up, no decay, norm 1.
        let d = Settings::default().validate(&cfg()).unwrap().optim;
        assert_eq!((d.warmup, d.weight_decay, d.grad_clip), (30, 0.0, 1.0));
        for (bad, field) in [
            (Settings { weight_decay: f32::NAN, ..Default::default() }, "weight_decay"),
            (Settings { grad_clip: -1.0, ..Default::default() }, "grad_clip"),
            (Settings { dropout: 1.0, ..Default::default() }, "dropout"),
        ] {
            assert_eq!(bad.check(&cfg()).unwrap_err().field, field);
            let (usable, problems) = bad.settle(&cfg());
            assert_eq!((problems.len(), usable), (1, Settings::default()), "{field}");
        }
    }

    #[test]
    fn the_base_is_labelled_as_the_engine_stores_it() {
        let label = |method: &str, format: &str, dq: bool| {
            Settings { method: method.into(), format: format.into(), dq, ..Default::default() }.base_label()
        };
        assert_eq!(label("qlora", "nf4", true), "nf4+dq");
        assert_eq!(label("qlora", "int4", false), "int4");
        assert_eq!(label("lora", "fp16", false), "fp16");
        assert_eq!(label("full", "nf4", true), "fp32", "full fine-tuning trains fp32 weights");
        assert_eq!(label("qlora", "int3", false), "int3");
    }

    #[test]
    fn differences_name_each_changed_setting() {
        let a = Settings::default();
        let b = Settings { lr: 0.01, steps: 9, ..Default::default() };
        assert_eq!(a.differences(&b), [r#"lr 0.003 → 0.01"#, "steps 300 → 9"]);
        assert!(a.differences(&a).is_empty());
    }

    /// What the page's number boxes can hold besides good values: a fraction, a negative number, nothing, a seed past
    /// 32 bits. Each is one problem at its control, its default stands in, and every other setting is kept.
    #[test]
    fn the_page_controls_name_a_box_that_holds_no_whole_number_and_keep_the_rest() {
        let good = serde_json::to_value(Settings { r: 4, steps: 7, ..Settings::default() }).unwrap();
        let with = |field: &str, v: serde_json::Value| {
            let mut raw = good.clone();
            raw[field] = v;
            Settings::settle_controls(&raw, &cfg())
        };
        for (field, v, message) in [
            ("batch", serde_json::json!(1.5), "batch must be a whole number between 1 and 64 (got 1.5)"),
            ("batch", serde_json::json!(-2), "batch must be a whole number between 1 and 64 (got -2)"),
            ("seed", serde_json::json!(-1), "seed must be a whole number between 0 and 4294967295 (got -1)"),
            ("seq", serde_json::json!(20.5), "sequence length must be a whole number between 8 and 64 (got 20.5)"),
            ("steps", serde_json::Value::Null, "steps must be a whole number between 1 and 5000 (the box is empty)"),
            ("r", serde_json::json!(2.5), "rank r must be a whole number between 1 and 64 (got 2.5)"),
            ("alpha", serde_json::Value::Null, "alpha must be a number in (0, 1024] (the box is empty)"),
            ("lr", serde_json::Value::Null, "learning rate must be a number in (0, 1] (the box is empty)"),
            (
                "batch",
                serde_json::json!("not a number"),
                "batch must be a whole number between 1 and 64 (not a number)",
            ),
            ("alpha", serde_json::json!("not a number"), "alpha must be a number in (0, 1024] (not a number)"),
            (
                "ranks",
                serde_json::json!("q:not a number"),
                "the rank of q must be a whole number between 1 and 64 (not a number)",
            ),
            (
                "seed",
                serde_json::json!(99_999_999_999u64),
                "seed must be a whole number between 0 and 4294967295 (got 99999999999)",
            ),
            // Beyond a 32-bit usize (the page's wasm32): one message at the box, not a settings object that fails to read.
            (
                "steps",
                serde_json::json!(5_000_000_000u64),
                "steps must be a whole number between 1 and 5000 (got 5000000000)",
            ),
            ("batch", serde_json::json!(65), "batch must be a whole number between 1 and 64 (got 65)"),
        ] {
            let (s, problems) = with(field, v);
            assert_eq!(problems, [Problem::new(field, message)], "{field}");
            // The box at fault takes its default, as `settle` would put it back; the others keep the reader's values.
            let mut want = Settings { r: 4, steps: 7, ..Settings::default() };
            want.reset(field, &cfg());
            assert_eq!(s, want, "{field}");
        }
        // Two bad boxes, two messages; good controls, none.
        let mut raw = good.clone();
        raw["batch"] = serde_json::json!(0.5);
        raw["seed"] = serde_json::json!(-3);
        let (_, problems) = Settings::settle_controls(&raw, &cfg());
        assert_eq!(problems.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(), ["batch", "seed"]);
        assert_eq!(
            Settings::settle_controls(&good, &cfg()),
            (Settings { r: 4, steps: 7, ..Settings::default() }, vec![])
        );
    }

    #[test]
    fn a_seed_is_held_to_32_bits_in_the_page_and_not_on_the_command_line() {
        let big = Settings { seed: 1 << 40, ..Settings::default() };
        assert_eq!(big.check(&cfg()).unwrap_err().field, "seed");
        assert!(big.validate_within(&cfg(), &Limits::CLI).is_ok());
    }
}
