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
//! The weights live in [`GpuWeights`] (shards no larger than one binding), and gradients and AdamW's moments mirror
//! the trainable shards, so AdamW runs shard by shard with one global gradient norm.

use super::activations::Activations;
use super::backward::Scratch;
use super::forward::{Attention, Recorder};
use super::head::{head_rows, LossBuffers};
use super::kernels::{norm_partials, AdamDispatch, AdamHyper, AdamShard, Kernels};
use super::matmul::{submit, submit_in_pass, Dispatch, Matmul, MatmulDequant};
use super::weights::GpuWeights;
use super::{Category, Cost, Gpu, GpuBuffer};
use crate::lora::{Adapters, LoraConfig};
use crate::model::{Gpt2, Linear, ModelConfig};
use crate::quant::{Format, Storage};
use crate::train::{
    dropout_mask, dropout_seed, lr_at, Method, OptimConfig, StepStats, ADAMW_BETA1, ADAMW_BETA2, ADAMW_EPS,
    FULL_KEEPS_FP32,
};
use crate::{ensure, Error, Result};
use std::cell::Cell;

pub struct GpuTrainer {
    pub gpu: Gpu,
    pub method: Method,
    pub storage: Storage,
    pub optim: OptimConfig,
    cfg: ModelConfig,
    batch: usize,
    seq: usize,
    weights: GpuWeights,
    state: TrainState,
    tokens: GpuBuffer,
    targets: GpuBuffer,
    losses: GpuBuffer,
    acts: Activations,
    _scratch: Scratch,
    forward: Vec<Dispatch>,
    /// Zeroing the gradients, then the fused head and loss with its gradient (`head.rs`).
    head: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    /// Forward-only head, chunk by chunk (rows in the chunk, its dispatches), for [`GpuTrainer::forward`]'s
    /// probabilities.
    probe: Vec<(usize, Vec<Dispatch>)>,
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

/// What training adds to the weights: gradients and AdamW's moments, shard for shard like the trainable buffers, and
/// the gradient-norm reduction's partial sums.
struct TrainState {
    lens: Vec<usize>,
    grads: Vec<GpuBuffer>,
    m: Vec<GpuBuffer>,
    v: Vec<GpuBuffer>,
    norm: GpuBuffer,
}

impl TrainState {
    fn new(gpu: &Gpu, weights: &GpuWeights) -> Result<TrainState> {
        let lens = weights.trainable_lens();
        let zeros =
            |label: &str, n: usize, cat: Category| gpu.buffer(label, 4 * n as u64, cat, wgpu::BufferUsages::empty());
        let each = |label: &str, cat: Category| lens.iter().map(|n| zeros(label, *n, cat)).collect::<Result<Vec<_>>>();
        let partials: usize = lens.iter().map(|n| norm_partials(*n)).sum();
        Ok(TrainState {
            grads: each("gradients", Category::Gradients)?,
            m: each("adam m", Category::Optimizer)?,
            v: each("adam v", Category::Optimizer)?,
            norm: zeros("grad norm", 1 + partials, Category::Scratch)?,
            lens,
        })
    }

    /// Reads shards back (gradients or a moment) in GPU order.
    async fn read(&self, gpu: &Gpu, bufs: &[GpuBuffer]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(bufs.len());
        for (b, n) in bufs.iter().zip(&self.lens) {
            out.push(gpu.read_f32(b, *n).await?);
        }
        Ok(out)
    }

    /// The optimizer: the gradients' global norm, clipping and AdamW over every trainable shard (`cpu::optim`).
    fn record_adamw(&self, gpu: &Gpu, kernels: &Kernels, weights: &GpuWeights, optim: &OptimConfig) -> AdamDispatch {
        let hyper = AdamHyper {
            beta1: ADAMW_BETA1,
            beta2: ADAMW_BETA2,
            eps: ADAMW_EPS,
            weight_decay: optim.weight_decay,
            max_norm: optim.grad_clip,
        };
        let shards: Vec<AdamShard> = (0..self.lens.len())
            .map(|i| AdamShard {
                n: self.lens[i] as u32,
                param: weights.trainable()[i].all(),
                grad: self.grads[i].all(),
                m: self.m[i].all(),
                v: self.v[i].all(),
            })
            .collect();
        kernels.adamw(gpu, hyper, &shards, self.norm.all())
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
        let adapters = match (full, lora) {
            (true, _) => None,
            (false, Some(cfgl)) => Some(Adapters::init(cfgl, cfg.n_layer, cfg.n_embd, seed)?),
            (false, None) => return Err(Error::new("lora and qlora need adapter targets and a rank")),
        };
        let (c, v, bt) = (cfg.n_embd, cfg.vocab_size, batch * seq);
        // Every matmul of the step has batch × seq rows (or weight rows) and at most max(4C, vocab) columns.
        gpu.check_matmul_grid("training step", bt.max(4 * c).max(v), (4 * c).max(v).max(bt))?;
        let weights = GpuWeights::upload(&gpu, model, full, storage, adapters)?;
        let state = TrainState::new(&gpu, &weights)?;
        let logit_rows = head_rows(&gpu, v, bt);
        let acts =
            Activations::new(&gpu, &cfg, weights.adapters.as_ref(), bt, bt * cfg.n_head * seq, logit_rows, true)?;
        let max_rank = weights.adapters.as_ref().map_or(1, |a| a.entries.iter().map(|e| e.rank).max().unwrap_or(1));
        let scratch = Scratch::new(&gpu, &cfg, bt, seq, max_rank)?;
        let io = |label: &str, cat: Category| gpu.buffer(label, 4 * bt as u64, cat, wgpu::BufferUsages::empty());
        let (tokens, targets) = (io("tokens", Category::Activations)?, io("targets", Category::Activations)?);
        let losses = io("losses", Category::Scratch)?;
        let readbacks = std::array::from_fn(|_| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step readback"),
                size: 4 * (bt as u64 + 1),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });

        // The step: forward and loss, backward, clipping and AdamW — recorded once.
        let (kernels, mm, mmq) = (Kernels::new(&gpu), Matmul::new(&gpu), MatmulDequant::new(&gpu));
        let rec = Recorder {
            gpu: &gpu,
            k: &kernels,
            mm: &mm,
            mmq: &mmq,
            w: &weights,
            acts: &acts,
            grads: Some(&state.grads),
        };
        let (b32, t32) = (batch as u32, seq as u32);
        let fwd = rec.forward(&tokens, t32, Attention::Causal { batch: b32, seq: t32 }).dispatches;
        let loss_io = LossBuffers { targets: &targets, losses: &losses };
        let mut head = Vec::new();
        rec.zero_grads(&mut head);
        rec.head_loss(&mut head, &loss_io, Some(scratch.dlnf()));
        let bwd = rec.backward(&scratch, &tokens, b32, t32);
        let probe = (0..bt)
            .step_by(logit_rows)
            .map(|row0| {
                let rows = logit_rows.min(bt - row0);
                let mut d = Vec::new();
                rec.head_logits(&mut d, row0, rows);
                d.push(kernels.cross_entropy(
                    &gpu,
                    rows as u32,
                    v as u32,
                    row0 as u32,
                    None,
                    acts.logits.all(),
                    targets.all(),
                    losses.all(),
                ));
                (rows, d)
            })
            .collect();
        let adam = state.record_adamw(&gpu, &kernels, &weights, &optim);

        Ok(GpuTrainer {
            gpu,
            method,
            storage,
            optim,
            cfg,
            batch,
            seq,
            weights,
            state,
            tokens,
            targets,
            losses,
            acts,
            _scratch: scratch,
            forward: fwd,
            head,
            backward: bwd,
            probe,
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
            for (l, block) in self.acts.blocks.iter().enumerate() {
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
        enc.copy_buffer_to_buffer(self.state.norm.raw(), 0, &self.readbacks[slot], 4 * bt as u64, 4);
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
        let all: Vec<&Dispatch> = self.step_dispatches().collect();
        let readback = self.submit(&all)?;
        let pending = PendingStep { step: self.step, lr, readback };
        self.step += 1;
        Ok(pending)
    }

    /// A training step's dispatches in the order they run: forward, the head with the loss, backward, AdamW.
    fn step_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward.iter().chain(&self.head).chain(&self.backward).chain(self.adam.all())
    }

    /// What each dispatch of a training step costs on paper, in the order they run (`qlora bench --profile`).
    pub fn step_costs(&self) -> Vec<Cost> {
        self.step_dispatches().map(Dispatch::cost).collect()
    }

    /// Natively, each dispatch of a training step run alone, in step order, in seconds: GPU timestamps where the
    /// device has them, else the wall time of submitting it and waiting for the device (which adds the submission's
    /// overhead). It runs one step's work on whatever the buffers hold, so the parameters move as by one step.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_step_dispatches(&self) -> Result<Vec<f64>> {
        let mut times = Vec::new();
        for d in self.step_dispatches() {
            let t0 = std::time::Instant::now();
            let t = match pollster::block_on(self.gpu.time_dispatch(d))? {
                Some(t) => t,
                None => {
                    submit(&self.gpu, &[d]);
                    self.gpu.wait();
                    t0.elapsed().as_secs_f64()
                }
            };
            times.push(t);
        }
        Ok(times)
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
        let all: Vec<&Dispatch> =
            self.forward.iter().chain(&self.head).chain(&self.backward).chain(&self.adam.norm).collect();
        self.run(&all).await
    }

    /// Forward only: the mean loss, and the next-token probabilities `[B·T, V]` (for tests: the head runs chunk by
    /// chunk, each read back before the next overwrites it).
    pub async fn forward(&mut self, inputs: &[u32], targets: &[u32]) -> Result<(f64, Vec<f32>)> {
        self.write_batch(inputs, targets, None)?;
        submit(&self.gpu, &self.forward.iter().collect::<Vec<_>>());
        let v = self.cfg.vocab_size;
        let mut probs = Vec::with_capacity(self.batch * self.seq * v);
        for (rows, dispatches) in &self.probe {
            submit(&self.gpu, &dispatches.iter().collect::<Vec<_>>());
            probs.extend(self.gpu.read_f32(&self.acts.logits, rows * v).await?);
        }
        let bt = self.batch * self.seq;
        let losses = self.gpu.read_f32(&self.losses, bt).await?;
        Ok((losses.iter().map(|x| *x as f64).sum::<f64>() / bt as f64, probs))
    }

    /// The gradients of the trainable parameters in the CPU trainer's order (model layout, or adapter layout).
    pub async fn gradients(&self) -> Result<Vec<f32>> {
        let shards = self.state.read(&self.gpu, &self.state.grads).await?;
        Ok(self.weights.unpad(&shards))
    }

    /// The trainable parameters in the CPU trainer's order.
    pub async fn trainable_params(&self) -> Result<Vec<f32>> {
        let shards = self.state.read(&self.gpu, self.weights.trainable()).await?;
        Ok(self.weights.unpad(&shards))
    }

    /// Replaces the trainable parameters (CPU order), e.g. to start both executors from the same adapter values.
    pub fn set_trainable_params(&self, values: &[f32]) -> Result<()> {
        let shards = self.weights.pad(values)?;
        Self::write_shards(&self.gpu, self.weights.trainable(), &shards);
        Ok(())
    }

    fn write_shards(gpu: &Gpu, bufs: &[GpuBuffer], shards: &[Vec<f32>]) {
        for (b, values) in bufs.iter().zip(shards) {
            gpu.queue.write_buffer(b.raw(), 0, bytemuck::cast_slice(values));
        }
    }

    /// Bytes allocated on the GPU per memory category (scratch on its own line).
    pub fn measured_memory(&self) -> Vec<(Category, u64)> {
        self.gpu.ledger.snapshot()
    }

    pub fn adapters(&self) -> Option<&Adapters> {
        self.weights.adapters.as_ref()
    }

    /// Rows per chunk of the fused head at this trainer's batch (`head.rs`): tests check they run more than one.
    pub fn head_chunk_rows(&self) -> usize {
        super::head::head_rows(&self.gpu, self.cfg.vocab_size, self.batch * self.seq)
    }

    /// Steps taken so far.
    pub fn step_index(&self) -> usize {
        self.step
    }

    /// AdamW's moments in the CPU trainer's order (for snapshots; the step count is [`GpuTrainer::step_index`]).
    pub async fn optimizer_state(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let m = self.state.read(&self.gpu, &self.state.m).await?;
        let v = self.state.read(&self.gpu, &self.state.v).await?;
        Ok((self.weights.unpad(&m), self.weights.unpad(&v)))
    }

    /// Puts back a snapshot: trainable parameters, AdamW moments and the step counter (CPU order).
    pub fn restore(&mut self, trainable: &[f32], m: &[f32], v: &[f32], step: usize) -> Result<()> {
        self.set_trainable_params(trainable)?;
        let (m, v) = (self.weights.pad(m)?, self.weights.pad(v)?);
        Self::write_shards(&self.gpu, &self.state.m, &m);
        Self::write_shards(&self.gpu, &self.state.v, &v);
        self.step = step;
        Ok(())
    }
}
