//! The buffers a forward pass writes — the same set the CPU executor keeps per block — allocated once for a fixed
//! number of rows: batch × sequence for training, one position for decoding.

use super::{Category, Gpu, GpuBuffer};
use crate::lora::Adapters;
use crate::model::{Linear, ModelConfig};
use crate::Result;

/// Activations of one transformer block.
pub(super) struct BlockActivations {
    pub ln1: GpuBuffer,
    pub ln1_stats: GpuBuffer,
    pub qkv: GpuBuffer,
    /// Attention probabilities: [B, T, NH, T] in training; the scores of one position over the context when decoding.
    pub att: GpuBuffer,
    pub atty: GpuBuffer,
    pub attproj: GpuBuffer,
    pub res2: GpuBuffer,
    pub ln2: GpuBuffer,
    pub ln2_stats: GpuBuffer,
    pub fch: GpuBuffer,
    pub fch_gelu: GpuBuffer,
    pub fcproj: GpuBuffer,
    pub res3: GpuBuffer,
    /// Dropped-out adapter input and its mask, per linear layer (only with adapter dropout).
    pub dropped: [Option<(GpuBuffer, GpuBuffer)>; 4],
}

/// Every activation of a forward pass over `rows` rows.
pub(super) struct Activations {
    pub rows: usize,
    pub encoded: GpuBuffer,
    pub blocks: Vec<BlockActivations>,
    pub lnf: GpuBuffer,
    pub lnf_stats: GpuBuffer,
    /// The head's output for one chunk of rows (scratch): logits, turned into probabilities and then the loss's
    /// gradient in place by the fused cross-entropy in training.
    pub logits: GpuBuffer,
    /// Each adapter's x·Aᵀ, in the order of `Adapters::entries`.
    pub lora_u: Vec<GpuBuffer>,
}

impl Activations {
    /// Buffers for `rows` rows and `att_len` attention values per block, and head logits for `logit_rows` rows at
    /// once; with `training`, the dropout masks the adapters' configuration asks for (generation never drops out).
    pub fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        adapters: Option<&Adapters>,
        rows: usize,
        att_len: usize,
        logit_rows: usize,
        training: bool,
    ) -> Result<Activations> {
        let (c, v) = (cfg.n_embd, cfg.vocab_size);
        let act =
            |label: &str, n: usize| gpu.buffer(label, 4 * n as u64, Category::Activations, wgpu::BufferUsages::empty());
        let dropout = training && adapters.is_some_and(|a| a.config.dropout > 0.0);
        let mut blocks = Vec::new();
        for l in 0..cfg.n_layer {
            let mut dropped: [Option<(GpuBuffer, GpuBuffer)>; 4] = Default::default();
            for (li, slot) in dropped.iter_mut().enumerate() {
                let lin = Linear::ALL[li];
                if dropout && adapters.is_some_and(|a| a.on(l, lin).next().is_some()) {
                    let n = rows * lin.dims(c).0;
                    *slot = Some((act("dropped x", n)?, act("dropout mask", n)?));
                }
            }
            blocks.push(BlockActivations {
                ln1: act("ln1", rows * c)?,
                ln1_stats: act("ln1 stats", 2 * rows)?,
                qkv: act("qkv", rows * 3 * c)?,
                att: act("att", att_len)?,
                atty: act("atty", rows * c)?,
                attproj: act("attproj", rows * c)?,
                res2: act("res2", rows * c)?,
                ln2: act("ln2", rows * c)?,
                ln2_stats: act("ln2 stats", 2 * rows)?,
                fch: act("fch", rows * 4 * c)?,
                fch_gelu: act("fch gelu", rows * 4 * c)?,
                fcproj: act("fcproj", rows * c)?,
                res3: act("res3", rows * c)?,
                dropped,
            });
        }
        Ok(Activations {
            rows,
            encoded: act("encoded", rows * c)?,
            blocks,
            lnf: act("lnf", rows * c)?,
            lnf_stats: act("lnf stats", 2 * rows)?,
            logits: gpu.buffer(
                "logits",
                4 * (logit_rows * v) as u64,
                Category::Scratch,
                wgpu::BufferUsages::empty(),
            )?,
            lora_u: match adapters {
                Some(ad) => ad.entries.iter().map(|e| act("lora u", rows * e.rank)).collect::<Result<_>>()?,
                None => Vec::new(),
            },
        })
    }

    /// The input of block `l`: the embedding for the first, the previous block's output after.
    pub fn block_input(&self, l: usize) -> &GpuBuffer {
        if l == 0 {
            &self.encoded
        } else {
            &self.blocks[l - 1].res3
        }
    }

    /// The last block's output.
    pub fn last(&self) -> &GpuBuffer {
        &self.blocks[self.blocks.len() - 1].res3
    }
}
