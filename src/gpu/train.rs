//! A training run on the GPU: the same step as `cpu::train::Trainer` — forward, backward, global-norm clipping and
//! AdamW — recorded once as a list of prepared dispatches and submitted as one command buffer per step. The only
//! per-step writes are the batch (and dropout masks), the learning rate, and one readback of the per-row losses and
//! the gradient norm into one of two staging buffers made at construction.
//!
//! A step can be submitted before the previous one's loss has come back ([`GpuTrainer::submit_step`], then
//! [`GpuTrainer::finish_step`]): WebGPU runs submissions in order and applies `write_buffer` between them, so the next
//! batch may be written while the GPU still works on the last one. Keeping one step in flight hides the readback's
//! round trip and the encoding of the next step, which matter when a step itself takes a few milliseconds.
//!
//! The weights live in [`GpuWeights`] (flat, padded buffers), so AdamW runs over one trainable buffer.

use super::kernels::{AdamDispatch, AdamHyper, Kernels};
use super::matmul::{submit_in_pass, Dispatch, Matmul, MatmulDequant, MatmulShape};
use super::weights::GpuWeights;
use super::{Category, Gpu, GpuBuffer, View};
use crate::lora::{Adapters, LoraConfig};
use crate::model::{BlockTensor, Gpt2, Linear, ModelConfig, TensorId};
use crate::quant::{Format, Storage};
use crate::train::{
    dropout_mask, dropout_seed, lr_at, Method, OptimConfig, StepStats, ADAMW_BETA1, ADAMW_BETA2, ADAMW_EPS,
    FULL_KEEPS_FP32,
};
use crate::{ensure, Error, Result};
use std::cell::Cell;

/// Activations of one block (same set as the CPU executor keeps).
struct BlockBufs {
    ln1: GpuBuffer,
    ln1_stats: GpuBuffer,
    qkv: GpuBuffer,
    att: GpuBuffer,
    atty: GpuBuffer,
    attproj: GpuBuffer,
    res2: GpuBuffer,
    ln2: GpuBuffer,
    ln2_stats: GpuBuffer,
    fch: GpuBuffer,
    fch_gelu: GpuBuffer,
    fcproj: GpuBuffer,
    res3: GpuBuffer,
    /// Dropped-out adapter input and its mask, per linear layer (only with dropout).
    dropped: [Option<(GpuBuffer, GpuBuffer)>; 4],
}

/// Backward-pass scratch, mirroring the CPU executor's.
struct Scratch {
    d_res: GpuBuffer,
    d_tmp: GpuBuffer,
    d_wide: GpuBuffer,
    d_wide2: GpuBuffer,
    d_u: GpuBuffer,
    d_x_lora: GpuBuffer,
    dpre: GpuBuffer,
}

pub struct GpuTrainer {
    pub gpu: Gpu,
    pub method: Method,
    pub storage: Storage,
    pub optim: OptimConfig,
    cfg: ModelConfig,
    batch: usize,
    seq: usize,
    weights: GpuWeights,
    trainable_len: usize,
    grads: GpuBuffer,
    adam_m: GpuBuffer,
    adam_v: GpuBuffer,
    norm_buf: GpuBuffer,
    tokens: GpuBuffer,
    targets: GpuBuffer,
    losses: GpuBuffer,
    probs: GpuBuffer,
    _encoded: GpuBuffer,
    blocks: Vec<BlockBufs>,
    _lnf: GpuBuffer,
    _lnf_stats: GpuBuffer,
    _lora_u: Vec<GpuBuffer>,
    _scratch: Scratch,
    forward: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    adam: AdamDispatch,
    /// Staging buffers for the loss and norm readback, one per step in flight; `busy` marks those awaiting theirs.
    readbacks: [wgpu::Buffer; READBACK_SLOTS],
    busy: [Cell<bool>; READBACK_SLOTS],
    /// Steps submitted so far (a step counts from its submission).
    step: usize,
    seed: u64,
}

/// Steps that can be in flight at once: the one being read back and the next.
const READBACK_SLOTS: usize = 2;

/// A training step submitted to the GPU whose loss and gradient norm have not been read back yet. Hand it to
/// [`GpuTrainer::finish_step`]; dropping it leaves its staging buffer unusable.
#[must_use = "a submitted step holds a staging buffer until finish_step reads it"]
pub struct PendingStep {
    step: usize,
    lr: f32,
    readback: Readback,
}

/// Where a submission's loss and norm land, and the submission to wait for.
struct Readback {
    slot: usize,
    submission: wgpu::SubmissionIndex,
}

/// Builds the per-step dispatch lists from borrowed buffers.
pub(super) struct Builder<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) k: &'a Kernels,
    pub(super) mm: &'a Matmul,
    pub(super) mmq: &'a MatmulDequant,
    pub(super) w: &'a GpuWeights,
    pub(super) bt: u32,
    /// Gradients (same padded layout as the trainable buffer); `None` when only the forward pass is built.
    pub(super) grads: Option<&'a GpuBuffer>,
    pub(super) lora_u: &'a [GpuBuffer],
}

impl<'a> Builder<'a> {
    fn grads(&self) -> &'a GpuBuffer {
        self.grads.expect("backward passes are built with gradients")
    }

    fn grad(&self, id: TensorId) -> View<'a> {
        let len: usize = self.w.layout.shape(id).iter().product();
        self.grads().view(self.w.param_offsets[&id], len)
    }

    /// out = inp·W + b, plus every adapter on the layer.
    pub(super) fn linear_forward(
        &self,
        out: &mut Vec<Dispatch>,
        l: usize,
        lin: Linear,
        inp: &'a GpuBuffer,
        y: &'a GpuBuffer,
        dropped: &'a [Option<(GpuBuffer, GpuBuffer)>; 4],
    ) {
        let c = self.w.cfg.n_embd;
        let (d_in, oc) = lin.dims(c);
        let (bt, d_in32, oc32) = (self.bt, d_in as u32, oc as u32);
        let bias = self.w.param(TensorId::Block(l, lin.bias()));
        if self.w.full {
            let w_off = self.w.param_offsets[&TensorId::Block(l, lin.weight())] as u32;
            out.push(self.k.broadcast_rows(self.gpu, bt, oc32, y.all(), bias));
            let s = MatmulShape { b_offset: w_off, ..MatmulShape::plain(bt, d_in32, oc32) }.scaled(1.0, 1.0);
            out.push(self.mm.prepare(self.gpu, s, inp.all(), self.w.params.all(), y.all()));
        } else {
            let w = &self.w.qweights[l * 4 + lin.index()];
            out.push(self.mmq.prepare_forward(self.gpu, w, bt, inp.all(), Some(bias), y.all()));
        }
        let entries = self.w.entries_on(l, lin);
        if entries.is_empty() {
            return;
        }
        let ad = self.w.adapters.as_ref().expect("entries imply adapters");
        let abuf = self.w.adapter_buf.as_ref().expect("adapters on the GPU");
        let x: &GpuBuffer = match &dropped[lin.index()] {
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
            // u = x·Aᵀ
            let s1 = MatmulShape { b_offset: a_off as u32, ..MatmulShape::new(bt, d_in32, r, false, true) };
            out.push(self.mm.prepare(self.gpu, s1, x.all(), abuf.all(), self.lora_u[i].all()));
            // y[:, cols] += s · u·Bᵀ
            let cols = e.target.out_cols(c);
            let s2 = MatmulShape {
                b_offset: b_off as u32,
                ldc: oc32,
                c_offset: cols.start as u32,
                ..MatmulShape::new(bt, r, e.d_out as u32, false, true)
            }
            .scaled(e.scaling, 1.0);
            out.push(self.mm.prepare(self.gpu, s2, self.lora_u[i].all(), abuf.all(), y.all()));
        }
    }

    /// dinp += ∂/∂inp; weight, bias (full) or adapter (LoRA) gradients accumulated into `grads`.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        out: &mut Vec<Dispatch>,
        l: usize,
        lin: Linear,
        dout: &'a GpuBuffer,
        inp: &'a GpuBuffer,
        dinp: &'a GpuBuffer,
        dropped: &'a [Option<(GpuBuffer, GpuBuffer)>; 4],
        scratch: &'a Scratch,
    ) {
        let c = self.w.cfg.n_embd;
        let (d_in, oc) = lin.dims(c);
        let (bt, d_in32, oc32) = (self.bt, d_in as u32, oc as u32);
        if self.w.full {
            let w_off = self.w.param_offsets[&TensorId::Block(l, lin.weight())] as u32;
            let s = MatmulShape { b_offset: w_off, ldb: oc32, ..MatmulShape::new(bt, oc32, d_in32, false, true) }
                .scaled(1.0, 1.0);
            out.push(self.mm.prepare(self.gpu, s, dout.all(), self.w.params.all(), dinp.all()));
            let sw =
                MatmulShape { c_offset: w_off, ..MatmulShape::new(d_in32, bt, oc32, true, false) }.scaled(1.0, 1.0);
            out.push(self.mm.prepare(self.gpu, sw, inp.all(), dout.all(), self.grads().all()));
            out.push(self.k.bias_grad(self.gpu, bt, oc32, self.grad(TensorId::Block(l, lin.bias())), dout.all()));
        } else {
            let w = &self.w.qweights[l * 4 + lin.index()];
            out.push(self.mmq.prepare_backward(self.gpu, w, bt, dout.all(), dinp.all(), true));
        }
        let entries = self.w.entries_on(l, lin);
        if entries.is_empty() {
            return;
        }
        let ad = self.w.adapters.as_ref().expect("entries imply adapters");
        let abuf = self.w.adapter_buf.as_ref().expect("adapters on the GPU");
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
            out.push(self.mm.prepare(self.gpu, s2, dout.all(), self.lora_u[*i].all(), self.grads().all()));
            // dA += duᵀ·x
            let s3 =
                MatmulShape { c_offset: a_off as u32, ..MatmulShape::new(r, bt, d_in32, true, false) }.scaled(1.0, 1.0);
            out.push(self.mm.prepare(self.gpu, s3, scratch.d_u.all(), x.all(), self.grads().all()));
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

impl GpuTrainer {
    /// Uploads the model (quantizing the base for LoRA/QLoRA exactly as the CPU trainer does), initialises adapters
    /// with the same seed as the CPU trainer, and records the step for a fixed batch shape.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: Gpu,
        model: &Gpt2,
        method: Method,
        storage: Storage,
        lora: Option<LoraConfig>,
        optim: OptimConfig,
        seed: u64,
        batch: usize,
        seq: usize,
    ) -> Result<Self> {
        optim.validate()?;
        let cfg = model.config.clone();
        ensure!(seq >= 1 && seq <= cfg.n_positions, "seq must be between 1 and n_positions {}", cfg.n_positions);
        ensure!(batch >= 1, "batch must be at least 1");
        let full = method == Method::Full;
        if full {
            ensure!(storage.format == Format::Fp32, "{FULL_KEEPS_FP32}");
        }
        let (c, nh, v) = (cfg.n_embd, cfg.n_head, cfg.vocab_size);
        let bt = batch * seq;

        let adapters = match (full, lora) {
            (true, _) => None,
            (false, Some(cfgl)) => Some(Adapters::init(cfgl, cfg.n_layer, c, seed)?),
            (false, None) => return Err(Error::new("lora and qlora need adapter targets and a rank")),
        };
        // Every matmul of the step has batch × seq rows (or weight rows) and at most max(4C, vocab) columns.
        gpu.check_matmul_grid("training step", bt.max(4 * c).max(v), (4 * c).max(v).max(bt))?;
        let weights = GpuWeights::upload(&gpu, model, full, storage, adapters)?;
        let adapters = weights.adapters.as_ref();
        let trainable_len = weights.trainable_len();
        let zeros =
            |label: &str, n: usize, cat: Category| gpu.buffer(label, 4 * n as u64, cat, wgpu::BufferUsages::empty());
        let grads = zeros("gradients", trainable_len, Category::Gradients)?;
        let m = zeros("adam m", trainable_len, Category::Optimizer)?;
        let vbuf = zeros("adam v", trainable_len, Category::Optimizer)?;
        let norm_buf = zeros("grad norm", 1 + trainable_len.div_ceil(256), Category::Scratch)?;

        // Activations.
        let act = |label: &str, n: usize| zeros(label, n, Category::Activations);
        let dropout = adapters.as_ref().is_some_and(|a| a.config.dropout > 0.0);
        let mut blocks = Vec::new();
        for l in 0..cfg.n_layer {
            let mut dropped: [Option<(GpuBuffer, GpuBuffer)>; 4] = Default::default();
            for (li, slot) in dropped.iter_mut().enumerate() {
                let lin = Linear::ALL[li];
                if dropout && adapters.as_ref().is_some_and(|a| a.on(l, lin).next().is_some()) {
                    let n = bt * lin.dims(c).0;
                    *slot = Some((act("dropped x", n)?, act("dropout mask", n)?));
                }
            }
            blocks.push(BlockBufs {
                ln1: act("ln1", bt * c)?,
                ln1_stats: act("ln1 stats", 2 * bt)?,
                qkv: act("qkv", bt * 3 * c)?,
                att: act("att", bt * nh * seq)?,
                atty: act("atty", bt * c)?,
                attproj: act("attproj", bt * c)?,
                res2: act("res2", bt * c)?,
                ln2: act("ln2", bt * c)?,
                ln2_stats: act("ln2 stats", 2 * bt)?,
                fch: act("fch", bt * 4 * c)?,
                fch_gelu: act("fch gelu", bt * 4 * c)?,
                fcproj: act("fcproj", bt * c)?,
                res3: act("res3", bt * c)?,
                dropped,
            });
        }
        let encoded = act("encoded", bt * c)?;
        let lnf = act("lnf", bt * c)?;
        let lnf_stats = act("lnf stats", 2 * bt)?;
        let probs = act("probs", bt * v)?;
        let lora_u: Vec<GpuBuffer> = match &adapters {
            Some(ad) => ad.entries.iter().map(|e| act("lora u", bt * e.rank)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let max_rank = adapters.as_ref().map_or(1, |a| a.entries.iter().map(|e| e.rank).max().unwrap_or(1));
        let sc = |label: &str, n: usize| zeros(label, n, Category::Scratch);
        let scratch = Scratch {
            d_res: sc("d_res", bt * c)?,
            d_tmp: sc("d_tmp", bt * c)?,
            d_wide: sc("d_wide", bt * 4 * c)?,
            d_wide2: sc("d_wide2", bt * 4 * c)?,
            d_u: sc("d_u", bt * max_rank)?,
            d_x_lora: sc("d_x_lora", bt * 4 * c)?,
            dpre: sc("dpre", bt * nh * seq)?,
        };
        let tokens = gpu.buffer("tokens", 4 * bt as u64, Category::Activations, wgpu::BufferUsages::empty())?;
        let targets = gpu.buffer("targets", 4 * bt as u64, Category::Activations, wgpu::BufferUsages::empty())?;
        let losses = sc("losses", bt)?;
        let readbacks = std::array::from_fn(|_| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step readback"),
                size: 4 * (bt as u64 + 1),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });

        // Record the step.
        let kernels = Kernels::new(&gpu);
        let mm = Matmul::new(&gpu);
        let mmq = MatmulDequant::new(&gpu);
        let b = Builder {
            gpu: &gpu,
            k: &kernels,
            mm: &mm,
            mmq: &mmq,
            w: &weights,
            bt: bt as u32,
            grads: Some(&grads),
            lora_u: &lora_u,
        };
        let (bt32, c32, t32, nh32, v32, b32) = (bt as u32, c as u32, seq as u32, nh as u32, v as u32, batch as u32);
        let eps = cfg.layer_norm_epsilon as f32;
        let mut fwd = Vec::new();
        fwd.push(kernels.embedding_forward(
            &gpu,
            bt32,
            t32,
            c32,
            encoded.all(),
            tokens.all(),
            b.w.param(TensorId::Wte),
            b.w.param(TensorId::Wpe),
        ));
        for l in 0..cfg.n_layer {
            let res_in = if l == 0 { &encoded } else { &blocks[l - 1].res3 };
            let a = &blocks[l];
            let bp = |t: BlockTensor| b.w.param(TensorId::Block(l, t));
            fwd.push(kernels.layernorm_forward(
                &gpu,
                bt32,
                c32,
                eps,
                a.ln1.all(),
                a.ln1_stats.all(),
                res_in.all(),
                bp(BlockTensor::Ln1W),
                bp(BlockTensor::Ln1B),
            ));
            b.linear_forward(&mut fwd, l, Linear::Attn, &a.ln1, &a.qkv, &a.dropped);
            fwd.push(kernels.attention_forward(&gpu, b32, t32, c32, nh32, a.atty.all(), a.att.all(), a.qkv.all()));
            b.linear_forward(&mut fwd, l, Linear::AttnProj, &a.atty, &a.attproj, &a.dropped);
            fwd.push(kernels.residual_forward(&gpu, bt32 * c32, a.res2.all(), res_in.all(), a.attproj.all()));
            fwd.push(kernels.layernorm_forward(
                &gpu,
                bt32,
                c32,
                eps,
                a.ln2.all(),
                a.ln2_stats.all(),
                a.res2.all(),
                bp(BlockTensor::Ln2W),
                bp(BlockTensor::Ln2B),
            ));
            b.linear_forward(&mut fwd, l, Linear::Fc, &a.ln2, &a.fch, &a.dropped);
            fwd.push(kernels.gelu_forward(&gpu, bt32 * 4 * c32, a.fch.all(), a.fch_gelu.all()));
            b.linear_forward(&mut fwd, l, Linear::MlpProj, &a.fch_gelu, &a.fcproj, &a.dropped);
            fwd.push(kernels.residual_forward(&gpu, bt32 * c32, a.res3.all(), a.res2.all(), a.fcproj.all()));
        }
        let last = &blocks[cfg.n_layer - 1].res3;
        fwd.push(kernels.layernorm_forward(
            &gpu,
            bt32,
            c32,
            eps,
            lnf.all(),
            lnf_stats.all(),
            last.all(),
            b.w.param(TensorId::LnFW),
            b.w.param(TensorId::LnFB),
        ));
        let wte_off = weights.param_offsets[&TensorId::Wte] as u32;
        let head = MatmulShape { b_offset: wte_off, ..MatmulShape::new(bt32, c32, v32, false, true) };
        fwd.push(mm.prepare(&gpu, head, lnf.all(), weights.params.all(), probs.all()));
        fwd.push(kernels.cross_entropy_forward(&gpu, bt32, v32, probs.all(), targets.all(), losses.all()));

        let s = &scratch;
        let mut bwd = Vec::new();
        bwd.push(kernels.zero(&gpu, trainable_len as u32, grads.all()));
        bwd.push(kernels.cross_entropy_backward(&gpu, bt32, v32, probs.all(), targets.all(), losses.all()));
        let dlnf = MatmulShape { b_offset: wte_off, ..MatmulShape::plain(bt32, v32, c32) };
        bwd.push(mm.prepare(&gpu, dlnf, probs.all(), weights.params.all(), s.d_tmp.all()));
        if full {
            let dwte =
                MatmulShape { c_offset: wte_off, ..MatmulShape::new(v32, bt32, c32, true, false) }.scaled(1.0, 1.0);
            bwd.push(mm.prepare(&gpu, dwte, probs.all(), lnf.all(), grads.all()));
        }
        bwd.push(kernels.zero(&gpu, bt32 * c32, s.d_res.all()));
        bwd.push(kernels.layernorm_backward(
            &gpu,
            bt32,
            c32,
            s.d_res.all(),
            s.d_tmp.all(),
            last.all(),
            b.w.param(TensorId::LnFW),
            lnf_stats.all(),
        ));
        if full {
            bwd.push(kernels.layernorm_param_grads(
                &gpu,
                bt32,
                c32,
                b.grad(TensorId::LnFW),
                b.grad(TensorId::LnFB),
                s.d_tmp.all(),
                last.all(),
                lnf_stats.all(),
            ));
        }
        for l in (0..cfg.n_layer).rev() {
            let res_in = if l == 0 { &encoded } else { &blocks[l - 1].res3 };
            let a = &blocks[l];
            let bp = |t: BlockTensor| b.w.param(TensorId::Block(l, t));
            let bg = |t: BlockTensor| b.grad(TensorId::Block(l, t));
            bwd.push(kernels.zero(&gpu, bt32 * 4 * c32, s.d_wide.all()));
            b.linear_backward(&mut bwd, l, Linear::MlpProj, &s.d_res, &a.fch_gelu, &s.d_wide, &a.dropped, s);
            bwd.push(kernels.zero(&gpu, bt32 * 4 * c32, s.d_wide2.all()));
            bwd.push(kernels.gelu_backward(&gpu, bt32 * 4 * c32, s.d_wide2.all(), a.fch.all(), s.d_wide.all()));
            bwd.push(kernels.zero(&gpu, bt32 * c32, s.d_tmp.all()));
            b.linear_backward(&mut bwd, l, Linear::Fc, &s.d_wide2, &a.ln2, &s.d_tmp, &a.dropped, s);
            bwd.push(kernels.layernorm_backward(
                &gpu,
                bt32,
                c32,
                s.d_res.all(),
                s.d_tmp.all(),
                a.res2.all(),
                bp(BlockTensor::Ln2W),
                a.ln2_stats.all(),
            ));
            if full {
                bwd.push(kernels.layernorm_param_grads(
                    &gpu,
                    bt32,
                    c32,
                    bg(BlockTensor::Ln2W),
                    bg(BlockTensor::Ln2B),
                    s.d_tmp.all(),
                    a.res2.all(),
                    a.ln2_stats.all(),
                ));
            }
            bwd.push(kernels.zero(&gpu, bt32 * c32, s.d_tmp.all()));
            b.linear_backward(&mut bwd, l, Linear::AttnProj, &s.d_res, &a.atty, &s.d_tmp, &a.dropped, s);
            bwd.push(kernels.zero(&gpu, bt32 * 3 * c32, s.d_wide.all()));
            let [q_pass, k_pass] = kernels.attention_backward(
                &gpu,
                b32,
                t32,
                c32,
                nh32,
                s.d_wide.all(),
                s.d_tmp.all(),
                a.qkv.all(),
                a.att.all(),
                s.dpre.all(),
            );
            bwd.push(q_pass);
            bwd.push(k_pass);
            bwd.push(kernels.zero(&gpu, bt32 * c32, s.d_wide2.all()));
            b.linear_backward(&mut bwd, l, Linear::Attn, &s.d_wide, &a.ln1, &s.d_wide2, &a.dropped, s);
            bwd.push(kernels.layernorm_backward(
                &gpu,
                bt32,
                c32,
                s.d_res.all(),
                s.d_wide2.all(),
                res_in.all(),
                bp(BlockTensor::Ln1W),
                a.ln1_stats.all(),
            ));
            if full {
                bwd.push(kernels.layernorm_param_grads(
                    &gpu,
                    bt32,
                    c32,
                    bg(BlockTensor::Ln1W),
                    bg(BlockTensor::Ln1B),
                    s.d_wide2.all(),
                    res_in.all(),
                    a.ln1_stats.all(),
                ));
            }
        }
        if full {
            bwd.push(kernels.embedding_backward(
                &gpu,
                bt32,
                t32,
                c32,
                b.grad(TensorId::Wte),
                b.grad(TensorId::Wpe),
                s.d_res.all(),
                tokens.all(),
            ));
        }
        let trainable_buf = weights.trainable();
        let hyper = AdamHyper {
            beta1: ADAMW_BETA1,
            beta2: ADAMW_BETA2,
            eps: ADAMW_EPS,
            weight_decay: optim.weight_decay,
            max_norm: optim.grad_clip,
        };
        let adam = kernels.adamw(
            &gpu,
            hyper,
            trainable_len as u32,
            trainable_buf.all(),
            grads.all(),
            m.all(),
            vbuf.all(),
            norm_buf.all(),
        );

        Ok(GpuTrainer {
            gpu,
            method,
            storage,
            optim,
            cfg,
            batch,
            seq,
            weights,
            trainable_len,
            grads,
            adam_m: m,
            adam_v: vbuf,
            norm_buf,
            tokens,
            targets,
            losses,
            probs,
            _encoded: encoded,
            blocks,
            _lnf: lnf,
            _lnf_stats: lnf_stats,
            _lora_u: lora_u,
            _scratch: scratch,
            forward: fwd,
            backward: bwd,
            adam,
            readbacks,
            busy: Default::default(),
            step: 0,
            seed,
        })
    }

    fn write_batch(&self, inputs: &[u32], targets: &[u32], dropout_seed: Option<u64>) -> Result<()> {
        let bt = self.batch * self.seq;
        ensure!(inputs.len() == bt && targets.len() == bt, "batch must be {} × {} tokens", self.batch, self.seq);
        ensure!(
            inputs.iter().chain(targets).all(|t| (*t as usize) < self.cfg.vocab_size),
            "token id outside the vocabulary"
        );
        self.gpu.queue.write_buffer(self.tokens.raw(), 0, bytemuck::cast_slice(inputs));
        self.gpu.queue.write_buffer(self.targets.raw(), 0, bytemuck::cast_slice(targets));
        if let Some(ad) = &self.weights.adapters {
            let p = ad.config.dropout;
            let keep = 1.0 / (1.0 - p);
            for (l, block) in self.blocks.iter().enumerate() {
                for (li, d) in block.dropped.iter().enumerate() {
                    if let Some((_, mask)) = d {
                        let n = bt * Linear::ALL[li].dims(self.cfg.n_embd).0;
                        let values: Vec<f32> = match dropout_seed {
                            Some(seed) => {
                                dropout_mask(seed, l, li, p).take(n).map(|k| if k { keep } else { 0.0 }).collect()
                            }
                            None => vec![1.0; n],
                        };
                        self.gpu.queue.write_buffer(mask.raw(), 0, bytemuck::cast_slice(&values));
                    }
                }
            }
        }
        Ok(())
    }

    /// Submits `dispatches` in one compute pass and copies the per-row losses and the squared gradient norm into a
    /// free staging buffer.
    fn submit(&self, dispatches: &[&Dispatch]) -> Result<Readback> {
        let slot = self.free_slot()?;
        let bt = self.batch * self.seq;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        submit_in_pass(&mut enc, dispatches);
        enc.copy_buffer_to_buffer(self.losses.raw(), 0, &self.readbacks[slot], 0, 4 * bt as u64);
        enc.copy_buffer_to_buffer(self.norm_buf.raw(), 0, &self.readbacks[slot], 4 * bt as u64, 4);
        let submission = self.gpu.queue.submit([enc.finish()]);
        self.busy[slot].set(true);
        Ok(Readback { slot, submission })
    }

    fn free_slot(&self) -> Result<usize> {
        (0..READBACK_SLOTS)
            .find(|&s| !self.busy[s].get())
            .ok_or_else(|| Error::new(format!("{READBACK_SLOTS} steps are already in flight; finish one first")))
    }

    /// Awaits a submission's mean loss and gradient norm.
    async fn read(&self, r: Readback) -> Result<(f64, f32)> {
        let bt = self.batch * self.seq;
        let values = self.gpu.map_read_after(&self.readbacks[r.slot], Some(r.submission)).await;
        // Whatever the outcome the buffer is unmapped (or was never mapped): the slot is free again.
        self.busy[r.slot].set(false);
        let values = values?;
        let loss = values[..bt].iter().map(|x| *x as f64).sum::<f64>() / bt as f64;
        // A NaN norm must stay NaN (f32::max would return 0.0 and hide a diverged step).
        let sq = values[bt];
        Ok((loss, if sq.is_nan() { f32::NAN } else { sq.max(0.0).sqrt() }))
    }

    async fn run(&self, dispatches: &[&Dispatch]) -> Result<(f64, f32)> {
        let r = self.submit(dispatches)?;
        self.read(r).await
    }

    /// One optimizer step: forward, backward, clipping and AdamW in one submission, read back before returning.
    pub async fn step(&mut self, inputs: &[u32], targets: &[u32]) -> Result<StepStats> {
        let pending = self.submit_step(inputs, targets)?;
        self.finish_step(pending).await
    }

    /// Submits one optimizer step without waiting for it; at most two may be in flight. Submitted steps run in
    /// order, each on the parameters the previous one left.
    pub fn submit_step(&mut self, inputs: &[u32], targets: &[u32]) -> Result<PendingStep> {
        self.free_slot()?; // refused before anything is written
        self.write_batch(inputs, targets, Some(dropout_seed(self.seed, self.step)))?;
        let o = &self.optim;
        let lr = lr_at(self.step, o.steps, o.warmup, o.lr, o.min_lr);
        self.adam.set_step(&self.gpu, self.step as u32 + 1, lr);
        let all: Vec<&Dispatch> = self.forward.iter().chain(&self.backward).chain(&self.adam.dispatches).collect();
        let readback = self.submit(&all)?;
        let pending = PendingStep { step: self.step, lr, readback };
        self.step += 1;
        Ok(pending)
    }

    /// Awaits a submitted step's loss and gradient norm.
    pub async fn finish_step(&mut self, pending: PendingStep) -> Result<StepStats> {
        let PendingStep { step, lr, readback } = pending;
        let (loss, grad_norm) = self.read(readback).await?;
        Ok(StepStats { step, loss, lr, grad_norm })
    }

    /// Loss and gradients for one batch without updating (dropout as in a training step when a seed is given).
    pub async fn compute_gradients(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        dropout_seed: Option<u64>,
    ) -> Result<(f64, f32)> {
        self.write_batch(inputs, targets, dropout_seed)?;
        let all: Vec<&Dispatch> = self.forward.iter().chain(&self.backward).chain(&self.adam.dispatches[..2]).collect();
        self.run(&all).await
    }

    /// Forward only: the mean loss, and the next-token probabilities `[B·T, V]`.
    pub async fn forward(&mut self, inputs: &[u32], targets: &[u32]) -> Result<(f64, Vec<f32>)> {
        self.write_batch(inputs, targets, None)?;
        let all: Vec<&Dispatch> = self.forward.iter().collect();
        let (loss, _) = self.run(&all).await?;
        let probs = self.gpu.read_f32(&self.probs, self.batch * self.seq * self.cfg.vocab_size).await?;
        Ok((loss, probs))
    }

    /// The gradients of the trainable parameters in the CPU trainer's order (model layout, or adapter layout).
    pub async fn gradients(&self) -> Result<Vec<f32>> {
        let padded = self.gpu.read_f32(&self.grads, self.trainable_len).await?;
        Ok(self.weights.unpad(&padded))
    }

    /// The trainable parameters in the CPU trainer's order.
    pub async fn trainable_params(&self) -> Result<Vec<f32>> {
        let padded = self.gpu.read_f32(self.weights.trainable(), self.trainable_len).await?;
        Ok(self.weights.unpad(&padded))
    }

    /// Replaces the trainable parameters (CPU order), e.g. to start both executors from the same adapter values.
    pub fn set_trainable_params(&self, values: &[f32]) -> Result<()> {
        let padded = self.weights.pad(values)?;
        self.gpu.queue.write_buffer(self.weights.trainable().raw(), 0, bytemuck::cast_slice(&padded));
        Ok(())
    }

    /// Bytes allocated on the GPU per memory category (scratch on its own line).
    pub fn measured_memory(&self) -> Vec<(Category, u64)> {
        self.gpu.ledger.snapshot()
    }

    pub fn adapters(&self) -> Option<&Adapters> {
        self.weights.adapters.as_ref()
    }

    /// Steps taken so far.
    pub fn step_index(&self) -> usize {
        self.step
    }

    /// AdamW's moments in the CPU trainer's order (for snapshots; the step count is [`GpuTrainer::step_index`]).
    pub async fn optimizer_state(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let m = self.gpu.read_f32(&self.adam_m, self.trainable_len).await?;
        let v = self.gpu.read_f32(&self.adam_v, self.trainable_len).await?;
        Ok((self.weights.unpad(&m), self.weights.unpad(&v)))
    }

    /// Puts back a snapshot: trainable parameters, AdamW moments and the step counter (CPU order).
    pub fn restore(&mut self, trainable: &[f32], m: &[f32], v: &[f32], step: usize) -> Result<()> {
        self.set_trainable_params(trainable)?;
        let (m, v) = (self.weights.pad(m)?, self.weights.pad(v)?);
        self.gpu.queue.write_buffer(self.adam_m.raw(), 0, bytemuck::cast_slice(&m));
        self.gpu.queue.write_buffer(self.adam_v.raw(), 0, bytemuck::cast_slice(&v));
        self.step = step;
        Ok(())
    }
}
