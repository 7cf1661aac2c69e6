//! The GPT-2 model as Hugging Face `GPT2LMHeadModel` defines it: its configuration, the flat layout of its
//! parameters (one `Vec<f32>`, llm.c style, so gradients and optimizer state share the same offsets), and model
//! directories (`config.json` + `model.safetensors`).

mod config;
mod io;
mod layout;
mod stored;

pub use config::{HfPreset, ModelConfig, GPT2_VOCAB, HF_PRESETS, HF_PRESET_NAMES, MAX_PARAMS};
pub(crate) use io::{create_dir, write_file};
pub use io::{
    from_named_tensors, load_model_bytes, load_model_dir, load_model_stream, load_tokenizer_dir, model_files,
    read_safetensors_f32, read_safetensors_metadata, save_model_dir, write_safetensors, write_safetensors_with,
    SafetensorsSource, StoreDtype,
};
pub use layout::{BlockTensor, Linear, ParamLayout, TensorId};
pub use stored::{StoredLinears, WeightsDigest, WeightsHasher};

use crate::tokenizer::Tokenizer;
use crate::{ensure, rng, Result};
use rand_distr::{Distribution, Normal};
use std::borrow::Cow;
use std::sync::Arc;

/// Rows per chunk of the fused head and cross-entropy for a vocabulary of `vocab` tokens, so that a chunk's logits
/// take at most `budget` bytes: a `rows × V` logits tensor never exists (103 MB at GPT-2's vocabulary and batch
/// 4 × 128, and as much again for its gradient). At most `rows`, at least one.
pub fn head_chunk_rows(vocab: usize, rows: usize, budget: usize) -> usize {
    (budget / (4 * vocab.max(1))).clamp(1, rows.max(1))
}

/// A model: configuration, its parameters in one flat fp32 buffer, and the tokenizer its directory names. The block
/// linear weights are in that buffer too, unless the model keeps them in a storage format (`linears`; then the
/// buffer's layout leaves them out, [`ParamLayout::without_block_linears`]).
#[derive(Clone, Debug)]
pub struct Gpt2 {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    /// Shared by every copy of the model until one writes to it ([`Gpt2::params_mut`] copies then): a run's copy of
    /// the loaded base costs nothing while the base is frozen, which it is for LoRA and QLoRA.
    pub params: Arc<Vec<f32>>,
    pub tokenizer: Tokenizer,
    /// The block linear weights in a storage format, shared by every holder of this base (they are frozen).
    pub linears: Option<Arc<StoredLinears>>,
}

/// A run takes its base borrowed (its copy shares the base's buffers) or owned (a base read for it alone).
impl<'a> From<&'a Gpt2> for Cow<'a, Gpt2> {
    fn from(model: &'a Gpt2) -> Self {
        Cow::Borrowed(model)
    }
}

impl From<Gpt2> for Cow<'_, Gpt2> {
    fn from(model: Gpt2) -> Self {
        Cow::Owned(model)
    }
}

impl Gpt2 {
    /// GPT-2's initialisation as transformers does it: weights N(0, 0.02), biases 0, LayerNorm weight 1 and bias 0,
    /// and the residual output projections (`attn.c_proj`, `mlp.c_proj`) scaled by 1/√(2·n_layer).
    pub fn init(config: ModelConfig, seed: u64) -> Self {
        let layout = ParamLayout::new(&config);
        let mut params = vec![0.0f32; layout.total()];
        let mut rng = rng::stream(seed, "init-model");
        let std = 0.02f32;
        let resid_std = std / (2.0 * config.n_layer as f32).sqrt();
        for (id, range) in layout.iter() {
            let values = &mut params[range];
            let normal_std = match id {
                TensorId::Wte | TensorId::Wpe => Some(std),
                TensorId::Block(_, t) => match t {
                    BlockTensor::AttnW | BlockTensor::FcW => Some(std),
                    BlockTensor::AttnProjW | BlockTensor::MlpProjW => Some(resid_std),
                    BlockTensor::Ln1W | BlockTensor::Ln2W => {
                        values.fill(1.0);
                        None
                    }
                    _ => None,
                },
                TensorId::LnFW => {
                    values.fill(1.0);
                    None
                }
                TensorId::LnFB => None,
            };
            if let Some(s) = normal_std {
                let normal = Normal::new(0.0f32, s).expect("positive std");
                for v in values.iter_mut() {
                    *v = normal.sample(&mut rng);
                }
            }
        }
        Gpt2 { config, layout, params: Arc::new(params), tokenizer: Tokenizer::Bytes, linears: None }
    }

    /// The model with `tokenizer` instead of the byte tokenizer (see [`Gpt2::set_tokenizer`]).
    pub fn with_tokenizer(mut self, tokenizer: Tokenizer) -> Result<Self> {
        self.set_tokenizer(tokenizer)?;
        Ok(self)
    }

    /// Uses `tokenizer`; the embedding must have a row for every id it produces.
    pub fn set_tokenizer(&mut self, tokenizer: Tokenizer) -> Result<()> {
        ensure!(
            tokenizer.vocab_size() <= self.config.vocab_size,
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tokenizer.vocab_size(),
            self.config.vocab_size
        );
        self.tokenizer = tokenizer;
        Ok(())
    }

    /// A tensor of the flat buffer (a block linear weight only while the model keeps those in fp32 there).
    pub fn tensor(&self, id: TensorId) -> &[f32] {
        self.assert_in_buffer(id);
        &self.params[self.layout.range(id)]
    }

    pub fn tensor_mut(&mut self, id: TensorId) -> &mut [f32] {
        self.assert_in_buffer(id);
        let r = self.layout.range(id);
        &mut self.params_mut()[r]
    }

    /// The parameter buffer to write to: this model's own (a copy, if another model shares it).
    pub fn params_mut(&mut self) -> &mut Vec<f32> {
        Arc::make_mut(&mut self.params)
    }

    fn assert_in_buffer(&self, id: TensorId) {
        let left_out = !self.layout.has_block_linears() && id.is_block_linear_weight();
        assert!(!left_out, "{} is kept in a storage format, not in the fp32 buffer", self.layout.hf_name(id));
    }

    /// Puts the block linear weights back into the fp32 buffer, dequantized, when the model keeps them stored: what
    /// merging adapters into deq(W0), or saving the model, needs.
    pub fn keep_linears_in_buffer(&mut self) {
        let Some(stored) = self.linears.take() else { return };
        let layout = ParamLayout::new(&self.config);
        let mut params = Vec::with_capacity(layout.total());
        for id in layout.ids() {
            match id {
                TensorId::Block(l, t) if t.is_linear_weight() => {
                    let lin = t.linear().expect("a linear weight");
                    let (d_in, d_out) = lin.dims(self.config.n_embd);
                    params.extend(Linear::transpose(&stored.get(l, lin).dequantize(), d_out, d_in));
                }
                _ => params.extend_from_slice(&self.params[self.layout.range(id)]),
            }
        }
        self.params = Arc::new(params);
        self.layout = layout;
    }

    /// Parameters of the model (the block linear weights counted whether or not it keeps them in fp32).
    pub fn param_count(&self) -> usize {
        ParamLayout::new(&self.config).total()
    }

    /// Bytes the model's weights take: its fp32 buffer and the linear weights it keeps stored.
    pub fn bytes(&self) -> u64 {
        4 * self.params.len() as u64 + self.linears.as_ref().map_or(0, |s| s.bytes())
    }

    /// The storage format of the block linear weights: [`Storage::FP32`] while they are in the fp32 buffer.
    pub fn linear_storage(&self) -> crate::quant::Storage {
        self.linears.as_ref().map_or(crate::quant::Storage::FP32, |s| s.storage)
    }

    /// The digest of the fp32 weights this model is, or was stored from (see [`StoredLinears::source`]).
    pub fn weights_digest(&self) -> WeightsDigest {
        match &self.linears {
            Some(stored) => stored.source,
            None => WeightsDigest::of(&self.params),
        }
    }

    /// Takes every tensor but the block linear weights from `params` (a whole buffer in this model's layout, with
    /// them), and keeps those weights as `linears`.
    pub fn keep_linears_stored_from(&mut self, params: &[f32], linears: StoredLinears) {
        assert!(self.layout.has_block_linears(), "the model already keeps its linear weights stored");
        assert_eq!(params.len(), self.layout.total(), "a whole parameter buffer");
        let layout = ParamLayout::without_block_linears(&self.config);
        let mut kept = Vec::with_capacity(layout.total());
        for (id, range) in self.layout.iter() {
            if !id.is_block_linear_weight() {
                kept.extend_from_slice(&params[range]);
            }
        }
        debug_assert_eq!(kept.len(), layout.total());
        self.params = Arc::new(kept);
        self.layout = layout;
        self.linears = Some(Arc::new(linears));
    }
}
