//! One training run, the same on both executors and for every caller — the page's worker, `qlora finetune`,
//! `qlora pretrain` and `qlora evidence`: the settings, the data, a CPU trainer (the reference; it trains when there
//! is no GPU, and evaluates, scores accuracy and generates either way) and, when a GPU is given, the GPU trainer that
//! takes the steps, one kept in flight. It keeps the last good state to return to when training diverges, moves to
//! the CPU when the GPU device is lost, and saves and resumes in one checkpoint format ([`Checkpoint`]).
//!
//! - [`settings`]: what a run is asked to do, checked within the page's or the command line's limits.
//! - [`checkpoint`]: a run's resumable state as one safetensors file.
//! - [`pool`]: where CPU work runs in the page's threaded build.

pub mod checkpoint;
pub mod pool;
pub mod settings;

pub use checkpoint::{base_fingerprint, Checkpoint};
pub use settings::{Limits, Problem, RunSpec, Settings};

use crate::cpu::eval::{greedy_accuracy, greedy_answers, greedy_answers_and_accuracy};
use crate::cpu::{Generation, Trainer};
use crate::data::sample_batch;
use crate::data::tasks::{self, FineTuneData, Source};
use crate::gpu::{Gpu, GpuTrainer, PendingStep};
use crate::lora::Adapters;
use crate::model::Gpt2;
use crate::tokenizer::Tokenizer;
use crate::train::{Method, Sampling, StepStats};
use crate::{ensure, rng, Result};
use pool::on_pool;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::VecDeque;

/// Longest generation the page asks for, in tokens.
pub const MAX_GENERATED: usize = 1024;

/// Validation examples scored for accuracy in the page (fewer than the CLI's 100: the CPU fallback scores them too).
pub const PAGE_EVAL_EXAMPLES: usize = 50;
/// Steps between validations: about 15 points on the validation curve, at least every 10 steps.
pub fn validate_every(steps: usize) -> usize {
    ((steps as f64 / 15.0).round() as usize).max(10)
}

/// Windows of the validation text scored for the validation loss, in batches of the run's shape.
const VAL_BATCHES: usize = 2;

/// Validation after some steps.
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    pub step: usize,
    pub val_loss: f64,
    /// Exact-match accuracy on held-out examples (generated tasks only).
    pub accuracy: Option<f64>,
    /// With the claim that QLoRA quantizes the adapters: the same validation loss with A and B rounded through that
    /// format.
    pub val_loss_adapter_rounded: Option<f64>,
    /// The greedy answers to the held-out questions, counted, for tasks with a closed answer set ("even").
    pub answers: Option<Vec<(String, usize)>>,
}

/// Where a run returns to when it diverges: trainable parameters, AdamW moments and the step count.
struct Snapshot {
    step: usize,
    params: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// A step submitted to the GPU and not yet read back, with its batch (which the CPU executor takes if the device is
/// lost before the step's result comes back).
struct InFlight {
    pending: PendingStep,
    x: Vec<u32>,
    y: Vec<u32>,
}

pub struct Run {
    pub settings: Settings,
    pub spec: RunSpec,
    data: FineTuneData,
    cpu: Trainer,
    gpu: Option<GpuTrainer>,
    /// Full fine-tuning changes the base itself: the original is kept to generate "before" text.
    untouched_base: Option<Gpt2>,
    /// Whether the CPU trainer's trainable parameters are the GPU's current ones.
    cpu_in_sync: bool,
    batches: rng::Rng,
    val_batches: Vec<(Vec<u32>, Vec<u32>)>,
    /// The state at the last validation with a finite loss (the start, at first).
    last_good: Snapshot,
    /// The trainable parameters at step 0, kept until [`Run::validate_start`] has scored them: the page takes the
    /// first step before scoring the start, so training begins at once.
    start_params: Option<Vec<f32>>,
    /// Set when the run moved from WebGPU to the CPU executor (the device was lost); taken by the page.
    notice: Option<String>,
    /// [`base_fingerprint`] of the base this run started from (checkpoints carry it).
    base: u32,
    /// GPU steps submitted and not yet read back (at most one between two calls: see [`Run::step`]).
    in_flight: VecDeque<InFlight>,
    /// A step read back by [`Run::settle`] before anyone asked for it; the next [`Run::step`] or [`Run::drain`]
    /// returns it, so every step's result reaches the page once, in order.
    settled: Option<Result<StepStats>>,
}

impl Run {
    /// Prepares a page run on `base` (the fp32 model as loaded, or a base already in the run's storage format;
    /// borrowed, the run copies what it keeps): the page's limits, the data its settings name (the user's text for
    /// the task `text`). With `gpu`, the GPU trainer takes the steps.
    pub fn new<'a>(
        base: impl Into<Cow<'a, Gpt2>>,
        settings: Settings,
        user_text: Option<&str>,
        gpu: Option<Gpu>,
    ) -> Result<Run> {
        Self::new_with_examples(base, settings, user_text, gpu, PAGE_EVAL_EXAMPLES)
    }

    /// [`Run::new`] scoring accuracy on `eval_examples` held-out examples (the CLI's evidence grid uses more).
    pub fn new_with_examples<'a>(
        base: impl Into<Cow<'a, Gpt2>>,
        settings: Settings,
        user_text: Option<&str>,
        gpu: Option<Gpu>,
        eval_examples: usize,
    ) -> Result<Run> {
        let base = base.into();
        settings.validate(&base.config)?;
        let data = run_data(&settings, &base.tokenizer, user_text, eval_examples)?;
        Self::start(base, settings, &Limits::PAGE, data, gpu)
    }

    /// A run of `settings` within `limits` on `data` (from [`run_data`], or a corpus with its own held-out text).
    pub fn start<'a>(
        base: impl Into<Cow<'a, Gpt2>>,
        settings: Settings,
        limits: &Limits,
        data: FineTuneData,
        gpu: Option<Gpu>,
    ) -> Result<Run> {
        let base = base.into();
        let spec = settings.validate_within(&base.config, limits)?;
        let val_batches = val_batches(&data.split.val, spec.batch, spec.seq);
        ensure!(!val_batches.is_empty(), "the validation text is shorter than one sequence of {} tokens", spec.seq + 1);
        // A device lost before the run begins (while the model was being read, say) gets no trainer: what is made on
        // it is invalid. The run starts on the CPU executor, with the notice of a loss mid-run.
        let (gpu, notice) = match gpu {
            Some(g) => match g.lost() {
                Some(reason) => (None, Some(lost_device_notice(&reason, 0))),
                None => (Some(g), None),
            },
            None => (None, None),
        };
        let fingerprint = base_fingerprint(&base);
        // Full fine-tuning shows "before" text from the base as it was (the trainer's copy changes).
        let untouched_base = (spec.method == Method::Full).then(|| base.clone().into_owned());
        let mut cpu = Trainer::new(base, spec.method, spec.storage, spec.lora.clone(), spec.optim.clone(), spec.seed)?;
        // The GPU takes the base as the CPU trainer stores it (quantized once, for both), untrained yet.
        let gpu = match gpu {
            Some(g) => Some(GpuTrainer::new(
                g,
                &cpu.model,
                spec.method,
                spec.storage,
                spec.lora.clone(),
                spec.optim.clone(),
                spec.seed,
                spec.batch,
                spec.seq,
            )?),
            None => None,
        };
        if gpu.is_none() {
            // The CPU executor takes the steps: its memory is measured from the start.
            cpu.allocate(spec.batch, spec.seq);
        }
        let n = cpu.trainable();
        let last_good =
            Snapshot { step: 0, params: cpu.trainable_params_mut().to_vec(), m: vec![0.0; n], v: vec![0.0; n] };
        Ok(Run {
            batches: rng::stream(spec.seed, "batches"),
            settings,
            data,
            untouched_base,
            cpu,
            gpu,
            cpu_in_sync: true,
            val_batches,
            start_params: Some(last_good.params.clone()),
            notice,
            last_good,
            spec,
            base: fingerprint,
            in_flight: VecDeque::new(),
            settled: None,
        })
    }

    /// Continues a page run from a checkpoint on the base it trained on: the same settings, data and next batches,
    /// the saved trainable parameters and AdamW state; the checkpoint is also where a divergence returns to.
    pub fn resume<'a>(
        base: impl Into<Cow<'a, Gpt2>>,
        checkpoint: &Checkpoint,
        user_text: Option<&str>,
        gpu: Option<Gpu>,
    ) -> Result<Run> {
        let base = base.into();
        same_base(checkpoint.base, base_fingerprint(&base))?;
        let mut run = Run::new(base, checkpoint.settings.clone(), user_text, gpu)?;
        run.continue_from(checkpoint)?;
        Ok(run)
    }

    /// Takes up `checkpoint` in this new run: its trainable parameters, AdamW state, step and place in the batch
    /// stream. The checkpoint must come from this base and these settings; only the step count may have grown (a
    /// pretraining run continued for longer), which changes the schedule after the checkpoint's step, never before.
    pub fn continue_from(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        ensure!(self.step_index() == 0, "a run continues a checkpoint before its first step");
        same_base(checkpoint.base, self.base)?;
        let same_but_steps = |s: &Settings| Settings { steps: 0, ..s.clone() };
        ensure!(
            same_but_steps(&checkpoint.settings) == same_but_steps(&self.settings),
            "the saved run was trained with other settings ({}); only the number of steps may change when it continues",
            checkpoint.settings.differences(&self.settings).join(", ")
        );
        ensure!(
            checkpoint.step <= self.spec.optim.steps,
            "the saved run is at step {}, beyond the {} steps asked for",
            checkpoint.step,
            self.spec.optim.steps
        );
        let n = self.trainable();
        ensure!(
            checkpoint.params.len() == n,
            "the saved run holds {} trainable values but its settings train {n}",
            checkpoint.params.len()
        );
        self.last_good = Snapshot {
            step: checkpoint.step,
            params: checkpoint.params.clone(),
            m: checkpoint.m.clone(),
            v: checkpoint.v.clone(),
        };
        self.restore_last_good()?;
        self.batches.set_word_pos(checkpoint.batches_word_pos);
        // Step 0 was scored by the run that saved this one.
        self.start_params = None;
        Ok(())
    }

    /// The run's state now, to save or export (read back from the GPU when it trains there).
    pub async fn checkpoint(&mut self) -> Result<Checkpoint> {
        self.sync().await?;
        let (m, v) = self.optimizer_moments().await?;
        Ok(Checkpoint {
            settings: self.settings.clone(),
            step: self.step_index(),
            batches_word_pos: self.batches.get_word_pos(),
            base: self.base,
            params: self.cpu.trainable_params_mut().to_vec(),
            m,
            v,
        })
    }

    /// The trained weights as a Hugging Face directory's files: a PEFT adapter (`adapter_config.json`,
    /// `adapter_model.safetensors`) for LoRA and QLoRA, the whole model (`config.json`, `model.safetensors`) for full
    /// fine-tuning.
    pub async fn weight_files(&mut self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        self.sync().await?;
        match &self.cpu.adapters {
            Some(ad) => crate::lora::adapter_files(ad, &self.cpu.model.config),
            None => crate::model::model_files(&self.cpu.model, crate::model::StoreDtype::F32),
        }
    }

    /// A copy of the current adapters (None for full fine-tuning).
    pub async fn adapters(&mut self) -> Result<Option<crate::lora::Adapters>> {
        self.sync().await?;
        Ok(self.cpu.adapters.clone())
    }

    /// AdamW's moments from the executor that trains (call after [`Run::sync`]).
    async fn optimizer_moments(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        match &self.gpu {
            Some(g) => g.optimizer_state().await,
            None => {
                let (m, v, _) = self.cpu.optimizer_state();
                Ok((m.to_vec(), v.to_vec()))
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.gpu.is_some() {
            "webgpu"
        } else {
            "cpu"
        }
    }

    /// Steps whose updates are in the trainable parameters, read back or not yet returned by [`Run::step`] (a step
    /// still in flight on the GPU is not counted: nothing can read its result before it is settled).
    pub fn step_index(&self) -> usize {
        self.applied_steps() - self.in_flight.len()
    }

    /// Whether a GPU step is submitted and not yet read back.
    pub fn step_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Steps taken or submitted by either executor.
    fn applied_steps(&self) -> usize {
        self.cpu.step_index().max(self.gpu.as_ref().map_or(0, |g| g.step_index()))
    }

    /// Steps whose results [`Run::step`] or [`Run::drain`] returned.
    fn reported_steps(&self) -> usize {
        self.step_index() - usize::from(matches!(self.settled, Some(Ok(_))))
    }

    /// Whether every step of the run has been taken and reported.
    pub fn finished(&self) -> bool {
        self.reported_steps() >= self.spec.optim.steps
    }

    pub fn trainable(&self) -> usize {
        self.cpu.trainable()
    }

    /// Whether a validation is due after step `step` (0-based): every [`validate_every`] steps, and after the last.
    pub fn validation_due(&self, step: usize) -> bool {
        (step + 1) % validate_every(self.spec.optim.steps) == 0 || step + 1 == self.spec.optim.steps
    }

    /// Whether the next [`Run::step`] should keep the step after it in flight: not when a validation follows it (it
    /// reads the state), and not for the first step (the start is scored after it, on the CPU, and the time per step
    /// should not include that).
    pub fn lookahead_pays(&self) -> bool {
        let k = self.step_index();
        k > 0 && !self.validation_due(k)
    }

    /// The result of the next optimizer step on the next seeded batch.
    ///
    /// On the GPU with `lookahead`, the step after it is submitted before this one's loss is awaited, so the GPU
    /// works on it while the loss comes back and the caller handles it; pass `lookahead` only when the next call is
    /// another step (not at a validation). Anything that reads the run's state first settles a step left in flight,
    /// and its result is the one the next call returns (see [`Run::drain`]).
    pub async fn step(&mut self, lookahead: bool) -> Result<StepStats> {
        if let Some(s) = self.settled.take() {
            return s;
        }
        ensure!(!self.finished(), "the run has finished its {} steps", self.spec.optim.steps);
        if self.gpu.is_some() {
            if self.in_flight.is_empty() {
                self.submit_next()?;
            }
            if lookahead && self.applied_steps() < self.spec.optim.steps {
                self.submit_next()?;
            }
            let next = self.in_flight.pop_front().expect("a step was just submitted");
            return self.finish(next).await;
        }
        let (x, y) = sample_batch(&self.data.split.train, self.spec.batch, self.spec.seq, &mut self.batches)?;
        let (cpu, batch, seq) = (&mut self.cpu, self.spec.batch, self.spec.seq);
        let s = on_pool(|| cpu.step(&x, &y, batch, seq));
        self.check_finite(s).await
    }

    /// The result of a step left in flight by [`Run::step`] with `lookahead`, once read back; None when there is
    /// none. The page calls it before anything else reads the run, so the step it shows is the state it reads.
    pub async fn drain(&mut self) -> Result<Option<StepStats>> {
        self.settle().await;
        self.settled.take().transpose()
    }

    /// Reads back a step left in flight, keeping its result for the next [`Run::step`] or [`Run::drain`].
    async fn settle(&mut self) {
        if self.settled.is_none() {
            if let Some(next) = self.in_flight.pop_front() {
                self.settled = Some(self.finish(next).await);
            }
        }
    }

    /// Submits the GPU step on the next seeded batch.
    fn submit_next(&mut self) -> Result<()> {
        let g = self.gpu.as_mut().ok_or_else(|| crate::Error::new("this run is not on the GPU"))?;
        let (x, y) = sample_batch(&self.data.split.train, self.spec.batch, self.spec.seq, &mut self.batches)?;
        self.cpu_in_sync = false;
        let pending = g.submit_step(&x, &y)?;
        self.in_flight.push_back(InFlight { pending, x, y });
        Ok(())
    }

    /// Reads back a submitted step. A failed readback (in practice a lost device) moves the run to the CPU executor
    /// at its last snapshot, which takes this step's batch.
    async fn finish(&mut self, step: InFlight) -> Result<StepStats> {
        let read = match &mut self.gpu {
            Some(g) => g.finish_step(step.pending).await,
            None => Err(crate::Error::new("the GPU trainer is gone")),
        };
        let s = match read {
            Ok(s) => s,
            Err(e) => {
                // Steps submitted after this one went with the device.
                self.in_flight.clear();
                self.fall_back_to_cpu(&e)?;
                let (cpu, batch, seq) = (&mut self.cpu, self.spec.batch, self.spec.seq);
                on_pool(|| cpu.step(&step.x, &step.y, batch, seq))
            }
        };
        self.check_finite(s).await
    }

    /// A step with a NaN or infinite loss or gradient norm puts the last good state back and becomes an error.
    async fn check_finite(&mut self, s: StepStats) -> Result<StepStats> {
        if s.loss.is_finite() && s.grad_norm.is_finite() {
            return Ok(s);
        }
        // A step submitted after this one trained on the diverged parameters: it is read back (its staging buffer
        // comes free) and forgotten before the snapshot goes back.
        while let Some(later) = self.in_flight.pop_front() {
            if let Some(g) = &mut self.gpu {
                let _ = g.finish_step(later.pending).await;
            }
        }
        let back = self.restore_last_good()?;
        Err(crate::Error::new(format!(
            "training diverged at step {} (loss {}, gradient norm {}); the trainable parameters and optimizer state \
             are back at step {back}, the last good validation — try a learning rate below {}",
            s.step + 1,
            s.loss,
            s.grad_norm,
            self.spec.optim.lr
        )))
    }

    /// After a failed GPU operation (in practice a lost device: WebGPU reports it through `device.lost`, and every
    /// operation after it fails): the GPU trainer goes, the CPU trainer takes the last snapshot, and a notice says so.
    fn fall_back_to_cpu(&mut self, error: &crate::Error) -> Result<usize> {
        let reason = self.gpu.as_ref().and_then(|g| g.gpu.lost()).unwrap_or_else(|| error.to_string());
        self.gpu = None;
        let back = self.restore_last_good()?;
        self.notice = Some(lost_device_notice(&reason, back));
        Ok(back)
    }

    /// The notice of a move to the CPU executor, once.
    pub fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    /// Test hook: destroys the GPU device, as a driver reset or a laptop's sleep would lose it.
    pub fn lose_device_for_test(&mut self) -> Result<()> {
        let g = self.gpu.as_ref().ok_or_else(|| crate::Error::new("this run is not on the GPU"))?;
        g.gpu.device.destroy();
        Ok(())
    }

    /// Puts the last good snapshot back on both executors; returns its step.
    fn restore_last_good(&mut self) -> Result<usize> {
        let snap = &self.last_good;
        self.cpu.restore(&snap.params, &snap.m, &snap.v, snap.step as u32, snap.step)?;
        if let Some(g) = &mut self.gpu {
            g.restore(&snap.params, &snap.m, &snap.v, snap.step)?;
        }
        self.cpu_in_sync = true;
        Ok(snap.step)
    }

    /// Records the current state as the one to return to if training diverges.
    async fn snapshot_good(&mut self) -> Result<()> {
        self.sync().await?;
        let (m, v) = self.optimizer_moments().await?;
        let params = self.cpu.trainable_params_mut().to_vec();
        self.last_good = Snapshot { step: self.step_index(), params, m, v };
        Ok(())
    }

    /// Sets one trainable parameter to NaN on the executor that trains, so the next step diverges. Only for tests of
    /// the divergence path (the page's tests reach it through the worker's `inject-nan` request).
    pub async fn inject_nan(&mut self) -> Result<()> {
        self.sync().await?;
        let params = self.cpu.trainable_params_mut();
        params[0] = f32::NAN;
        if let Some(g) = &self.gpu {
            g.set_trainable_params(params)?;
        }
        Ok(())
    }

    /// Copies the GPU's trainable parameters into the CPU trainer (for evaluation, accuracy, generation, snapshots,
    /// [`Run::trained`]); settles a step left in flight first.
    pub async fn sync(&mut self) -> Result<()> {
        self.settle().await;
        if let (Some(g), false) = (&self.gpu, self.cpu_in_sync) {
            match g.trainable_params().await {
                Ok(params) => {
                    self.cpu.trainable_params_mut().copy_from_slice(&params);
                    self.cpu_in_sync = true;
                }
                // A device lost while the run was paused: the CPU takes over from the last snapshot.
                Err(e) => {
                    self.fall_back_to_cpu(&e)?;
                }
            }
        }
        Ok(())
    }

    /// What the accuracy is worth: chance and the majority answer's score on the held-out examples (tasks only).
    pub fn baseline(&self) -> Option<tasks::Baseline> {
        self.data.task.and(tasks::baseline(&self.data.val_examples))
    }

    /// Validation loss on fixed windows of the held-out text, accuracy on held-out examples, and — when the settings
    /// ask for adapter storage (the claim that QLoRA quantizes A and B) — the loss with the adapters rounded through it.
    pub async fn validate(&mut self) -> Result<Validation> {
        self.sync().await?;
        let v = self.measure(self.step_index());
        if v.val_loss.is_finite() {
            self.snapshot_good().await?;
        }
        Ok(v)
    }

    /// The validation of step 0, whenever it is asked for: the starting parameters are put in the CPU trainer for
    /// the measurement and the current ones back after. None once given (or for a run that never kept them).
    pub fn validate_start(&mut self) -> Option<Validation> {
        let start = self.start_params.take()?;
        let current = self.cpu.trainable_params_mut().to_vec();
        self.cpu.trainable_params_mut().copy_from_slice(&start);
        let v = self.measure(0);
        self.cpu.trainable_params_mut().copy_from_slice(&current);
        Some(v)
    }

    /// [`Validation`] of the CPU trainer's current parameters, labelled `step`.
    fn measure(&mut self, step: usize) -> Validation {
        let val_loss = self.val_loss();
        let closed = self.baseline().is_some_and(|b| b.chance.is_some());
        let (cpu, data) = (&self.cpu, &self.data);
        // A BPE model's accuracy is found by generating its answers: a closed task's answer counts come from the same
        // generations (GPT-2 in the page spends most of a validation here).
        let bpe = !matches!(cpu.model.tokenizer, Tokenizer::Bytes);
        let (accuracy, mut answers) = match data.task {
            Some(_) if closed && bpe => {
                let (counts, acc) =
                    on_pool(|| greedy_answers_and_accuracy(&cpu.model, cpu.adapters.as_ref(), &data.val_examples));
                (Some(acc), Some(counts))
            }
            Some(_) => (Some(on_pool(|| greedy_accuracy(&cpu.model, cpu.adapters.as_ref(), &data.val_examples))), None),
            None => (None, None),
        };
        let val_loss_adapter_rounded = match (self.spec.adapter_storage, self.cpu.adapters.clone()) {
            (Some(st), Some(mut rounded)) => {
                rounded.round_through(st);
                let original = std::mem::replace(self.cpu.adapters.as_mut().expect("present"), rounded);
                let loss = self.val_loss();
                self.cpu.adapters = Some(original);
                Some(loss)
            }
            _ => None,
        };
        if closed && answers.is_none() {
            let (cpu, data) = (&self.cpu, &self.data);
            answers = Some(on_pool(|| greedy_answers(&cpu.model, cpu.adapters.as_ref(), &data.val_examples)));
        }
        Validation { step, val_loss, accuracy, val_loss_adapter_rounded, answers }
    }

    /// Mean loss of the CPU trainer over the validation batches.
    fn val_loss(&mut self) -> f64 {
        let (b, t) = (self.spec.batch, self.spec.seq);
        let (cpu, batches) = (&mut self.cpu, &self.val_batches);
        on_pool(|| batches.iter().map(|(x, y)| cpu.loss(x, y, b, t)).sum::<f64>()) / batches.len() as f64
    }

    /// Continues `prompt` with the base as this run stores it (no adapters) or with the tuned model.
    pub async fn generate(&mut self, prompt: &str, tokens: usize, sampling: Sampling, tuned: bool) -> Result<String> {
        ensure!(tokens <= MAX_GENERATED, "at most {MAX_GENERATED} tokens per generation (asked for {tokens})");
        let tokenizer = self.cpu.model.tokenizer.clone();
        let mut g = Generation::new(&tokenizer.encode_prompt(prompt), sampling);
        self.continue_generation(&mut g, tuned, tokens).await?;
        Ok(tokenizer.decode(g.generated()))
    }

    /// `n` more tokens of `g`, from the base as this run stores it or from the tuned model as it is now.
    pub async fn continue_generation(&mut self, g: &mut Generation, tuned: bool, n: usize) -> Result<()> {
        self.sync().await?;
        let (model, adapters) = match (tuned, &self.untouched_base) {
            (false, Some(base)) => (base, None),
            (false, None) => (&self.cpu.model, None),
            (true, _) => (&self.cpu.model, self.cpu.adapters.as_ref()),
        };
        on_pool(|| {
            for _ in 0..n {
                g.step(model, adapters);
            }
        });
        Ok(())
    }

    /// The model as trained up to the last [`Run::sync`] and its adapters (None for full fine-tuning): to evaluate,
    /// save or inspect.
    pub fn trained(&self) -> (&Gpt2, Option<&Adapters>) {
        (&self.cpu.model, self.cpu.adapters.as_ref())
    }

    /// The run's data: training and held-out tokens, and the held-out examples of a generated task.
    pub fn data(&self) -> &FineTuneData {
        &self.data
    }

    /// Bytes the run's executor holds per category, and its scratch: the GPU's buffers on WebGPU, the CPU trainer's
    /// buffers otherwise (it keeps the base in the run's format too).
    pub fn measured_memory(&self) -> Option<Vec<(String, u64)>> {
        if let Some(g) = &self.gpu {
            return Some(g.measured_memory().into_iter().map(|(c, b)| (c.name().to_string(), b)).collect());
        }
        let (memory, scratch) = self.cpu.measured_memory();
        let mut categories: Vec<(String, u64)> =
            memory.categories().iter().map(|(name, bytes)| (name.to_string(), *bytes)).collect();
        categories.push(("scratch".into(), scratch));
        Some(categories)
    }
}

/// The data `settings` name: a built-in task, or `user_text` for the task `text`; `eval_examples` held-out examples
/// are scored for a generated task's accuracy.
pub fn run_data(
    settings: &Settings,
    tokenizer: &Tokenizer,
    user_text: Option<&str>,
    eval_examples: usize,
) -> Result<FineTuneData> {
    let source = match settings.task.as_str() {
        "text" => Source::User(user_text.ok_or_else(|| crate::Error::new("paste or drop a text to train on"))?),
        name => Source::builtin(name)?,
    };
    tasks::fine_tune_data(source, tokenizer, settings.seed, settings.seq, eval_examples)
}

/// What the page says when the run moved to the CPU executor because the WebGPU device was lost.
fn lost_device_notice(reason: &str, step: usize) -> String {
    format!(
        "The WebGPU device was lost ({reason}); training continues on the CPU executor from step {step}, the last \
         snapshot."
    )
}

/// A checkpoint continues only on the base it trained on (fingerprints from [`base_fingerprint`]).
fn same_base(saved: u32, loaded: u32) -> Result<()> {
    ensure!(
        saved == loaded,
        "this run was trained on a different base model than the one loaded here, so it cannot continue on it"
    );
    Ok(())
}

/// Consecutive windows of `seq + 1` tokens from the start of the validation text, grouped into batches; at most
/// [`VAL_BATCHES`] batches, the last one padded by repeating windows.
fn val_batches(val: &[u32], batch: usize, seq: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    let windows: Vec<&[u32]> = val.windows(seq + 1).step_by(seq).take(batch * VAL_BATCHES).collect();
    if windows.is_empty() {
        return Vec::new();
    }
    windows
        .chunks(batch)
        .map(|c| {
            let mut x = Vec::with_capacity(batch * seq);
            let mut y = Vec::with_capacity(batch * seq);
            for i in 0..batch {
                let w = c[i % c.len()];
                x.extend_from_slice(&w[..seq]);
                y.extend_from_slice(&w[1..]);
            }
            (x, y)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    #[test]
    fn validations_come_about_fifteen_times_a_run_and_after_the_last_step() {
        assert_eq!((validate_every(300), validate_every(30), validate_every(5000)), (20, 10, 333));
        let base = Gpt2::init(ModelConfig::bytes(1, 2, 16, 32).unwrap(), 0);
        let run = Run::new(&base, Settings { steps: 45, seq: 16, ..Default::default() }, None, None).unwrap();
        let due: Vec<usize> = (0..45).filter(|&s| run.validation_due(s)).collect();
        assert_eq!(due, [9, 19, 29, 39, 44]);
        assert!(!run.lookahead_pays(), "the first step is awaited: the start is scored after it");
    }
}
