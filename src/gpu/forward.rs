//! The forward pass as a list of prepared dispatches, recorded once and submitted every step: the training step and
//! the KV-cache generator record the same program and differ only in how a block attends ([`Attention`]). Layer for
//! layer it is `cpu::executor`'s forward.

use super::activations::Activations;
use super::kernels::{EmbeddingParams, Kernels};
use super::matmul::{Dispatch, Matmul, MatmulDequant, MatmulShape};
use super::weights::GpuWeights;
use super::{Gpu, GpuBuffer, View};
use crate::model::{BlockTensor, Linear, TensorId};

/// Records dispatches over borrowed weights, activations and (for the backward pass) gradients.
pub(super) struct Recorder<'a> {
    pub gpu: &'a Gpu,
    pub k: &'a Kernels,
    pub mm: &'a Matmul,
    pub mmq: &'a MatmulDequant,
    pub w: &'a GpuWeights,
    pub acts: &'a Activations,
    /// Gradients, shard for shard like the trainable buffers; `None` when only the forward pass is recorded.
    pub grads: Option<&'a [GpuBuffer]>,
}

/// How a block attends.
pub(super) enum Attention<'a> {
    /// Causal self-attention within each of `batch` sequences of `seq` tokens (training).
    Causal { batch: u32, seq: u32 },
    /// One new position against each block's key and value caches of `max_t` positions (decoding); the position
    /// is written into the uniforms before each token ([`ForwardProgram::attention_at`]).
    Decode { caches: &'a [(GpuBuffer, GpuBuffer)], max_t: u32 },
}

/// A recorded forward pass, from token ids to the final LayerNorm (the head is recorded apart: `head.rs`).
pub(super) struct ForwardProgram {
    pub dispatches: Vec<Dispatch>,
    /// Indices of the embedding dispatches, one per embedding part, with their uniforms (which hold the first
    /// position).
    pub embedding_at: Vec<(usize, EmbeddingParams)>,
    /// Indices of the decoding attention dispatches, one per block (empty in training).
    pub attention_at: Vec<usize>,
}

impl<'a> Recorder<'a> {
    fn rows(&self) -> u32 {
        self.acts.rows as u32
    }

    pub(super) fn grads(&self) -> &'a [GpuBuffer] {
        self.grads.expect("backward passes are recorded with gradients")
    }

    /// A parameter's gradient as a binding (full fine-tuning: gradients mirror the parameter shards).
    pub(super) fn grad(&self, id: TensorId) -> View<'a> {
        let len: usize = self.w.layout.shape(id).iter().product();
        let p = self.w.place(id);
        self.grads()[p.shard].view(p.offset, len)
    }

    /// A parameter's gradient shard and its first float there.
    pub(super) fn grad_at(&self, id: TensorId) -> (&'a GpuBuffer, u32) {
        let p = self.w.place(id);
        (&self.grads()[p.shard], p.offset as u32)
    }

    /// The adapters' gradients (one shard, laid out like the adapter buffer).
    pub(super) fn adapter_grads(&self) -> &'a GpuBuffer {
        &self.grads()[0]
    }

    /// Zeroes every gradient shard (before a step accumulates into them).
    pub(super) fn zero_grads(&self, out: &mut Vec<Dispatch>) {
        for g in self.grads() {
            out.push(self.k.zero(self.gpu, (g.size() / 4) as u32, g.all()));
        }
    }

    /// Embedding, blocks and the final LayerNorm, reading `tokens` in sequences of `seq`.
    pub(super) fn forward(&self, tokens: &'a GpuBuffer, seq: u32, attention: Attention<'a>) -> ForwardProgram {
        let (gpu, k, w, a) = (self.gpu, self.k, self.w, self.acts);
        let cfg = &w.cfg;
        let (rows, c, nh) = (self.rows(), cfg.n_embd as u32, cfg.n_head as u32);
        let eps = cfg.layer_norm_epsilon as f32;
        let mut out = Vec::new();
        let mut embedding_at = Vec::new();
        for part in w.wte_parts() {
            let (wte, half) = w.wte_values(&part);
            let p = EmbeddingParams { half: half as u32, ..EmbeddingParams::new(rows, seq, c, part.rows.clone()) };
            embedding_at.push((out.len(), p));
            out.push(k.embedding_forward(gpu, p, a.encoded.all(), tokens.all(), wte, w.param(TensorId::Wpe)));
        }
        let mut attention_at = Vec::new();
        for l in 0..cfg.n_layer {
            let (res_in, b) = (a.block_input(l), &a.blocks[l]);
            let bp = |t: BlockTensor| w.param(TensorId::Block(l, t));
            out.push(k.layernorm_forward(
                gpu,
                rows,
                c,
                eps,
                b.ln1.all(),
                b.ln1_stats.all(),
                res_in.all(),
                bp(BlockTensor::Ln1W),
                bp(BlockTensor::Ln1B),
            ));
            self.linear_forward(&mut out, l, Linear::Attn, &b.ln1, &b.qkv);
            match &attention {
                Attention::Causal { batch, seq } => {
                    out.push(k.attention_forward(gpu, *batch, *seq, c, nh, b.atty.all(), b.att.all(), b.qkv.all()))
                }
                Attention::Decode { caches, max_t } => {
                    attention_at.push(out.len());
                    let (kc, vc) = &caches[l];
                    out.push(k.attention_decode(
                        gpu,
                        c,
                        nh,
                        *max_t,
                        b.atty.all(),
                        b.qkv.all(),
                        kc.all(),
                        vc.all(),
                        b.att.all(),
                    ));
                }
            }
            self.linear_forward(&mut out, l, Linear::AttnProj, &b.atty, &b.attproj);
            out.push(k.residual_forward(gpu, rows * c, b.res2.all(), res_in.all(), b.attproj.all()));
            out.push(k.layernorm_forward(
                gpu,
                rows,
                c,
                eps,
                b.ln2.all(),
                b.ln2_stats.all(),
                b.res2.all(),
                bp(BlockTensor::Ln2W),
                bp(BlockTensor::Ln2B),
            ));
            self.linear_forward(&mut out, l, Linear::Fc, &b.ln2, &b.fch);
            out.push(k.gelu_forward(gpu, rows * 4 * c, b.fch.all(), b.fch_gelu.all()));
            self.linear_forward(&mut out, l, Linear::MlpProj, &b.fch_gelu, &b.fcproj);
            out.push(k.residual_forward(gpu, rows * c, b.res3.all(), b.res2.all(), b.fcproj.all()));
        }
        out.push(k.layernorm_forward(
            gpu,
            rows,
            c,
            eps,
            a.lnf.all(),
            a.lnf_stats.all(),
            a.last().all(),
            w.param(TensorId::LnFW),
            w.param(TensorId::LnFB),
        ));
        ForwardProgram { dispatches: out, embedding_at, attention_at }
    }

    /// out = inp·W + b, plus every adapter on the layer (`cpu::executor`'s `linear_forward`).
    pub(super) fn linear_forward(
        &self,
        out: &mut Vec<Dispatch>,
        l: usize,
        lin: Linear,
        inp: &'a GpuBuffer,
        y: &'a GpuBuffer,
    ) {
        let c = self.w.cfg.n_embd;
        let (d_in, oc) = lin.dims(c);
        let (bt, d_in32, oc32) = (self.rows(), d_in as u32, oc as u32);
        let bias = self.w.param(TensorId::Block(l, lin.bias()));
        if self.w.full {
            let (shard, w_off) = self.w.param_at(TensorId::Block(l, lin.weight()));
            out.push(self.k.broadcast_rows(self.gpu, bt, oc32, y.all(), bias));
            let s = MatmulShape { b_offset: w_off, ..MatmulShape::plain(bt, d_in32, oc32) }.scaled(1.0, 1.0);
            out.push(self.mm.prepare(self.gpu, s, inp.all(), shard.all(), y.all()));
        } else {
            let w = &self.w.qweights[l * 4 + lin.index()];
            out.push(self.mmq.prepare_forward(self.gpu, w, bt, inp.all(), Some(bias), y.all()));
        }
        let entries = self.w.entries_on(l, lin);
        if entries.is_empty() {
            return;
        }
        let ad = self.w.adapters.as_ref().expect("entries imply adapters");
        let abuf = &self.w.adapter_buf[0];
        let x: &GpuBuffer = match &self.acts.blocks[l].dropped[lin.index()] {
            Some((xd, mask)) => {
                out.push(self.k.mask_forward(self.gpu, bt * d_in32, xd.all(), inp.all(), mask.all()));
                xd
            }
            None => inp,
        };
        for i in entries {
            let e = &ad.entries[i];
            let (a_off, b_off) = self.w.adapter_offsets[i];
            let r = e.rank as u32;
            let u = &self.acts.lora_u[i];
            // u = x·Aᵀ
            let s1 = MatmulShape { b_offset: a_off as u32, ..MatmulShape::new(bt, d_in32, r, false, true) };
            out.push(self.mm.prepare(self.gpu, s1, x.all(), abuf.all(), u.all()));
            // y[:, cols] += s · u·Bᵀ
            let cols = e.target.out_cols(c);
            let s2 = MatmulShape {
                b_offset: b_off as u32,
                ldc: oc32,
                c_offset: cols.start as u32,
                ..MatmulShape::new(bt, r, e.d_out as u32, false, true)
            }
            .scaled(e.scaling, 1.0);
            out.push(self.mm.prepare(self.gpu, s2, u.all(), abuf.all(), y.all()));
        }
    }
}
