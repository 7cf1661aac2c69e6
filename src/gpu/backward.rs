//! The backward pass as a list of prepared dispatches, recorded once: from the head's gradient (the fused head in
//! `head.rs` writes it) through the blocks in reverse and the embedding, each layer's backward beside its forward in
//! `forward.rs` and paired with `cpu::executor`'s backward. Gradients accumulate into buffers laid out like the
//! trainable parameters, shard for shard.

use super::forward::Recorder;
use super::kernels::EmbeddingParams;
use super::matmul::{Dispatch, MatmulShape};
use super::weights::WteStore;
use super::{Category, Gpu, GpuBuffer};
use crate::model::{BlockTensor, Linear, ModelConfig, TensorId};
use crate::Result;
use BlockTensor::{Ln1B, Ln1W, Ln2B, Ln2W};

/// Backward-pass scratch, mirroring the CPU executor's.
pub(super) struct Scratch {
    d_res: GpuBuffer,
    d_tmp: GpuBuffer,
    d_wide: GpuBuffer,
    d_wide2: GpuBuffer,
    d_u: GpuBuffer,
    d_x_lora: GpuBuffer,
    dpre: GpuBuffer,
}

impl Scratch {
    /// Scratch for `rows` rows of `seq`-token sequences, adapters up to rank `max_rank`.
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, rows: usize, seq: usize, max_rank: usize) -> Result<Scratch> {
        let (c, nh) = (cfg.n_embd, cfg.n_head);
        let sc =
            |label: &str, n: usize| gpu.buffer(label, 4 * n as u64, Category::Scratch, wgpu::BufferUsages::empty());
        Ok(Scratch {
            d_res: sc("d_res", rows * c)?,
            d_tmp: sc("d_tmp", rows * c)?,
            d_wide: sc("d_wide", rows * 4 * c)?,
            d_wide2: sc("d_wide2", rows * 4 * c)?,
            d_u: sc("d_u", rows * max_rank)?,
            d_x_lora: sc("d_x_lora", rows * 4 * c)?,
            dpre: sc("dpre", rows * nh * seq)?,
        })
    }
}

impl Scratch {
    /// Where the fused head writes the gradient of the final LayerNorm's output, where the backward pass starts.
    pub fn dlnf(&self) -> &GpuBuffer {
        &self.d_tmp
    }
}

/// A LayerNorm in the backward pass: its input, saved statistics and parameters.
pub(super) struct LayerNormAt<'a> {
    inp: &'a GpuBuffer,
    stats: &'a GpuBuffer,
    w: TensorId,
    b: TensorId,
}

impl<'a> Recorder<'a> {
    /// The backward pass below the head: from `dlnf` (in the scratch's `d_tmp`, written by the fused head,
    /// `head.rs`) back through the final LayerNorm, every block and (full fine-tuning) the embedding, reading
    /// `tokens` in `batch` sequences of `seq`. Gradients accumulate: the step zeroes them before the head.
    pub(super) fn backward(&self, s: &'a Scratch, tokens: &'a GpuBuffer, batch: u32, seq: u32) -> Vec<Dispatch> {
        let (gpu, k, w, a) = (self.gpu, self.k, self.w, self.acts);
        let cfg = &w.cfg;
        let (bt32, c32, nh32) = (a.rows as u32, cfg.n_embd as u32, cfg.n_head as u32);
        let (b32, t32) = (batch, seq);
        let full = w.full;
        let mut bwd = Vec::new();
        bwd.push(k.zero(gpu, bt32 * c32, s.d_res.all()));
        let lnf = LayerNormAt { inp: a.last(), stats: &a.lnf_stats, w: TensorId::LnFW, b: TensorId::LnFB };
        self.layernorm_backward(&mut bwd, lnf, &s.d_tmp, &s.d_res);
        for l in (0..cfg.n_layer).rev() {
            let (res_in, blk) = (a.block_input(l), &a.blocks[l]);
            let block = |t: BlockTensor| TensorId::Block(l, t);
            // A linear's backward, GELU's and attention's write their input gradient outright, so no zeroing pass
            // comes before them (issue 21's profile counted six a layer in GPT-2's step, written only to be added to).
            self.linear_backward(&mut bwd, l, Linear::MlpProj, &s.d_res, &blk.fch_gelu, &s.d_wide, s);
            bwd.push(k.gelu_backward(gpu, bt32 * 4 * c32, s.d_wide2.all(), blk.fch.all(), s.d_wide.all()));
            self.linear_backward(&mut bwd, l, Linear::Fc, &s.d_wide2, &blk.ln2, &s.d_tmp, s);
            let ln2 = LayerNormAt { inp: &blk.res2, stats: &blk.ln2_stats, w: block(Ln2W), b: block(Ln2B) };
            self.layernorm_backward(&mut bwd, ln2, &s.d_tmp, &s.d_res);
            self.linear_backward(&mut bwd, l, Linear::AttnProj, &s.d_res, &blk.atty, &s.d_tmp, s);
            let [q_pass, k_pass] = k.attention_backward(
                gpu,
                b32,
                t32,
                c32,
                nh32,
                s.d_wide.all(),
                s.d_tmp.all(),
                blk.qkv.all(),
                blk.att.all(),
                s.dpre.all(),
            );
            bwd.push(q_pass);
            bwd.push(k_pass);
            self.linear_backward(&mut bwd, l, Linear::Attn, &s.d_wide, &blk.ln1, &s.d_wide2, s);
            let ln1 = LayerNormAt { inp: res_in, stats: &blk.ln1_stats, w: block(Ln1W), b: block(Ln1B) };
            self.layernorm_backward(&mut bwd, ln1, &s.d_wide2, &s.d_res);
        }
        if full {
            for part in w.wte_parts() {
                let WteStore::F32(place) = part.store else { unreachable!("full fine-tuning keeps wte in fp32") };
                let p = EmbeddingParams::new(bt32, t32, c32, part.rows.clone());
                let dwte = self.grads()[place.shard].view(place.offset, part.rows.len() * cfg.n_embd);
                bwd.push(k.embedding_backward(gpu, p, dwte, self.grad(TensorId::Wpe), s.d_res.all(), tokens.all()));
            }
        }
        bwd
    }

    /// `dinp += ∂/∂inp` of a LayerNorm and, in full fine-tuning, its weight and bias gradients
    /// (`cpu::layers::layernorm_backward`).
    fn layernorm_backward(
        &self,
        out: &mut Vec<Dispatch>,
        ln: LayerNormAt<'a>,
        dout: &'a GpuBuffer,
        dinp: &'a GpuBuffer,
    ) {
        let (gpu, k, w) = (self.gpu, self.k, self.w);
        let (rows, c) = (self.acts.rows as u32, w.cfg.n_embd as u32);
        out.push(k.layernorm_backward(
            gpu,
            rows,
            c,
            dinp.all(),
            dout.all(),
            ln.inp.all(),
            w.param(ln.w),
            ln.stats.all(),
        ));
        if w.full {
            let (dw, db) = (self.grad(ln.w), self.grad(ln.b));
            out.push(k.layernorm_param_grads(gpu, rows, c, dw, db, dout.all(), ln.inp.all(), ln.stats.all()));
        }
    }

    /// dinp = ∂/∂inp (the base product writes it, beta 0, and the adapters' part is added after); weight, bias
    /// (full) or adapter (LoRA) gradients accumulated into `grads`. The CPU twin
    /// (`cpu::executor::linear_backward_with_adapters`) fills dinp with zeros and adds: the same values, where a fill
    /// costs little, while a GPU dispatch that only writes zeros costs a pass over memory.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear_backward(
        &self,
        out: &mut Vec<Dispatch>,
        l: usize,
        lin: Linear,
        dout: &'a GpuBuffer,
        inp: &'a GpuBuffer,
        dinp: &'a GpuBuffer,
        scratch: &'a Scratch,
    ) {
        let c = self.w.cfg.n_embd;
        let (d_in, oc) = lin.dims(c);
        let (bt, d_in32, oc32) = (self.acts.rows as u32, d_in as u32, oc as u32);
        if self.w.full {
            let (shard, w_off) = self.w.param_at(TensorId::Block(l, lin.weight()));
            let s = MatmulShape { b_offset: w_off, ldb: oc32, ..MatmulShape::new(bt, oc32, d_in32, false, true) }
                .scaled(1.0, 0.0);
            out.push(self.mm.prepare(self.gpu, s, dout.all(), shard.all(), dinp.all()));
            let (gshard, g_off) = self.grad_at(TensorId::Block(l, lin.weight()));
            let sw =
                MatmulShape { c_offset: g_off, ..MatmulShape::new(d_in32, bt, oc32, true, false) }.scaled(1.0, 1.0);
            out.push(self.mm.prepare(self.gpu, sw, inp.all(), dout.all(), gshard.all()));
            out.push(self.k.bias_grad(self.gpu, bt, oc32, self.grad(TensorId::Block(l, lin.bias())), dout.all()));
        } else {
            let w = &self.w.qweights[l * 4 + lin.index()];
            out.push(self.mmq.prepare_backward(self.gpu, w, bt, dout.all(), dinp.all(), false));
        }
        let entries = self.w.entries_on(l, lin);
        if entries.is_empty() {
            return;
        }
        let ad = self.w.adapters.as_ref().expect("entries imply adapters");
        let abuf = &self.w.adapter_buf[0];
        let dropped = &self.acts.blocks[l].dropped;
        let x: &GpuBuffer = match &dropped[lin.index()] {
            Some((xd, _)) => xd,
            None => inp,
        };
        for (n, i) in entries.iter().enumerate() {
            let e = &ad.entries[*i];
            let (a_off, b_off) = self.w.adapter_offsets[*i];
            let (r, d_out) = (e.rank as u32, e.d_out as u32);
            let col = e.target.out_cols(c).start as u32;
            // du = s · dout_t·B
            let s1 = MatmulShape {
                lda: oc32,
                a_offset: col,
                b_offset: b_off as u32,
                ..MatmulShape::new(bt, d_out, r, false, false)
            }
            .scaled(e.scaling, 0.0);
            out.push(self.mm.prepare(self.gpu, s1, dout.all(), abuf.all(), scratch.d_u.all()));
            // dB += s · dout_tᵀ·u
            let s2 = MatmulShape {
                lda: oc32,
                a_offset: col,
                c_offset: b_off as u32,
                ..MatmulShape::new(d_out, bt, r, true, false)
            }
            .scaled(e.scaling, 1.0);
            out.push(self.mm.prepare(self.gpu, s2, dout.all(), self.acts.lora_u[*i].all(), self.adapter_grads().all()));
            // dA += duᵀ·x
            let s3 =
                MatmulShape { c_offset: a_off as u32, ..MatmulShape::new(r, bt, d_in32, true, false) }.scaled(1.0, 1.0);
            out.push(self.mm.prepare(self.gpu, s3, scratch.d_u.all(), x.all(), self.adapter_grads().all()));
            // d(dropped x) (+)= du·A
            let s4 = MatmulShape { b_offset: a_off as u32, ..MatmulShape::plain(bt, r, d_in32) }
                .scaled(1.0, if n == 0 { 0.0 } else { 1.0 });
            out.push(self.mm.prepare(self.gpu, s4, scratch.d_u.all(), abuf.all(), scratch.d_x_lora.all()));
        }
        let n = bt * d_in32;
        match &dropped[lin.index()] {
            Some((_, mask)) => {
                out.push(self.k.mask_backward(self.gpu, n, dinp.all(), scratch.d_x_lora.all(), mask.all()))
            }
            None => out.push(self.k.accumulate(self.gpu, n, dinp.all(), scratch.d_x_lora.all())),
        }
    }
}
