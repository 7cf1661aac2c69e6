//! A training run on the CPU executor: full fine-tuning, LoRA, or QLoRA (LoRA over a base whose four linear weights
//! per block are stored in a quantized format and used dequantized).

use super::executor::{forward, forward_backward, Activations, GradTarget, Weights};
use super::optim::{clip_grad_norm, AdamW};
use crate::lora::{Adapters, LoraConfig};
use crate::model::{Gpt2, Linear, TensorId};
use crate::quant::{Format, QuantError, QuantizedTensor, Storage};
use crate::train::{dropout_seed, lr_at, Method, OptimConfig, StepStats, FULL_KEEPS_FP32};
use crate::{ensure, Error, Result};

/// One quantized base tensor and how far it moved.
#[derive(Clone, Debug)]
pub struct QuantReport {
    pub name: String,
    pub len: usize,
    pub value_bytes: u64,
    pub constant_bytes: u64,
    pub error: QuantError,
}

/// Quantizes the four linear weights of every block in place (each replaced by its dequantized values, which is what
/// the matmuls then read), rounds the tied embedding to 16 bits below an fp32 base ([`Storage::embedding`]), and
/// reports bytes and error per quantized tensor. The weight is taken as a Linear `[out, in]` weight,
/// i.e. the transpose of GPT-2's Conv1D `[in, out]` storage, exactly as bitsandbytes sees it.
pub fn quantize_base(model: &mut Gpt2, storage: Storage) -> Vec<QuantReport> {
    let c = model.config.n_embd;
    let mut reports = Vec::new();
    for l in 0..model.config.n_layer {
        for lin in Linear::ALL {
            let (d_in, d_out) = lin.dims(c);
            let id = TensorId::Block(l, lin.weight());
            let name = model.layout.hf_name(id);
            let w = model.tensor_mut(id);
            let mut linear = vec![0.0f32; w.len()];
            for i in 0..d_in {
                for o in 0..d_out {
                    linear[o * d_in + i] = w[i * d_out + o];
                }
            }
            let q = QuantizedTensor::quantize(&linear, storage);
            let deq = q.dequantize();
            for i in 0..d_in {
                for o in 0..d_out {
                    w[i * d_out + o] = deq[o * d_in + i];
                }
            }
            let (value_bytes, constant_bytes) = q.bytes();
            reports.push(QuantReport { name, len: linear.len(), value_bytes, constant_bytes, error: q.error(&linear) });
        }
    }
    let embedding = storage.embedding();
    if embedding != Storage::FP32 {
        // The tied embedding in 16 bits (`Storage::embedding`): its values rounded as the GPU stores them. Not a
        // quantized tensor, so not among the reports (`qlora quant` sums those into bits per quantized parameter).
        let wte = model.tensor_mut(TensorId::Wte);
        let rounded = QuantizedTensor::quantize(wte, embedding).dequantize();
        wte.copy_from_slice(&rounded);
    }
    reports
}

/// A training run: the model (base weights as the executor reads them), adapters if any, gradients, optimizer.
pub struct Trainer {
    pub method: Method,
    pub storage: Storage,
    pub model: Gpt2,
    pub adapters: Option<Adapters>,
    pub optim: OptimConfig,
    pub quant_reports: Vec<QuantReport>,
    grads: Vec<f32>,
    adam: AdamW,
    acts: Option<Activations>,
    step: usize,
    seed: u64,
}

impl Trainer {
    /// `lora` is required for lora/qlora and ignored for full fine-tuning.
    pub fn new(
        mut model: Gpt2,
        method: Method,
        storage: Storage,
        lora: Option<LoraConfig>,
        optim: OptimConfig,
        seed: u64,
    ) -> Result<Self> {
        optim.validate()?;
        let (adapters, quant_reports) = match method {
            Method::Full => {
                ensure!(
                    storage.format == Format::Fp32,
                    "{FULL_KEEPS_FP32}; --format {} applies to lora and qlora",
                    storage.label()
                );
                (None, Vec::new())
            }
            Method::Lora | Method::Qlora => {
                let lora = lora.ok_or_else(|| Error::new("lora and qlora need adapter targets and a rank"))?;
                let adapters = Adapters::init(lora, model.config.n_layer, model.config.n_embd, seed)?;
                let reports = quantize_base(&mut model, storage);
                (Some(adapters), reports)
            }
        };
        let n = adapters.as_ref().map_or(model.params.len(), |a| a.len());
        Ok(Trainer {
            method,
            storage,
            model,
            adapters,
            grads: vec![0.0; n],
            adam: AdamW::new(n, optim.weight_decay),
            optim,
            quant_reports,
            acts: None,
            step: 0,
            seed,
        })
    }

    pub fn trainable(&self) -> usize {
        self.grads.len()
    }

    pub fn step_index(&self) -> usize {
        self.step
    }

    fn acts_for(&mut self, batch: usize, seq: usize) -> &mut Activations {
        let fits = self.acts.as_ref().is_some_and(|a| a.batch == batch && a.seq == seq);
        if !fits {
            self.acts = Some(Activations::new(&self.model.config, self.adapters.as_ref(), batch, seq));
        }
        self.acts.as_mut().expect("just set")
    }

    /// Loss and gradients for one batch, without updating (gradients land in [`Trainer::grads`]).
    pub fn compute_gradients(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
        dropout_seed: Option<u64>,
    ) -> f64 {
        self.run(inputs, targets, batch, seq, dropout_seed, true)
    }

    /// Forward pass with the loss, and the backward pass into `self.grads` when `backward_too`. The activations are
    /// taken out while the executor borrows the model, then put back for the next step.
    fn run(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
        dropout_seed: Option<u64>,
        backward_too: bool,
    ) -> f64 {
        self.acts_for(batch, seq);
        let mut acts = self.acts.take().expect("allocated");
        let w = Weights { cfg: &self.model.config, layout: &self.model.layout, params: &self.model.params };
        let loss = if backward_too {
            self.grads.fill(0.0);
            let target = if self.adapters.is_some() {
                GradTarget::Adapters(&mut self.grads)
            } else {
                GradTarget::Model(&mut self.grads)
            };
            forward_backward(&w, self.adapters.as_ref(), &mut acts, inputs, targets, dropout_seed, target)
        } else {
            forward(&w, self.adapters.as_ref(), &mut acts, inputs, Some(targets), dropout_seed).expect("targets given")
        };
        self.acts = Some(acts);
        loss
    }

    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// The trainable parameters (adapters for lora/qlora, the whole model for full).
    pub fn trainable_params_mut(&mut self) -> &mut [f32] {
        match &mut self.adapters {
            Some(a) => &mut a.params,
            None => &mut self.model.params,
        }
    }

    /// One optimizer step on a batch of `inputs`/`targets` (`batch × seq` each).
    pub fn step(&mut self, inputs: &[u32], targets: &[u32], batch: usize, seq: usize) -> StepStats {
        let loss = self.compute_gradients(inputs, targets, batch, seq, Some(dropout_seed(self.seed, self.step)));
        let grad_norm = clip_grad_norm(&mut self.grads, self.optim.grad_clip);
        let o = &self.optim;
        let lr = lr_at(self.step, o.steps, o.warmup, o.lr, o.min_lr);
        let grads = std::mem::take(&mut self.grads);
        let mut adam = std::mem::replace(&mut self.adam, AdamW::new(0, 0.0));
        adam.step(self.trainable_params_mut(), &grads, lr);
        self.adam = adam;
        self.grads = grads;
        let stats = StepStats { step: self.step, loss, lr, grad_norm };
        self.step += 1;
        stats
    }

    /// AdamW's moments and step count, for checkpoints.
    pub fn optimizer_state(&self) -> (&[f32], &[f32], u32) {
        (&self.adam.m, &self.adam.v, self.adam.t)
    }

    /// Restores a checkpoint: trainable parameters, AdamW moments and the step counter.
    pub fn restore(&mut self, trainable: &[f32], m: &[f32], v: &[f32], t: u32, step: usize) -> Result<()> {
        let n = self.grads.len();
        ensure!(
            trainable.len() == n && m.len() == n && v.len() == n,
            "checkpoint holds {} values but this run trains {n}",
            trainable.len()
        );
        self.trainable_params_mut().copy_from_slice(trainable);
        self.adam.m.copy_from_slice(m);
        self.adam.v.copy_from_slice(v);
        self.adam.t = t;
        self.step = step;
        Ok(())
    }

    /// Mean next-token loss on a batch without dropout and without updating anything.
    pub fn loss(&mut self, inputs: &[u32], targets: &[u32], batch: usize, seq: usize) -> f64 {
        self.run(inputs, targets, batch, seq, None, false)
    }
}
