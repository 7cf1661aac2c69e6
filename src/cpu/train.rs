//! A training run on the CPU executor: full fine-tuning, LoRA, or QLoRA (LoRA over a base whose four linear weights
//! per block stay stored in a quantized format, each dequantized only for its own product).

use super::executor::{forward, forward_backward, Activations, GradTarget, Weights};
use super::optim::{clip_grad_norm, AdamW};
use crate::accounting::Memory;
use crate::lora::{Adapters, LoraConfig};
use crate::model::{Gpt2, Linear, StoredLinears, TensorId};
use crate::quant::{round_in_place, Format, QuantError, QuantizedTensor, Storage};
use crate::train::{dropout_seed, lr_at, Method, OptimConfig, StepStats, FULL_KEEPS_FP32};
use crate::{ensure, Error, Result};
use std::borrow::Cow;

/// One quantized base tensor and how far it moved.
#[derive(Clone, Debug)]
pub struct QuantReport {
    pub name: String,
    pub len: usize,
    pub value_bytes: u64,
    pub constant_bytes: u64,
    pub error: QuantError,
}

/// Stores the four linear weights of every block in `storage` (see [`stored_base`]) and reports bytes and error per
/// weight, as `qlora quant` prints them.
pub fn quantize_base(model: &mut Gpt2, storage: Storage) -> Vec<QuantReport> {
    let (mut stored, mut reports) = (Vec::new(), Vec::new());
    each_linear_stored(model, storage, |id, linear, q| {
        let (value_bytes, constant_bytes) = q.bytes();
        let name = model.layout.hf_name(id);
        reports.push(QuantReport { name, len: linear.len(), value_bytes, constant_bytes, error: q.error(linear) });
        stored.push(q);
    });
    if storage != Storage::FP32 {
        *model = keeping_stored(model, storage, stored);
    }
    reports
}

/// `base` (an fp32 model) with the four linear weights of every block stored in `storage`. The weight is taken as a
/// Linear `[out, in]` weight, i.e. the transpose of GPT-2's Conv1D `[in, out]` storage, exactly as bitsandbytes sees
/// it. Below fp32 the model keeps them in that format ([`Gpt2::keep_linears_stored_from`]: the executor multiplies
/// through a dequantized copy of one weight at a time) and its tied embedding rounded to 16 bits
/// ([`Storage::embedding`]); an fp32 base is a copy sharing its buffer. `base` is only read, and beside the result
/// only one weight at a time is in fp32: in a tab, whose memory never shrinks, every transient copy of the whole
/// would stay.
pub fn stored_base(base: &Gpt2, storage: Storage) -> Gpt2 {
    if storage == Storage::FP32 {
        return base.clone();
    }
    let mut stored = Vec::with_capacity(4 * base.config.n_layer);
    each_linear_stored(base, storage, |_, _, q| stored.push(q));
    keeping_stored(base, storage, stored)
}

/// `base` keeping `stored` (its linear weights in `storage`, from [`each_linear_stored`]) instead of its fp32 ones.
fn keeping_stored(base: &Gpt2, storage: Storage, stored: Vec<QuantizedTensor>) -> Gpt2 {
    let mut model = Gpt2 {
        config: base.config.clone(),
        layout: base.layout.clone(),
        params: Default::default(),
        tokenizer: base.tokenizer.clone(),
        linears: None,
    };
    let linears = StoredLinears::new(&base.config, storage, stored, base.weights_digest());
    model.keep_linears_stored_from(&base.params, linears);
    // The tied embedding in 16 bits (`Storage::embedding`): its values rounded as the GPU stores them. Not a
    // quantized tensor, so not among `qlora quant`'s reports (it sums those into bits per quantized parameter).
    round_in_place(model.tensor_mut(TensorId::Wte), storage.embedding());
    model
}

/// Quantizes every block linear weight of `base` in turn and hands it to `keep` with its id and its fp32 values as
/// the Linear `[out, in]` weight that was quantized.
fn each_linear_stored(base: &Gpt2, storage: Storage, mut keep: impl FnMut(TensorId, &[f32], QuantizedTensor)) {
    let c = base.config.n_embd;
    for l in 0..base.config.n_layer {
        for lin in Linear::ALL {
            let (d_in, d_out) = lin.dims(c);
            let id = TensorId::Block(l, lin.weight());
            let linear = Linear::transpose(base.tensor(id), d_in, d_out);
            let q = QuantizedTensor::quantize(&linear, storage);
            keep(id, &linear, q);
        }
    }
}

/// `base` as a run over a base in `storage` keeps it: stored from fp32 ([`stored_base`]), or taken as it is when it
/// already keeps its linear weights in `storage` (borrowed: a copy sharing its buffers, which costs nothing more). A
/// base stored in another format cannot be: its fp32 weights are gone.
pub fn base_in(base: Cow<'_, Gpt2>, storage: Storage) -> Result<Gpt2> {
    let kept = base.linear_storage();
    if kept == storage {
        return Ok(base.into_owned());
    }
    ensure!(
        kept == Storage::FP32,
        "the base was read with its linear weights in {} and cannot be stored in {} from them: read it again from \
         its file",
        kept.label(),
        storage.label()
    );
    Ok(stored_base(&base, storage))
}

/// A training run: the model (base weights as the executor reads them), adapters if any, gradients, optimizer.
pub struct Trainer {
    pub method: Method,
    pub storage: Storage,
    pub model: Gpt2,
    pub adapters: Option<Adapters>,
    pub optim: OptimConfig,
    grads: Vec<f32>,
    adam: AdamW,
    acts: Option<Activations>,
    step: usize,
    seed: u64,
}

impl Trainer {
    /// A run on `base` as it stores it ([`base_in`]): fp32 for full fine-tuning and LoRA over fp32; below fp32 only the
    /// stored form is made, never a second fp32 copy. A borrowed base's buffers are shared, and copied only when full
    /// fine-tuning first writes to them. `lora` is required for lora/qlora and ignored for full fine-tuning.
    pub fn new<'a>(
        base: impl Into<Cow<'a, Gpt2>>,
        method: Method,
        storage: Storage,
        lora: Option<LoraConfig>,
        optim: OptimConfig,
        seed: u64,
    ) -> Result<Self> {
        optim.validate()?;
        let base = base.into();
        let (model, adapters) = match method {
            Method::Full => {
                ensure!(
                    storage.format == Format::Fp32,
                    "{FULL_KEEPS_FP32}; --format {} applies to lora and qlora",
                    storage.label()
                );
                (base_in(base, Storage::FP32)?, None)
            }
            Method::Lora | Method::Qlora => {
                let lora = lora.ok_or_else(|| Error::new("lora and qlora need adapter targets and a rank"))?;
                let adapters = Adapters::init(lora, base.config.n_layer, base.config.n_embd, seed)?;
                (base_in(base, storage)?, Some(adapters))
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

    /// Allocates the activations for batches of `batch × seq` now rather than at the first step, so that
    /// [`Trainer::measured_memory`] counts them from the start.
    pub fn allocate(&mut self, batch: usize, seq: usize) {
        self.acts_for(batch, seq);
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
        let w = Weights::of(&self.model);
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
            None => self.model.params_mut(),
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

    /// Bytes this trainer holds, by the accounting's categories, and its scratch beside them. The base is what the
    /// model keeps: its fp32 buffer (the tied embedding among it, in fp32 whatever the format rounded it to) and,
    /// below fp32, the block linear weights' stored values and constants.
    pub fn measured_memory(&self) -> (Memory, u64) {
        let (values, constants) = self.model.linears.as_ref().map_or((0, 0), |l| l.value_and_constant_bytes());
        let memory = Memory {
            base_weights: 4 * self.model.params.len() as u64 + values,
            quant_constants: constants,
            adapters: self.adapters.as_ref().map_or(0, |a| 4 * a.params.len() as u64),
            gradients: 4 * self.grads.len() as u64,
            optimizer: 4 * (self.adam.m.len() + self.adam.v.len()) as u64,
            activations: self.acts.as_ref().map_or(0, |a| a.saved_bytes()),
        };
        (memory, self.acts.as_ref().map_or(0, |a| a.scratch_bytes()))
    }

    /// Mean next-token loss on a batch without dropout and without updating anything.
    pub fn loss(&mut self, inputs: &[u32], targets: &[u32], batch: usize, seq: usize) -> f64 {
        self.run(inputs, targets, batch, seq, None, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::executor::{forward, forward_backward};
    use crate::lora::Target;
    use crate::model::ModelConfig;
    use rand::{RngExt, SeedableRng};
    use std::sync::Arc;

    /// `base` with every block linear weight replaced by its values after a round trip through `storage`, kept in
    /// the fp32 buffer (what the executor multiplied by before stored weights), and the embedding rounded as a
    /// stored base rounds it.
    fn dequantized_in_place(base: &Gpt2, storage: Storage) -> Gpt2 {
        let mut m = base.clone();
        let c = m.config.n_embd;
        for l in 0..m.config.n_layer {
            for lin in Linear::ALL {
                let (d_in, d_out) = lin.dims(c);
                let id = TensorId::Block(l, lin.weight());
                let linear = Linear::transpose(m.tensor(id), d_in, d_out);
                let back = QuantizedTensor::quantize(&linear, storage).dequantize();
                m.tensor_mut(id).copy_from_slice(&Linear::transpose(&back, d_out, d_in));
            }
        }
        let wte = m.tensor_mut(TensorId::Wte);
        let rounded = QuantizedTensor::quantize(wte, storage.embedding()).dequantize();
        wte.copy_from_slice(&rounded);
        m
    }

    /// The executor multiplying through stored weights, one dequantized at a time, computes what it computes on the
    /// same weights dequantized into the fp32 buffer: the loss, every adapter gradient and the next-token
    /// probabilities, in every format below fp32. Width 24 makes blocks of 64 straddle the rows of every weight.
    #[test]
    fn a_stored_base_computes_what_its_dequantized_copy_computes() {
        let base = Gpt2::init(ModelConfig::bytes(2, 2, 24, 16).unwrap(), 3);
        let lora = LoraConfig {
            targets: [Target::Q, Target::V, Target::O, Target::Fc, Target::Proj].iter().map(|t| (*t, 4)).collect(),
            alpha: 8.0,
            rslora: false,
            dropout: 0.1,
        };
        let mut adapters = Adapters::init(lora, 2, 24, 5).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for e in adapters.entries.clone() {
            for v in &mut adapters.params[e.b.clone()] {
                *v = rng.random_range(-0.3f32..0.3);
            }
        }
        let (b, t) = (2, 12);
        let x: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..256)).collect();
        let y: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..256)).collect();
        let run = |m: &Gpt2| {
            let w = Weights::of(m);
            let mut acts = Activations::new(&m.config, Some(&adapters), b, t);
            let mut grads = vec![0.0f32; adapters.len()];
            let loss =
                forward_backward(&w, Some(&adapters), &mut acts, &x, &y, Some(17), GradTarget::Adapters(&mut grads));
            forward(&w, Some(&adapters), &mut acts, &x, None, None);
            (loss, grads, acts.probs().to_vec())
        };
        for format in Format::ALL.into_iter().filter(|f| *f != Format::Fp32) {
            for dq in [false, true].into_iter().filter(|dq| !dq || format.supports_double_quant()) {
                let storage = Storage::new(format, dq).unwrap();
                let stored = stored_base(&base, storage);
                assert!(stored.linears.is_some() && !stored.layout.has_block_linears());
                let (loss, grads, probs) = run(&stored);
                let dense = dequantized_in_place(&base, storage);
                let (want_loss, want_grads, want_probs) = run(&dense);
                // Put back into the buffer (to merge or save), the stored weights are the dequantized copy exactly.
                let mut back = stored.clone();
                back.keep_linears_in_buffer();
                assert!(back.linears.is_none() && back.layout == dense.layout && back.params == dense.params);
                let label = storage.label();
                assert!((loss - want_loss).abs() <= 1e-6 * want_loss.abs(), "{label}: loss {loss} vs {want_loss}");
                for (name, got, want) in [("gradient", &grads, &want_grads), ("probability", &probs, &want_probs)] {
                    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                        assert!((g - w).abs() <= 1e-5 * scale, "{label}: {name} {i} is {g}, {w} dequantized in place");
                    }
                }
            }
        }
    }

    /// Below fp32 the stored base takes the format's bytes instead of fp32's: distilgpt2 in nf4 + double quantization
    /// keeps its 42.5 M linear weights in about 22 MB, and its fp32 buffer holds only the other parameters.
    #[test]
    fn a_stored_base_drops_its_fp32_linear_weights() {
        let cfg = ModelConfig::hf_preset("distilgpt2", None).unwrap();
        let base = Gpt2::init(cfg.clone(), 1);
        let mut stored = base.clone();
        let reports = quantize_base(&mut stored, Storage::new(Format::Nf4, true).unwrap());
        let linear: u64 = reports.iter().map(|r| r.len as u64).sum();
        assert_eq!(stored.params.len() as u64, base.params.len() as u64 - linear);
        let quantized: u64 = reports.iter().map(|r| r.value_bytes + r.constant_bytes).sum();
        assert_eq!(stored.linears.as_ref().unwrap().bytes(), quantized);
        // 4.127 bits per linear weight.
        assert!((quantized as f64 * 8.0 / linear as f64 - 4.127).abs() < 0.01);
        // An fp32 base stays whole, with no stored copy.
        let kept = stored_base(&base, Storage::FP32);
        assert!(kept.linears.is_none() && kept.params == base.params);
        // Stored, the base still names the fp32 weights it came from.
        assert_eq!(stored.weights_digest(), base.weights_digest());
        assert_eq!(stored.param_count(), base.params.len());
    }

    /// A run over a base already stored in its format takes it as it is (sharing the stored weights when borrowed);
    /// one that needs another format, or fp32, is refused with the way out, since the fp32 weights are gone.
    #[test]
    fn a_run_takes_a_base_stored_in_its_format_and_refuses_another() {
        let base = Gpt2::init(ModelConfig::bytes(2, 2, 32, 16).unwrap(), 4);
        let nf4 = Storage::new(Format::Nf4, true).unwrap();
        let stored = stored_base(&base, nf4);
        let taken = base_in((&stored).into(), nf4).unwrap();
        assert!(Arc::ptr_eq(taken.linears.as_ref().unwrap(), stored.linears.as_ref().unwrap()));
        assert_eq!(taken.params, stored.params);
        let from_fp32 = base_in(base.clone().into(), nf4).unwrap();
        assert!(from_fp32.params == stored.params && from_fp32.linears == stored.linears);
        for other in
            [Storage::new(Format::Int8, false).unwrap(), Storage::new(Format::Nf4, false).unwrap(), Storage::FP32]
        {
            let e = base_in((&stored).into(), other).unwrap_err().to_string();
            assert!(e.contains("read it again from its file") && e.contains("nf4+dq"), "{e}");
        }
        let lora = LoraConfig { targets: vec![(Target::Q, 2)], alpha: 4.0, rslora: false, dropout: 0.0 };
        let optim = OptimConfig::with_defaults(1e-3, 10);
        let e = Trainer::new(&stored, Method::Full, Storage::FP32, None, optim, 1).err().unwrap().to_string();
        assert!(e.contains("read it again"), "{e}");
        let t = Trainer::new(&stored, Method::Qlora, nf4, Some(lora), OptimConfig::with_defaults(1e-3, 10), 1).unwrap();
        assert!(Arc::ptr_eq(t.model.linears.as_ref().unwrap(), stored.linears.as_ref().unwrap()));
    }
}
