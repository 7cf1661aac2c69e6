//! Parameter and memory accounting computed from a configuration — never typed in.
//!
//! Memory model (bytes), per category:
//! - **base weights**: full fine-tuning keeps every parameter in the training dtype; LoRA/QLoRA store the block linear
//!   weights in the base storage format and the rest (embeddings, norms, biases) in the training dtype.
//! - **quantization constants**: absmax per 64 values (fp32, or 8-bit + fp32 per 256 blocks + fp32 mean with
//!   double quantization), per tensor.
//! - **adapters**, **gradients**: trainable parameters × training dtype.
//! - **optimizer state**: AdamW's two fp32 moments per trainable parameter (8 bytes).
//! - **activations** kept for the backward pass for a batch and sequence length, in the training dtype: every
//!   intermediate the backward pass reads (see `Arch::activation_elems`); with gradient checkpointing only each
//!   block's input is kept, plus one block recomputed at a time.
//!
//! The training dtype is fp32 in our engine; pass bf16 to reproduce the QLoRA paper's setting.

use crate::quant::Storage;
use crate::train::Method;
use crate::{bail, ensure, Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// GPT-2: learned positions, fused c_attn, GELU MLP, LayerNorm with biases, LM head tied to wte.
    Gpt2,
    /// LLaMA: rotary positions, separate q/k/v/o without biases, SwiGLU MLP (gate, up, down), RMSNorm, untied head.
    Llama,
}

/// A model shape for accounting.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    pub name: String,
    pub family: Family,
    pub vocab: u64,
    pub ctx: u64,
    pub d_model: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub d_ff: u64,
}

pub const PRESETS: [&str; 8] =
    ["gpt2", "gpt2-medium", "gpt2-large", "gpt3-175b", "llama-7b", "llama-13b", "llama-33b", "llama-65b"];

impl Arch {
    pub fn preset(name: &str) -> Result<Self> {
        let gpt = |d: u64, l: u64, h: u64, ctx: u64| (Family::Gpt2, 50257, ctx, d, l, h, 4 * d);
        let llama = |d: u64, l: u64, h: u64, ff: u64| (Family::Llama, 32000, 2048, d, l, h, ff);
        let (family, vocab, ctx, d_model, n_layer, n_head, d_ff) = match name {
            "gpt2" => gpt(768, 12, 12, 1024),
            "gpt2-medium" => gpt(1024, 24, 16, 1024),
            "gpt2-large" => gpt(1280, 36, 20, 1024),
            "gpt3-175b" => gpt(12288, 96, 96, 2048),
            "llama-7b" => llama(4096, 32, 32, 11008),
            "llama-13b" => llama(5120, 40, 40, 13824),
            "llama-33b" => llama(6656, 60, 52, 17920),
            "llama-65b" => llama(8192, 80, 64, 22016),
            _ => bail!("unknown preset {name:?}; expected one of {}", PRESETS.join(", ")),
        };
        Ok(Arch { name: name.to_string(), family, vocab, ctx, d_model, n_layer, n_head, d_ff })
    }

    pub fn from_model(cfg: &crate::model::ModelConfig) -> Self {
        let d = cfg.n_embd as u64;
        Arch {
            // The hub id where config.json names one (`_name_or_path`), else the generic label.
            name: cfg.name_or_path.clone().unwrap_or_else(|| "model".into()),
            family: Family::Gpt2,
            vocab: cfg.vocab_size as u64,
            ctx: cfg.n_positions as u64,
            d_model: d,
            n_layer: cfg.n_layer as u64,
            n_head: cfg.n_head as u64,
            d_ff: 4 * d,
        }
    }

    /// The block's linear weights: (module name, d_in, d_out).
    pub fn linears(&self) -> Vec<(&'static str, u64, u64)> {
        let (d, f) = (self.d_model, self.d_ff);
        match self.family {
            Family::Gpt2 => vec![("c_attn", d, 3 * d), ("attn.c_proj", d, d), ("c_fc", d, f), ("mlp.c_proj", f, d)],
            Family::Llama => vec![
                ("q_proj", d, d),
                ("k_proj", d, d),
                ("v_proj", d, d),
                ("o_proj", d, d),
                ("gate_proj", d, f),
                ("up_proj", d, f),
                ("down_proj", f, d),
            ],
        }
    }

    /// (d_in, d_out) of an adaptable target. GPT-2: q k v qkv o fc proj; LLaMA: q k v o gate up down.
    pub fn target_dims(&self, target: &str) -> Result<(u64, u64)> {
        let (d, f) = (self.d_model, self.d_ff);
        Ok(match (self.family, target) {
            (_, "q" | "k" | "v" | "o") => (d, d),
            (Family::Gpt2, "qkv") => (d, 3 * d),
            (Family::Gpt2, "fc") => (d, f),
            (Family::Gpt2, "proj") => (f, d),
            (Family::Llama, "gate" | "up") => (d, f),
            (Family::Llama, "down") => (f, d),
            (Family::Gpt2, _) => {
                bail!("unknown target {target:?} for a GPT-2 model; expected q, k, v, qkv, o, fc or proj")
            }
            (Family::Llama, _) => {
                bail!("unknown target {target:?} for a LLaMA model; expected q, k, v, o, gate, up or down")
            }
        })
    }

    /// Every target of the family ("all" expands to these; GPT-2's qkv is the fused alternative to q, k, v).
    pub fn all_targets(&self) -> &'static [&'static str] {
        match self.family {
            Family::Gpt2 => &["q", "k", "v", "o", "fc", "proj"],
            Family::Llama => &["q", "k", "v", "o", "gate", "up", "down"],
        }
    }

    /// Parameters of one block's linear weights.
    fn block_linear_params(&self) -> u64 {
        self.linears().iter().map(|(_, i, o)| i * o).sum()
    }

    /// Parameters of the model without adapters (the LM head counted once when tied).
    pub fn base_params(&self) -> u64 {
        let (d, l) = (self.d_model, self.n_layer);
        match self.family {
            Family::Gpt2 => {
                let biases: u64 = self.linears().iter().map(|(_, _, o)| o).sum();
                self.vocab * d + self.ctx * d + l * (self.block_linear_params() + biases + 4 * d) + 2 * d
            }
            Family::Llama => 2 * self.vocab * d + l * (self.block_linear_params() + 2 * d) + d,
        }
    }

    /// Parameters stored in the base storage format under LoRA/QLoRA (the block linear weights).
    pub fn quantizable_params(&self) -> u64 {
        self.n_layer * self.block_linear_params()
    }

    /// Parameters of the token embedding and the LM head (counted once when tied, as GPT-2's are): kept in 16 bits
    /// below an fp32 base (`Storage::embedding`).
    pub fn embedding_params(&self) -> u64 {
        match self.family {
            Family::Gpt2 => self.vocab * self.d_model,
            Family::Llama => 2 * self.vocab * self.d_model,
        }
    }

    /// Stored activations per token per block, in elements (what the backward pass reads).
    pub fn block_activation_elems(&self, seq: u64) -> u64 {
        let (d, f, h) = (self.d_model, self.d_ff, self.n_head);
        match self.family {
            // ln1, qkv(3d), attention output, c_proj output, residual, ln2, fc (f), gelu (f), mlp out, residual;
            // LayerNorm mean and 1/std twice; softmax probabilities (h × seq).
            Family::Gpt2 => 10 * d + 2 * f + 4 + h * seq,
            // norm1, q, k, v, attention output, o, residual, norm2, down, residual; gate, up, silu(gate), product;
            // RMSNorm 1/rms twice; softmax probabilities.
            Family::Llama => 9 * d + 4 * f + 2 + h * seq,
        }
    }

    /// Stored activations per token outside the blocks: embedding output, final norm (+ stats). No logits: both
    /// executors fuse the head with the cross-entropy over chunks of rows (`model::head_chunk_rows`, scratch), so
    /// a `tokens × vocab` tensor never exists — at GPT-2's vocabulary it would be most of a batch's activations.
    pub fn head_activation_elems(&self) -> u64 {
        match self.family {
            Family::Gpt2 => 2 * self.d_model + 2,
            Family::Llama => 2 * self.d_model + 1,
        }
    }
}

/// Targets with ranks, e.g. q,v at r=8.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSpec {
    pub targets: Vec<(String, u64)>,
}

impl AdapterSpec {
    /// The same rank on every target in the comma-separated list (`all` for every target of the family).
    pub fn uniform(arch: &Arch, targets: &str, rank: u64) -> Result<Self> {
        let names: Vec<(String, u64)> = targets
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .flat_map(|t| -> Vec<String> {
                if t.eq_ignore_ascii_case("all") {
                    arch.all_targets().iter().map(|n| n.to_string()).collect()
                } else {
                    vec![t.to_string()]
                }
            })
            .map(|n| (n, rank))
            .collect();
        Self::with_ranks(arch, &names)
    }

    /// Each target with its own rank; a target named twice keeps its first rank.
    pub fn with_ranks(arch: &Arch, targets: &[(String, u64)]) -> Result<Self> {
        let mut list: Vec<(String, u64)> = Vec::new();
        for (n, rank) in targets {
            let (n, rank) = (n.to_ascii_lowercase(), *rank);
            ensure!(rank >= 1, "rank must be at least 1");
            let (i, o) = arch.target_dims(&n)?;
            ensure!(rank <= i.min(o), "rank {rank} for target {n} must be at most min(d_in, d_out) = {}", i.min(o));
            if !list.iter().any(|(x, _)| *x == n) {
                list.push((n, rank));
            }
        }
        ensure!(!list.is_empty(), "no targets given");
        let has = |n: &str| list.iter().any(|(x, _)| x == n);
        ensure!(!(has("qkv") && (has("q") || has("k") || has("v"))), "target qkv already covers q, k and v");
        Ok(AdapterSpec { targets: list })
    }

    /// r·(d_in + d_out) per adapter, per block.
    pub fn trainable(&self, arch: &Arch) -> u64 {
        arch.n_layer
            * self
                .targets
                .iter()
                .map(|(t, r)| {
                    r * {
                        let (i, o) = arch.target_dims(t).expect("validated");
                        i + o
                    }
                })
                .sum::<u64>()
    }

    /// Stored adapter intermediates per token per block (u = x·Aᵀ, r values per adapter).
    fn activation_elems(&self) -> u64 {
        self.targets.iter().map(|(_, r)| r).sum()
    }
}

/// Trainable and total parameters, PEFT-style: with adapters, "total" includes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamCount {
    pub trainable: u64,
    pub total: u64,
}

impl ParamCount {
    pub fn percent(&self) -> f64 {
        100.0 * self.trainable as f64 / self.total as f64
    }
}

pub fn lora_params(arch: &Arch, spec: &AdapterSpec) -> ParamCount {
    let trainable = spec.trainable(arch);
    ParamCount { trainable, total: arch.base_params() + trainable }
}

pub fn full_params(arch: &Arch) -> ParamCount {
    let n = arch.base_params();
    ParamCount { trainable: n, total: n }
}

/// A memory question: method, base storage, training dtype bytes, adapters, batch shape.
#[derive(Clone, Debug)]
pub struct MemoryQuery {
    pub method: Method,
    pub storage: Storage,
    pub dtype_bytes: u64,
    pub adapters: Option<AdapterSpec>,
    pub batch: u64,
    pub seq: u64,
    pub checkpointing: bool,
}

/// Bytes per category.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Memory {
    pub base_weights: u64,
    pub quant_constants: u64,
    pub adapters: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub activations: u64,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.base_weights + self.quant_constants + self.adapters + self.gradients + self.optimizer + self.activations
    }

    pub fn categories(&self) -> [(&'static str, u64); 6] {
        [
            ("base_weights", self.base_weights),
            ("quant_constants", self.quant_constants),
            ("adapters", self.adapters),
            ("gradients", self.gradients),
            ("optimizer", self.optimizer),
            ("activations", self.activations),
        ]
    }
}

pub fn memory(arch: &Arch, q: &MemoryQuery) -> Result<Memory> {
    ensure!(q.batch >= 1 && q.seq >= 1, "batch and sequence length must be at least 1");
    ensure!(q.seq <= arch.ctx, "sequence length {} exceeds the model's context of {}", q.seq, arch.ctx);
    let dt = q.dtype_bytes;
    let mut m = Memory::default();
    let (trainable, lora_act) = match q.method {
        Method::Full => {
            ensure!(
                q.storage == Storage::FP32,
                "full fine-tuning trains the base weights in the training dtype; --format applies to lora and qlora"
            );
            m.base_weights = arch.base_params() * dt;
            (arch.base_params(), 0)
        }
        Method::Lora | Method::Qlora => {
            let spec = q.adapters.as_ref().ok_or_else(|| Error::new("lora and qlora need targets and a rank"))?;
            // fp32 "storage" of the base in a bf16 run means the training dtype: no quantization.
            let per_tensor: Vec<u64> = arch.linears().iter().map(|(_, i, o)| i * o).collect();
            for n in &per_tensor {
                let values = if q.storage == Storage::FP32 { n * dt } else { q.storage.value_bytes(*n) };
                m.base_weights += arch.n_layer * values;
                m.quant_constants += arch.n_layer * q.storage.constant_bytes(*n);
            }
            // The embedding (and head) in 16 bits below an fp32 base, never wider than the training dtype; the
            // rest (position embedding, LayerNorms, biases) in the training dtype.
            let emb = arch.embedding_params();
            let emb_bytes = if q.storage == Storage::FP32 { dt } else { dt.min(2) };
            m.base_weights += emb * emb_bytes + (arch.base_params() - arch.quantizable_params() - emb) * dt;
            let t = spec.trainable(arch);
            m.adapters = t * dt;
            (t, spec.activation_elems())
        }
    };
    m.gradients = trainable * dt;
    m.optimizer = trainable * 8;
    let tokens = q.batch * q.seq;
    let block = arch.block_activation_elems(q.seq) + lora_act;
    let per_token = if q.checkpointing {
        arch.n_layer * arch.d_model + block + arch.head_activation_elems()
    } else {
        arch.n_layer * block + arch.head_activation_elems()
    };
    m.activations = tokens * per_token * dt;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt3(targets: &str, r: u64) -> u64 {
        let a = Arch::preset("gpt3-175b").unwrap();
        AdapterSpec::uniform(&a, targets, r).unwrap().trainable(&a)
    }

    #[test]
    fn lora_paper_gpt3_table() {
        assert_eq!(gpt3("v", 2), 4_718_592);
        assert_eq!(gpt3("q,v", 1), 4_718_592);
        assert_eq!(gpt3("q,v", 8), 37_748_736);
        // The paper prints 603.8M; the formula 2 × 384 × 12288 × 64 gives 603,979,776.
        assert_eq!(gpt3("q,k,v,o", 64), 603_979_776);
        assert_eq!(gpt3("q,v", 64), 301_989_888);
    }

    #[test]
    fn peft_gpt2_counts() {
        let a = Arch::preset("gpt2").unwrap();
        assert_eq!(a.base_params(), 124_439_808);
        let p = lora_params(&a, &AdapterSpec::uniform(&a, "qkv", 8).unwrap());
        assert_eq!((p.trainable, p.total), (294_912, 124_734_720));
        assert_eq!(format!("{:.4}", p.percent()), "0.2364");
        let all = lora_params(&a, &AdapterSpec::uniform(&a, "qkv,o,fc,proj", 8).unwrap());
        assert_eq!((all.trainable, all.total), (1_179_648, 125_619_456));
    }

    #[test]
    fn llama_65b_size() {
        assert_eq!(Arch::preset("llama-65b").unwrap().base_params(), 65_285_660_672);
    }
}
