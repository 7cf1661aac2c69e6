//! The whole model's forward and backward pass on the CPU, over flat buffers: the reference every other executor
//! (the WGSL kernels) is held against. Adapters, when present, add s·B·A·dropout(x) to their linear layer's output;
//! for LoRA/QLoRA the base weights are frozen and only adapter gradients are computed, flowing through the base
//! weights (a base kept in a storage format is dequantized one weight at a time, for that weight's products).

use super::layers::*;
use super::matmul::{gemm, Mat};
use crate::lora::Adapters;
use crate::model::{head_chunk_rows, BlockTensor, Gpt2, Linear, ModelConfig, ParamLayout, StoredLinears, TensorId};
use crate::train::dropout_mask;

/// Bytes of logits the fused head holds at once. Each chunk's products re-pack the embedding (154 MB at GPT-2's
/// size) inside the `gemm` crate, so fewer, larger chunks pay: 16 MiB chunks (83 rows) made GPT-2 steps 7–14 % slower
/// than the whole logits at once, 64 MiB (333 rows, two chunks at 4 × 128) as fast (BENCHMARKS.md).
const HEAD_CHUNK_BYTES: usize = 64 << 20;

/// What the backward pass computes gradients for.
pub enum GradTarget<'a> {
    /// Full fine-tuning: gradients of every model parameter (same layout as the parameters).
    Model(&'a mut [f32]),
    /// LoRA/QLoRA: gradients of the adapter parameters only (same layout as `Adapters::params`).
    Adapters(&'a mut [f32]),
}

/// Activations of one block, kept for the backward pass.
#[derive(Default)]
struct BlockActs {
    ln1: Vec<f32>,
    ln1_mean: Vec<f32>,
    ln1_rstd: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    atty: Vec<f32>,
    attproj: Vec<f32>,
    res2: Vec<f32>,
    ln2: Vec<f32>,
    ln2_mean: Vec<f32>,
    ln2_rstd: Vec<f32>,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    fcproj: Vec<f32>,
    res3: Vec<f32>,
    /// Dropped-out adapter input per linear layer (only with dropout > 0).
    dropped: [Vec<f32>; 4],
}

/// All activations for a batch shape (B, T), allocated once and reused across steps.
pub struct Activations {
    pub batch: usize,
    pub seq: usize,
    encoded: Vec<f32>,
    blocks: Vec<BlockActs>,
    lnf: Vec<f32>,
    lnf_mean: Vec<f32>,
    lnf_rstd: Vec<f32>,
    /// One chunk of the head's logits (scratch of the fused head and cross-entropy; allocated on first use).
    logits: Vec<f32>,
    /// Next-token probabilities of the rows a forward pass without targets asked for (allocated on first use).
    probs: Vec<f32>,
    /// Per adapter entry: u = dropout(x)·Aᵀ, `[BT, r]`.
    lora_u: Vec<Vec<f32>>,
    tokens: Vec<u32>,
    dropout_seed: Option<u64>,
    // scratch for the backward pass
    d_res: Vec<f32>,
    d_tmp: Vec<f32>,
    d_wide: Vec<f32>,
    d_wide2: Vec<f32>,
    d_u: Vec<f32>,
    d_x_lora: Vec<f32>,
    /// One stored linear weight dequantized for its product (empty while the weights are fp32 in the buffer).
    dequantized: Vec<f32>,
}

impl Activations {
    pub fn new(cfg: &ModelConfig, adapters: Option<&Adapters>, batch: usize, seq: usize) -> Self {
        let (c, nh) = (cfg.n_embd, cfg.n_head);
        let bt = batch * seq;
        let dropout = adapters.is_some_and(|a| a.config.dropout > 0.0);
        let blocks = (0..cfg.n_layer)
            .map(|layer| {
                let dropped = std::array::from_fn(|i| {
                    let lin = Linear::ALL[i];
                    let used = dropout && adapters.is_some_and(|a| a.on(layer, lin).next().is_some());
                    if used {
                        vec![0.0; bt * lin.dims(c).0]
                    } else {
                        Vec::new()
                    }
                });
                BlockActs {
                    ln1: vec![0.0; bt * c],
                    ln1_mean: vec![0.0; bt],
                    ln1_rstd: vec![0.0; bt],
                    qkv: vec![0.0; bt * 3 * c],
                    att: vec![0.0; bt * nh * seq],
                    atty: vec![0.0; bt * c],
                    attproj: vec![0.0; bt * c],
                    res2: vec![0.0; bt * c],
                    ln2: vec![0.0; bt * c],
                    ln2_mean: vec![0.0; bt],
                    ln2_rstd: vec![0.0; bt],
                    fch: vec![0.0; bt * 4 * c],
                    fch_gelu: vec![0.0; bt * 4 * c],
                    fcproj: vec![0.0; bt * c],
                    res3: vec![0.0; bt * c],
                    dropped,
                }
            })
            .collect();
        let lora_u = adapters.map(|a| a.entries.iter().map(|e| vec![0.0; bt * e.rank]).collect()).unwrap_or_default();
        let max_rank = adapters.map(|a| a.entries.iter().map(|e| e.rank).max().unwrap_or(0)).unwrap_or(0);
        Activations {
            batch,
            seq,
            encoded: vec![0.0; bt * c],
            blocks,
            lnf: vec![0.0; bt * c],
            lnf_mean: vec![0.0; bt],
            lnf_rstd: vec![0.0; bt],
            logits: Vec::new(),
            probs: Vec::new(),
            lora_u,
            tokens: vec![0; bt],
            dropout_seed: None,
            d_res: vec![0.0; bt * c],
            d_tmp: vec![0.0; bt * c],
            d_wide: vec![0.0; bt * 4 * c],
            d_wide2: vec![0.0; bt * 4 * c],
            d_u: vec![0.0; bt * max_rank],
            d_x_lora: if adapters.is_some() { vec![0.0; bt * 4 * c] } else { Vec::new() },
            dequantized: Vec::new(),
        }
    }

    /// Bytes of the activations kept for the backward pass (scratch excluded: the head's chunk of logits is one),
    /// to hold against the accounting.
    pub fn saved_bytes(&self) -> u64 {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                [
                    &b.ln1,
                    &b.ln1_mean,
                    &b.ln1_rstd,
                    &b.qkv,
                    &b.att,
                    &b.atty,
                    &b.attproj,
                    &b.res2,
                    &b.ln2,
                    &b.ln2_mean,
                    &b.ln2_rstd,
                    &b.fch,
                    &b.fch_gelu,
                    &b.fcproj,
                    &b.res3,
                ]
                .iter()
                .map(|v| v.len())
                .sum::<usize>()
                    + b.dropped.iter().map(|d| d.len()).sum::<usize>()
            })
            .sum();
        let rest = self.encoded.len() + self.lnf.len() + self.lnf_mean.len() + self.lnf_rstd.len();
        let lora: usize = self.lora_u.iter().map(|u| u.len()).sum();
        4 * (blocks + rest + lora) as u64
    }

    /// What [`Activations::scratch_bytes`] counts once a training step has run, known before anything is allocated:
    /// for a model of `cfg` with adapters of at most `max_rank` (None: full fine-tuning), batches of `batch × seq`, and
    /// a base that keeps its linear weights `stored` (one, the widest, is dequantized at a time).
    pub fn training_scratch_bytes(
        cfg: &ModelConfig,
        max_rank: Option<usize>,
        batch: usize,
        seq: usize,
        stored: bool,
    ) -> u64 {
        let (c, v, bt) = (cfg.n_embd, cfg.vocab_size, batch * seq);
        let logits = head_chunk_rows(v, bt, HEAD_CHUNK_BYTES) * v;
        // d_res and d_tmp, d_wide and d_wide2, then the adapters' d_u and d_x_lora.
        let backward = 2 * bt * c + 2 * bt * 4 * c + max_rank.map_or(0, |r| bt * r + bt * 4 * c);
        let widest = Linear::ALL.iter().map(|l| l.dims(c).0 * l.dims(c).1).max().unwrap_or(0);
        4 * (logits + backward + if stored { widest } else { 0 }) as u64
    }

    /// Bytes of the scratch the passes reuse: the head's chunk of logits, next-token probabilities, the backward
    /// pass's buffers and the stored weight dequantized for its product.
    pub fn scratch_bytes(&self) -> u64 {
        let scratch = [
            &self.logits,
            &self.probs,
            &self.d_res,
            &self.d_tmp,
            &self.d_wide,
            &self.d_wide2,
            &self.d_u,
            &self.d_x_lora,
            &self.dequantized,
        ];
        4 * scratch.iter().map(|v| v.len() as u64).sum::<u64>()
    }

    /// Probabilities of the next token at every position, `[B·T, V]` (valid after a forward pass without targets).
    pub fn probs(&self) -> &[f32] {
        &self.probs
    }
}

/// Borrows two disjoint ranges of one buffer mutably.
fn two_mut(buf: &mut [f32], a: std::ops::Range<usize>, b: std::ops::Range<usize>) -> (&mut [f32], &mut [f32]) {
    assert!(a.end <= b.start || b.end <= a.start, "ranges overlap");
    if a.start < b.start {
        let (lo, hi) = buf.split_at_mut(b.start);
        (&mut lo[a], &mut hi[..b.end - b.start])
    } else {
        let (lo, hi) = buf.split_at_mut(a.start);
        (&mut hi[..a.end - a.start], &mut lo[b])
    }
}

/// The gradient buffers of a (weight, bias) or (LayerNorm weight, bias) pair under full fine-tuning; `None` when only
/// adapters are trained.
fn param_grads<'g>(
    grads: &'g mut GradTarget,
    layout: &ParamLayout,
    w: TensorId,
    b: TensorId,
) -> Option<(&'g mut [f32], &'g mut [f32])> {
    match grads {
        GradTarget::Model(g) => Some(two_mut(g, layout.range(w), layout.range(b))),
        GradTarget::Adapters(_) => None,
    }
}

/// The model's weights as the executor reads them.
pub struct Weights<'a> {
    pub cfg: &'a ModelConfig,
    pub layout: &'a ParamLayout,
    pub params: &'a [f32],
    /// The block linear weights, when the model keeps them in a storage format rather than in `params`.
    pub linears: Option<&'a StoredLinears>,
}

impl<'a> Weights<'a> {
    /// `model`'s weights.
    pub fn of(model: &'a Gpt2) -> Self {
        Weights { cfg: &model.config, layout: &model.layout, params: &model.params, linears: model.linears.as_deref() }
    }

    fn get(&self, id: TensorId) -> &[f32] {
        &self.params[self.layout.range(id)]
    }

    fn block(&self, l: usize, t: BlockTensor) -> &[f32] {
        self.get(TensorId::Block(l, t))
    }

    /// Block `l`'s weight of `lin` as the `[in, out]` matrix its products multiply by: read in place from `params`,
    /// or dequantized into `scratch` from its storage format (stored `[out, in]`, so read transposed). One weight at a
    /// time is all the fp32 a stored base ever takes.
    fn linear_weight<'s>(&'s self, l: usize, lin: Linear, scratch: &'s mut Vec<f32>) -> Mat<'s> {
        let (d_in, d_out) = lin.dims(self.cfg.n_embd);
        match self.linears {
            None => Mat::new(self.block(l, lin.weight()), d_out),
            Some(stored) => {
                // Grown to the widest weight once, never shrunk: no reallocating or zeroing at each product.
                if scratch.len() < d_in * d_out {
                    scratch.resize(d_in * d_out, 0.0);
                }
                stored.get(l, lin).dequantize_into(&mut scratch[..d_in * d_out]);
                Mat::t(&scratch[..d_in * d_out], d_in)
            }
        }
    }
}

/// Forward pass over `tokens` (`B·T`, row-major by batch). With `targets` returns the mean cross-entropy in nats
/// (the head fused with the loss in chunks of rows); without, fills [`Activations::probs`] for every position.
/// `dropout_seed` enables adapter dropout (training); `None` is evaluation mode.
pub fn forward(
    w: &Weights,
    adapters: Option<&Adapters>,
    acts: &mut Activations,
    tokens: &[u32],
    targets: Option<&[u32]>,
    dropout_seed: Option<u64>,
) -> Option<f64> {
    forward_blocks(w, adapters, acts, tokens, dropout_seed);
    let (c, v, bt) = (w.cfg.n_embd, w.cfg.vocab_size, acts.batch * acts.seq);
    let wte = w.get(TensorId::Wte);
    match targets {
        Some(tg) => {
            assert_eq!(tg.len(), bt, "targets must be batch × seq");
            acts.logits.resize(head_chunk_rows(v, bt, HEAD_CHUNK_BYTES) * v, 0.0);
            Some(head_cross_entropy(&mut acts.logits, &acts.lnf, wte, tg, c, v, None))
        }
        None => {
            acts.probs.resize(bt * v, 0.0);
            lm_head_forward(&mut acts.probs, &acts.lnf, wte, bt, c, v);
            None
        }
    }
}

/// The next-token probabilities after the last of `tokens` (one sequence filling `acts`): the head runs for that
/// row only, as generation needs.
pub fn next_token_probs<'a>(
    w: &Weights,
    adapters: Option<&Adapters>,
    acts: &'a mut Activations,
    tokens: &[u32],
) -> &'a [f32] {
    forward_blocks(w, adapters, acts, tokens, None);
    let (c, v, bt) = (w.cfg.n_embd, w.cfg.vocab_size, acts.batch * acts.seq);
    acts.probs.resize(v, 0.0);
    lm_head_forward(&mut acts.probs, &acts.lnf[(bt - 1) * c..], w.get(TensorId::Wte), 1, c, v);
    &acts.probs
}

/// A training pass: forward, the fused head and loss with its gradient, and the backward pass accumulating into
/// `grads`. Returns the mean cross-entropy in nats.
pub fn forward_backward(
    w: &Weights,
    adapters: Option<&Adapters>,
    acts: &mut Activations,
    tokens: &[u32],
    targets: &[u32],
    dropout_seed: Option<u64>,
    mut grads: GradTarget,
) -> f64 {
    forward_blocks(w, adapters, acts, tokens, dropout_seed);
    let (c, v, bt) = (w.cfg.n_embd, w.cfg.vocab_size, acts.batch * acts.seq);
    assert_eq!(targets.len(), bt, "targets must be batch × seq");
    let dwte = match &mut grads {
        GradTarget::Model(g) => Some(&mut g[w.layout.range(TensorId::Wte)]),
        GradTarget::Adapters(_) => None,
    };
    acts.logits.resize(head_chunk_rows(v, bt, HEAD_CHUNK_BYTES) * v, 0.0);
    let head_grad = HeadGrad { dlnf: &mut acts.d_tmp, dwte };
    let loss = head_cross_entropy(&mut acts.logits, &acts.lnf, w.get(TensorId::Wte), targets, c, v, Some(head_grad));
    backward_blocks(w, adapters, acts, grads);
    loss
}

/// Embedding, blocks and the final LayerNorm: everything before the head.
fn forward_blocks(
    w: &Weights,
    adapters: Option<&Adapters>,
    acts: &mut Activations,
    tokens: &[u32],
    dropout_seed: Option<u64>,
) {
    let cfg = w.cfg;
    let (b, t) = (acts.batch, acts.seq);
    let bt = b * t;
    let (c, nh) = (cfg.n_embd, cfg.n_head);
    let eps = cfg.layer_norm_epsilon as f32;
    assert_eq!(tokens.len(), bt, "tokens must be batch × seq");
    acts.tokens.copy_from_slice(tokens);
    acts.dropout_seed = dropout_seed;
    embedding_forward(&mut acts.encoded, tokens, w.get(TensorId::Wte), w.get(TensorId::Wpe), t, c);
    for l in 0..cfg.n_layer {
        let (prev, rest) = acts.blocks.split_at_mut(l);
        let a = &mut rest[0];
        let res_in: &[f32] = if l == 0 { &acts.encoded } else { &prev[l - 1].res3 };
        layernorm_forward(
            &mut a.ln1,
            &mut a.ln1_mean,
            &mut a.ln1_rstd,
            res_in,
            w.block(l, BlockTensor::Ln1W),
            w.block(l, BlockTensor::Ln1B),
            c,
            eps,
        );
        linear_with_adapters(
            w,
            adapters,
            &mut acts.lora_u,
            &mut a.dropped,
            &mut acts.dequantized,
            l,
            Linear::Attn,
            &a.ln1,
            &mut a.qkv,
            bt,
            dropout_seed,
        );
        attention_forward(&mut a.atty, &mut a.att, &a.qkv, t, c, nh);
        linear_with_adapters(
            w,
            adapters,
            &mut acts.lora_u,
            &mut a.dropped,
            &mut acts.dequantized,
            l,
            Linear::AttnProj,
            &a.atty,
            &mut a.attproj,
            bt,
            dropout_seed,
        );
        residual_forward(&mut a.res2, res_in, &a.attproj);
        layernorm_forward(
            &mut a.ln2,
            &mut a.ln2_mean,
            &mut a.ln2_rstd,
            &a.res2,
            w.block(l, BlockTensor::Ln2W),
            w.block(l, BlockTensor::Ln2B),
            c,
            eps,
        );
        linear_with_adapters(
            w,
            adapters,
            &mut acts.lora_u,
            &mut a.dropped,
            &mut acts.dequantized,
            l,
            Linear::Fc,
            &a.ln2,
            &mut a.fch,
            bt,
            dropout_seed,
        );
        gelu_forward(&mut a.fch_gelu, &a.fch);
        linear_with_adapters(
            w,
            adapters,
            &mut acts.lora_u,
            &mut a.dropped,
            &mut acts.dequantized,
            l,
            Linear::MlpProj,
            &a.fch_gelu,
            &mut a.fcproj,
            bt,
            dropout_seed,
        );
        residual_forward(&mut a.res3, &a.res2, &a.fcproj);
    }
    let last = &acts.blocks[cfg.n_layer - 1].res3;
    layernorm_forward(
        &mut acts.lnf,
        &mut acts.lnf_mean,
        &mut acts.lnf_rstd,
        last,
        w.get(TensorId::LnFW),
        w.get(TensorId::LnFB),
        c,
        eps,
    );
}

/// Base linear layer plus every adapter attached to it.
#[allow(clippy::too_many_arguments)]
fn linear_with_adapters(
    w: &Weights,
    adapters: Option<&Adapters>,
    lora_u: &mut [Vec<f32>],
    dropped: &mut [Vec<f32>; 4],
    dequantized: &mut Vec<f32>,
    l: usize,
    lin: Linear,
    inp: &[f32],
    out: &mut [f32],
    bt: usize,
    dropout_seed: Option<u64>,
) {
    let (d_in, oc) = lin.dims(w.cfg.n_embd);
    linear_forward(out, inp, w.linear_weight(l, lin, dequantized), w.block(l, lin.bias()), bt, d_in, oc);
    let Some(ad) = adapters else { return };
    let li = lin.index();
    let p = ad.config.dropout;
    let x: &[f32] = if !dropped[li].is_empty() {
        match dropout_seed {
            Some(seed) => {
                let keep = 1.0 / (1.0 - p);
                for ((d, x), kept) in dropped[li].iter_mut().zip(inp).zip(dropout_mask(seed, l, li, p)) {
                    *d = if kept { x * keep } else { 0.0 };
                }
            }
            None => dropped[li].copy_from_slice(inp),
        }
        &dropped[li]
    } else {
        inp
    };
    for (idx, e) in ad.entries.iter().enumerate().filter(|(_, e)| e.layer == l && e.target.linear() == lin) {
        let a = &ad.params[e.a.clone()];
        let bm = &ad.params[e.b.clone()];
        let u = &mut lora_u[idx];
        gemm(bt, d_in, e.rank, 1.0, Mat::new(x, d_in), Mat::t(a, d_in), 0.0, u, e.rank);
        let cols = e.target.out_cols(w.cfg.n_embd);
        gemm(
            bt,
            e.rank,
            e.d_out,
            ad.scaling(e),
            Mat::new(u, e.rank),
            Mat::t(bm, e.rank),
            1.0,
            &mut out[cols.start..],
            oc,
        );
    }
}

/// The backward pass below the head, from `dlnf` (in `acts.d_tmp`, written by the fused head) down to the
/// embedding. Accumulates into the gradient buffer of `grads`.
fn backward_blocks(w: &Weights, adapters: Option<&Adapters>, acts: &mut Activations, mut grads: GradTarget) {
    let cfg = w.cfg;
    let (b, t) = (acts.batch, acts.seq);
    let bt = b * t;
    let (c, nh) = (cfg.n_embd, cfg.n_head);
    let lay = w.layout;

    let mut dlnf = std::mem::take(&mut acts.d_tmp);
    let d_res = &mut acts.d_res;
    d_res.fill(0.0);
    {
        let last = &acts.blocks[cfg.n_layer - 1].res3;
        let dp = param_grads(&mut grads, lay, TensorId::LnFW, TensorId::LnFB);
        layernorm_backward(d_res, dp, &dlnf, last, w.get(TensorId::LnFW), &acts.lnf_mean, &acts.lnf_rstd, c);
    }

    for l in (0..cfg.n_layer).rev() {
        let res_in: &[f32] = if l == 0 { &acts.encoded } else { &acts.blocks[l - 1].res3 };
        let a = &acts.blocks[l];
        // d_res holds d(res3). The MLP branch: fcproj = MlpProj(gelu(Fc(ln2(res2)))).
        let dgelu = &mut acts.d_wide;
        dgelu.fill(0.0);
        linear_backward_with_adapters(
            w,
            adapters,
            &acts.lora_u,
            &a.dropped,
            acts.dropout_seed,
            &mut grads,
            &mut acts.d_u,
            &mut acts.d_x_lora,
            &mut acts.dequantized,
            l,
            Linear::MlpProj,
            d_res,
            &a.fch_gelu,
            dgelu,
            bt,
        );
        let dfch = &mut acts.d_wide2;
        gelu_backward(dfch, &a.fch, dgelu);
        dlnf.fill(0.0);
        linear_backward_with_adapters(
            w,
            adapters,
            &acts.lora_u,
            &a.dropped,
            acts.dropout_seed,
            &mut grads,
            &mut acts.d_u,
            &mut acts.d_x_lora,
            &mut acts.dequantized,
            l,
            Linear::Fc,
            dfch,
            &a.ln2,
            &mut dlnf,
            bt,
        );
        {
            let dp = param_grads(
                &mut grads,
                lay,
                TensorId::Block(l, BlockTensor::Ln2W),
                TensorId::Block(l, BlockTensor::Ln2B),
            );
            // res3 = res2 + fcproj, so d(res2) = d(res3) + (LayerNorm path)
            layernorm_backward(d_res, dp, &dlnf, &a.res2, w.block(l, BlockTensor::Ln2W), &a.ln2_mean, &a.ln2_rstd, c);
        }
        // Attention branch: attproj = AttnProj(attention(Attn(ln1(res_in)))).
        let datty = &mut dlnf;
        datty.fill(0.0);
        linear_backward_with_adapters(
            w,
            adapters,
            &acts.lora_u,
            &a.dropped,
            acts.dropout_seed,
            &mut grads,
            &mut acts.d_u,
            &mut acts.d_x_lora,
            &mut acts.dequantized,
            l,
            Linear::AttnProj,
            d_res,
            &a.atty,
            datty,
            bt,
        );
        let dqkv = &mut acts.d_wide[..bt * 3 * c];
        attention_backward(dqkv, datty, &a.qkv, &a.att, b, t, c, nh);
        let dln1 = &mut acts.d_wide2[..bt * c];
        dln1.fill(0.0);
        linear_backward_with_adapters(
            w,
            adapters,
            &acts.lora_u,
            &a.dropped,
            acts.dropout_seed,
            &mut grads,
            &mut acts.d_u,
            &mut acts.d_x_lora,
            &mut acts.dequantized,
            l,
            Linear::Attn,
            &acts.d_wide[..bt * 3 * c],
            &a.ln1,
            dln1,
            bt,
        );
        {
            let dp = param_grads(
                &mut grads,
                lay,
                TensorId::Block(l, BlockTensor::Ln1W),
                TensorId::Block(l, BlockTensor::Ln1B),
            );
            layernorm_backward(
                d_res,
                dp,
                &acts.d_wide2[..bt * c],
                res_in,
                w.block(l, BlockTensor::Ln1W),
                &a.ln1_mean,
                &a.ln1_rstd,
                c,
            );
        }
    }
    if let GradTarget::Model(g) = &mut grads {
        let (dwte, dwpe) = two_mut(g, lay.range(TensorId::Wte), lay.range(TensorId::Wpe));
        embedding_backward(dwte, dwpe, d_res, &acts.tokens, t, c);
    }
    acts.d_tmp = dlnf;
}

/// Backward of a linear layer and its adapters: `dinp += …`; weight gradients for full fine-tuning, adapter
/// gradients for LoRA.
#[allow(clippy::too_many_arguments)]
fn linear_backward_with_adapters(
    w: &Weights,
    adapters: Option<&Adapters>,
    lora_u: &[Vec<f32>],
    dropped: &[Vec<f32>; 4],
    dropout_seed: Option<u64>,
    grads: &mut GradTarget,
    d_u: &mut [f32],
    d_x_lora: &mut [f32],
    dequantized: &mut Vec<f32>,
    l: usize,
    lin: Linear,
    dout: &[f32],
    inp: &[f32],
    dinp: &mut [f32],
    bt: usize,
) {
    let c = w.cfg.n_embd;
    let (d_in, oc) = lin.dims(c);
    let dparams = param_grads(grads, w.layout, TensorId::Block(l, lin.weight()), TensorId::Block(l, lin.bias()));
    linear_backward(dinp, dparams, dout, inp, w.linear_weight(l, lin, dequantized), bt, d_in, oc);
    let Some(ad) = adapters else { return };
    let li = lin.index();
    let x: &[f32] = if dropped[li].is_empty() { inp } else { &dropped[li] };
    let dxl = &mut d_x_lora[..bt * d_in];
    dxl.fill(0.0);
    for (idx, e) in ad.entries.iter().enumerate().filter(|(_, e)| e.layer == l && e.target.linear() == lin) {
        let s = ad.scaling(e);
        let a = &ad.params[e.a.clone()];
        let bm = &ad.params[e.b.clone()];
        let u = &lora_u[idx];
        let cols = e.target.out_cols(c);
        let dout_t = &dout[cols.start..];
        let du = &mut d_u[..bt * e.rank];
        // du = s · dout_t · B   [BT, r]
        gemm(bt, e.d_out, e.rank, s, Mat::new(dout_t, oc), Mat::new(bm, e.rank), 0.0, du, e.rank);
        if let GradTarget::Adapters(g) = grads {
            // dB += s · dout_tᵀ · u   [d_out, r]
            gemm(e.d_out, bt, e.rank, s, Mat::t(dout_t, oc), Mat::new(u, e.rank), 1.0, &mut g[e.b.clone()], e.rank);
            // dA += duᵀ · x   [r, d_in]
            gemm(e.rank, bt, d_in, 1.0, Mat::t(du, e.rank), Mat::new(x, d_in), 1.0, &mut g[e.a.clone()], d_in);
        }
        // d(dropped x) += du · A   [BT, d_in]
        gemm(bt, e.rank, d_in, 1.0, Mat::new(du, e.rank), Mat::new(a, d_in), 1.0, dxl, d_in);
    }
    match (dropped[li].is_empty(), dropout_seed) {
        (false, Some(seed)) => {
            // dropped = x · mask / (1 − p)
            let keep = 1.0 / (1.0 - ad.config.dropout);
            for ((d, g), kept) in dinp.iter_mut().zip(dxl.iter()).zip(dropout_mask(seed, l, li, ad.config.dropout)) {
                if kept {
                    *d += g * keep;
                }
            }
        }
        _ => {
            for (d, g) in dinp.iter_mut().zip(dxl.iter()) {
                *d += g;
            }
        }
    }
}
