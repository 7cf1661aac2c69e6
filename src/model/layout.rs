//! Where each GPT-2 tensor lives in the flat parameter buffer, and its Hugging Face name and shape.
//! Order: wte, wpe, then each block's twelve tensors, then ln_f — the order of `GPT2LMHeadModel.state_dict()`.

use super::ModelConfig;
use std::ops::Range;

/// The twelve tensors of one transformer block. Linear weights are stored Conv1D-style, `[in, out]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockTensor {
    Ln1W,
    Ln1B,
    AttnW,
    AttnB,
    AttnProjW,
    AttnProjB,
    Ln2W,
    Ln2B,
    FcW,
    FcB,
    MlpProjW,
    MlpProjB,
}

impl BlockTensor {
    pub const ALL: [BlockTensor; 12] = [
        BlockTensor::Ln1W,
        BlockTensor::Ln1B,
        BlockTensor::AttnW,
        BlockTensor::AttnB,
        BlockTensor::AttnProjW,
        BlockTensor::AttnProjB,
        BlockTensor::Ln2W,
        BlockTensor::Ln2B,
        BlockTensor::FcW,
        BlockTensor::FcB,
        BlockTensor::MlpProjW,
        BlockTensor::MlpProjB,
    ];

    pub fn hf_suffix(self) -> &'static str {
        match self {
            BlockTensor::Ln1W => "ln_1.weight",
            BlockTensor::Ln1B => "ln_1.bias",
            BlockTensor::AttnW => "attn.c_attn.weight",
            BlockTensor::AttnB => "attn.c_attn.bias",
            BlockTensor::AttnProjW => "attn.c_proj.weight",
            BlockTensor::AttnProjB => "attn.c_proj.bias",
            BlockTensor::Ln2W => "ln_2.weight",
            BlockTensor::Ln2B => "ln_2.bias",
            BlockTensor::FcW => "mlp.c_fc.weight",
            BlockTensor::FcB => "mlp.c_fc.bias",
            BlockTensor::MlpProjW => "mlp.c_proj.weight",
            BlockTensor::MlpProjB => "mlp.c_proj.bias",
        }
    }

    pub fn shape(self, c: usize) -> Vec<usize> {
        match self {
            BlockTensor::Ln1W | BlockTensor::Ln1B | BlockTensor::Ln2W | BlockTensor::Ln2B => {
                vec![c]
            }
            BlockTensor::AttnW => vec![c, 3 * c],
            BlockTensor::AttnB => vec![3 * c],
            BlockTensor::AttnProjW => vec![c, c],
            BlockTensor::AttnProjB | BlockTensor::MlpProjB => vec![c],
            BlockTensor::FcW => vec![c, 4 * c],
            BlockTensor::FcB => vec![4 * c],
            BlockTensor::MlpProjW => vec![4 * c, c],
        }
    }
}

/// The four linear layers of a block: the weights that a QLoRA base stores quantized and that adapters attach to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Linear {
    /// `attn.c_attn`: C → 3C, output columns q | k | v.
    Attn,
    /// `attn.c_proj`: C → C.
    AttnProj,
    /// `mlp.c_fc`: C → 4C.
    Fc,
    /// `mlp.c_proj`: 4C → C.
    MlpProj,
}

impl Linear {
    pub const ALL: [Linear; 4] = [Linear::Attn, Linear::AttnProj, Linear::Fc, Linear::MlpProj];

    /// Position in [`Linear::ALL`] (the order of a block's per-linear buffers and of the dropout masks' streams).
    pub fn index(self) -> usize {
        Linear::ALL.iter().position(|x| *x == self).expect("listed")
    }

    pub fn weight(self) -> BlockTensor {
        match self {
            Linear::Attn => BlockTensor::AttnW,
            Linear::AttnProj => BlockTensor::AttnProjW,
            Linear::Fc => BlockTensor::FcW,
            Linear::MlpProj => BlockTensor::MlpProjW,
        }
    }

    pub fn bias(self) -> BlockTensor {
        match self {
            Linear::Attn => BlockTensor::AttnB,
            Linear::AttnProj => BlockTensor::AttnProjB,
            Linear::Fc => BlockTensor::FcB,
            Linear::MlpProj => BlockTensor::MlpProjB,
        }
    }

    /// (d_in, d_out) for model width `c`.
    pub fn dims(self, c: usize) -> (usize, usize) {
        match self {
            Linear::Attn => (c, 3 * c),
            Linear::AttnProj => (c, c),
            Linear::Fc => (c, 4 * c),
            Linear::MlpProj => (4 * c, c),
        }
    }

    /// The module path inside a block, as PEFT and bitsandbytes name it.
    pub fn module(self) -> &'static str {
        match self {
            Linear::Attn => "attn.c_attn",
            Linear::AttnProj => "attn.c_proj",
            Linear::Fc => "mlp.c_fc",
            Linear::MlpProj => "mlp.c_proj",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorId {
    Wte,
    Wpe,
    Block(usize, BlockTensor),
    LnFW,
    LnFB,
}

impl TensorId {
    /// Whether this is a block's linear weight (the tensors a LoRA/QLoRA base may keep in a storage format).
    pub fn is_block_linear_weight(self) -> bool {
        self.block_linear().is_some()
    }

    /// The linear map whose weight this is, for a block linear weight.
    pub fn block_linear(self) -> Option<Linear> {
        match self {
            TensorId::Block(_, t) => t.linear(),
            _ => None,
        }
    }
}

impl Linear {
    /// A weight as GPT-2 stores it (Conv1D, `[in, out]`) turned into a Linear weight (`[out, in]`, as bitsandbytes
    /// quantizes it), or back with `d_in` and `d_out` swapped.
    pub fn transpose(w: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
        assert_eq!(w.len(), d_in * d_out, "a {d_in} × {d_out} weight");
        let mut t = vec![0.0f32; w.len()];
        for (i, row) in w.chunks_exact(d_out).enumerate() {
            for (o, v) in row.iter().enumerate() {
                t[o * d_in + i] = *v;
            }
        }
        t
    }
}

impl BlockTensor {
    /// Whether this is one of the four linear weights (the tensors a LoRA/QLoRA base may keep in a storage format).
    pub fn is_linear_weight(self) -> bool {
        self.linear().is_some()
    }

    /// The linear map whose weight this is, if it is one.
    pub fn linear(self) -> Option<Linear> {
        Linear::ALL.into_iter().find(|l| l.weight() == self)
    }
}

/// Offsets of every tensor in the flat buffer, computed from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamLayout {
    vocab: usize,
    positions: usize,
    c: usize,
    n_layer: usize,
    block_offsets: [usize; 12],
    block_size: usize,
    /// Whether the block linear weights are in the buffer (false: a model that keeps them in a storage format
    /// elsewhere, [`ParamLayout::without_block_linears`]).
    linears_inline: bool,
}

impl ParamLayout {
    /// Every tensor in the buffer.
    pub fn new(cfg: &ModelConfig) -> Self {
        Self::build(cfg, true)
    }

    /// Every tensor but the block linear weights, which take no room (their ranges are empty): the buffer of a model
    /// whose frozen base keeps those weights in a storage format (`Gpt2::keep_linears_stored_from`).
    pub fn without_block_linears(cfg: &ModelConfig) -> Self {
        Self::build(cfg, false)
    }

    fn build(cfg: &ModelConfig, linears_inline: bool) -> Self {
        let c = cfg.n_embd;
        let mut block_offsets = [0usize; 12];
        let mut off = 0;
        for (i, t) in BlockTensor::ALL.iter().enumerate() {
            block_offsets[i] = off;
            if linears_inline || !t.is_linear_weight() {
                off += t.shape(c).iter().product::<usize>();
            }
        }
        ParamLayout {
            vocab: cfg.vocab_size,
            positions: cfg.n_positions,
            c,
            n_layer: cfg.n_layer,
            block_offsets,
            block_size: off,
            linears_inline,
        }
    }

    /// Whether the block linear weights are in the buffer.
    pub fn has_block_linears(&self) -> bool {
        self.linears_inline
    }

    fn blocks_start(&self) -> usize {
        (self.vocab + self.positions) * self.c
    }

    pub fn total(&self) -> usize {
        self.blocks_start() + self.n_layer * self.block_size + 2 * self.c
    }

    pub fn n_layer(&self) -> usize {
        self.n_layer
    }

    pub fn shape(&self, id: TensorId) -> Vec<usize> {
        match id {
            TensorId::Wte => vec![self.vocab, self.c],
            TensorId::Wpe => vec![self.positions, self.c],
            TensorId::Block(_, t) => t.shape(self.c),
            TensorId::LnFW | TensorId::LnFB => vec![self.c],
        }
    }

    /// Where the tensor is in the buffer: empty for a block linear weight a layout without them leaves out.
    pub fn range(&self, id: TensorId) -> Range<usize> {
        let left_out = !self.linears_inline && id.is_block_linear_weight();
        let len: usize = if left_out { 0 } else { self.shape(id).iter().product() };
        let start = match id {
            TensorId::Wte => 0,
            TensorId::Wpe => self.vocab * self.c,
            TensorId::Block(l, t) => {
                assert!(l < self.n_layer, "layer {l} out of range");
                let i = BlockTensor::ALL.iter().position(|x| *x == t).expect("listed");
                self.blocks_start() + l * self.block_size + self.block_offsets[i]
            }
            TensorId::LnFW => self.blocks_start() + self.n_layer * self.block_size,
            TensorId::LnFB => self.blocks_start() + self.n_layer * self.block_size + self.c,
        };
        start..start + len
    }

    /// The name `GPT2LMHeadModel.save_pretrained` gives the tensor.
    pub fn hf_name(&self, id: TensorId) -> String {
        match id {
            TensorId::Wte => "transformer.wte.weight".into(),
            TensorId::Wpe => "transformer.wpe.weight".into(),
            TensorId::Block(l, t) => format!("transformer.h.{l}.{}", t.hf_suffix()),
            TensorId::LnFW => "transformer.ln_f.weight".into(),
            TensorId::LnFB => "transformer.ln_f.bias".into(),
        }
    }

    /// Every tensor in buffer order.
    pub fn ids(&self) -> Vec<TensorId> {
        let mut v = vec![TensorId::Wte, TensorId::Wpe];
        for l in 0..self.n_layer {
            v.extend(BlockTensor::ALL.iter().map(|t| TensorId::Block(l, *t)));
        }
        v.push(TensorId::LnFW);
        v.push(TensorId::LnFB);
        v
    }

    pub fn iter(&self) -> impl Iterator<Item = (TensorId, Range<usize>)> + '_ {
        self.ids().into_iter().map(move |id| (id, self.range(id)))
    }
}
