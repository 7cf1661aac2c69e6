//! LoRA adapters: h = W0·x + s·B·A·x with A `[r, d_in]` (kaiming-uniform, a = √5, as PEFT) and B `[d_out, r]` (zero),
//! so training starts exactly at the base model. s = α/r, or α/√r with rsLoRA.
//!
//! Targets name slices of GPT-2's linear layers: q, k, v (separate adapters on the column slices of the fused
//! `c_attn`, as in the LoRA paper), qkv (one adapter on all of `c_attn`, as PEFT does for GPT-2), o (`attn.c_proj`),
//! fc (`mlp.c_fc`) and proj (`mlp.c_proj`).

mod peft;

pub use peft::{adapter_files, load_adapter_bytes, load_adapter_dir, save_adapter_dir};

use crate::model::{Gpt2, Linear, TensorId};
use crate::{bail, ensure, rng, Error, Result};
use rand::RngExt;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Q,
    K,
    V,
    Qkv,
    O,
    Fc,
    Proj,
}

impl Target {
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::Qkv, Target::O, Target::Fc, Target::Proj];

    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::Qkv => "qkv",
            Target::O => "o",
            Target::Fc => "fc",
            Target::Proj => "proj",
        }
    }

    pub fn linear(self) -> Linear {
        match self {
            Target::Q | Target::K | Target::V | Target::Qkv => Linear::Attn,
            Target::O => Linear::AttnProj,
            Target::Fc => Linear::Fc,
            Target::Proj => Linear::MlpProj,
        }
    }

    /// The output columns of the linear layer this adapter adds to.
    pub fn out_cols(self, c: usize) -> Range<usize> {
        match self {
            Target::Q => 0..c,
            Target::K => c..2 * c,
            Target::V => 2 * c..3 * c,
            _ => 0..self.linear().dims(c).1,
        }
    }

    /// (d_in, d_out) of the adapted matrix.
    pub fn dims(self, c: usize) -> (usize, usize) {
        (self.linear().dims(c).0, self.out_cols(c).len())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::new(format!("unknown target {s:?}; expected q, k, v, qkv, o, fc or proj")))
    }
}

/// Parses "q,v" or "all" (q, k, v, o, fc, proj) into targets, in canonical order, without duplicates.
pub fn parse_targets(s: &str) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        if part.trim().eq_ignore_ascii_case("all") {
            out.extend([Target::Q, Target::K, Target::V, Target::O, Target::Fc, Target::Proj]);
        } else {
            out.push(part.parse()?);
        }
    }
    ensure!(!out.is_empty(), "no targets given; name at least one of q, k, v, qkv, o, fc, proj");
    out.sort();
    out.dedup();
    Ok(out)
}

/// Adapter hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Targets with their ranks, in canonical order.
    pub targets: Vec<(Target, usize)>,
    pub alpha: f32,
    pub rslora: bool,
    /// Dropout probability on the adapter input.
    pub dropout: f32,
}

impl LoraConfig {
    /// The same rank on every target.
    pub fn uniform(targets: &[Target], rank: usize, alpha: f32) -> Self {
        LoraConfig { targets: targets.iter().map(|t| (*t, rank)).collect(), alpha, rslora: false, dropout: 0.0 }
    }

    pub fn scaling(&self, rank: usize) -> f32 {
        if self.rslora {
            self.alpha / (rank as f32).sqrt()
        } else {
            self.alpha / rank as f32
        }
    }

    /// Checks the configuration against a model width `c`.
    pub fn validate(&self, c: usize) -> Result<()> {
        ensure!(!self.targets.is_empty(), "no adapter targets");
        let has = |t: Target| self.targets.iter().any(|(x, _)| *x == t);
        ensure!(
            !(has(Target::Qkv) && (has(Target::Q) || has(Target::K) || has(Target::V))),
            "target qkv already covers q, k and v; use either qkv or any of q, k, v"
        );
        for (t, r) in &self.targets {
            let (d_in, d_out) = t.dims(c);
            let max = d_in.min(d_out);
            ensure!(*r >= 1 && *r <= max, "rank {r} for target {t} must be between 1 and min(d_in, d_out) = {max}");
        }
        ensure!(self.alpha.is_finite() && self.alpha > 0.0, "alpha must be a positive number (got {})", self.alpha);
        ensure!(
            self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout),
            "dropout must be in [0, 1) (got {})",
            self.dropout
        );
        Ok(())
    }
}

/// One adapter: which layer and target, its rank, and where A and B live in the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterEntry {
    pub layer: usize,
    pub target: Target,
    pub rank: usize,
    pub d_in: usize,
    pub d_out: usize,
    /// s: α/r (or α/√r); set per adapter so imported PEFT adapters keep each module's own scaling.
    pub scaling: f32,
    pub a: Range<usize>,
    pub b: Range<usize>,
}

/// Every adapter of a model in one flat buffer (so gradients and optimizer state share offsets).
#[derive(Clone, Debug, PartialEq)]
pub struct Adapters {
    pub config: LoraConfig,
    pub n_embd: usize,
    pub entries: Vec<AdapterEntry>,
    pub params: Vec<f32>,
}

impl Adapters {
    /// Layout only, all zeros.
    pub fn zeros(config: LoraConfig, n_layer: usize, n_embd: usize) -> Result<Self> {
        config.validate(n_embd)?;
        let mut entries = Vec::new();
        let mut off = 0;
        for layer in 0..n_layer {
            for &(target, rank) in &config.targets {
                let (d_in, d_out) = target.dims(n_embd);
                let a = off..off + rank * d_in;
                off = a.end;
                let b = off..off + d_out * rank;
                off = b.end;
                let scaling = config.scaling(rank);
                entries.push(AdapterEntry { layer, target, rank, d_in, d_out, scaling, a, b });
            }
        }
        Ok(Adapters { config, n_embd, entries, params: vec![0.0; off] })
    }

    /// PEFT's default initialisation: A ~ kaiming_uniform(a=√5) = U(−1/√d_in, 1/√d_in), B = 0.
    pub fn init(config: LoraConfig, n_layer: usize, n_embd: usize, seed: u64) -> Result<Self> {
        let mut ad = Self::zeros(config, n_layer, n_embd)?;
        let mut rng = rng::stream(seed, "init-lora");
        for e in ad.entries.clone() {
            let bound = 1.0 / (e.d_in as f32).sqrt();
            for v in &mut ad.params[e.a.clone()] {
                *v = rng.random_range(-bound..bound);
            }
        }
        Ok(ad)
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn scaling(&self, e: &AdapterEntry) -> f32 {
        e.scaling
    }

    /// The adapters attached to one linear layer of one block.
    pub fn on(&self, layer: usize, linear: Linear) -> impl Iterator<Item = &AdapterEntry> {
        self.entries.iter().filter(move |e| e.layer == layer && e.target.linear() == linear)
    }

    /// s·B·A for one adapter, as a `[d_out, d_in]` row-major matrix. A plain loop: only merging (once per adapter)
    /// and tests ask for it. Each value is `s·(Σ_r B[o,r]·A[r,i])`, summed in order of r with fused multiply-adds as
    /// the native matrix multiply sums (the same bits for rank ≥ 3; its rank-1 and -2 path scales A first).
    pub fn delta(&self, e: &AdapterEntry) -> Vec<f32> {
        let s = self.scaling(e);
        let (a, b) = (&self.params[e.a.clone()], &self.params[e.b.clone()]);
        let mut out = vec![0.0f32; e.d_out * e.d_in];
        for (row, b_row) in out.chunks_exact_mut(e.d_in).zip(b.chunks_exact(e.rank)) {
            for (b_or, a_row) in b_row.iter().zip(a.chunks_exact(e.d_in)) {
                for (o, a_ri) in row.iter_mut().zip(a_row) {
                    *o = b_or.mul_add(*a_ri, *o);
                }
            }
            for o in row.iter_mut() {
                *o *= s;
            }
        }
        out
    }

    /// The article's "adapter storage" option: round A and B through a storage format after training. Int4 is NOT
    /// what QLoRA does (QLoRA quantizes the frozen base and keeps adapters in 16/32 bits: bf16 in the paper, fp32 in
    /// PEFT); rounding shows what the claim would cost, and bf16 what the paper's adapters lose against fp32.
    pub fn round_through(&mut self, storage: crate::quant::Storage) {
        for e in self.entries.clone() {
            for r in [e.a.clone(), e.b.clone()] {
                let q = crate::quant::QuantizedTensor::quantize(&self.params[r.clone()], storage);
                self.params[r].copy_from_slice(&q.dequantize());
            }
        }
    }
}

/// Merges adapters into a model: W' = W + s·(B·A)ᵀ in GPT-2's Conv1D `[in, out]` orientation, column slice per target.
/// A model that keeps its linear weights stored gets them back in fp32 first: W' = deq(W0) + s·(B·A)ᵀ.
pub fn merge(model: &mut Gpt2, adapters: &Adapters) -> Result<()> {
    model.keep_linears_in_buffer();
    let c = model.config.n_embd;
    if adapters.n_embd != c {
        bail!("adapter width {} does not match the model's n_embd {c}", adapters.n_embd);
    }
    for e in &adapters.entries {
        ensure!(
            e.layer < model.config.n_layer,
            "adapter for layer {} but the model has {} layers",
            e.layer,
            model.config.n_layer
        );
        let delta = adapters.delta(e); // [d_out, d_in]
        let (_, oc) = e.target.linear().dims(c);
        let cols = e.target.out_cols(c);
        let w = model.tensor_mut(TensorId::Block(e.layer, e.target.linear().weight()));
        for i in 0..e.d_in {
            for (j, col) in cols.clone().enumerate() {
                w[i * oc + col] += delta[j * e.d_in + i];
            }
        }
    }
    Ok(())
}
