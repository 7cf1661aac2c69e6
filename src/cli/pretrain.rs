//! `qlora pretrain`: full-parameter training of a byte-level GPT-2 from scratch, with resumable checkpoints
//! (model, AdamW moments, step), periodic validation, and one JSON line per logged step.

use super::PretrainArgs;
use crate::cpu::{eval_loss, Trainer};
use crate::data::{encode, read_text_file};
use crate::gpu::GpuTrainer;
use crate::model::{
    create_dir, load_model_dir, read_safetensors_f32, save_model_dir, write_file, write_safetensors, Gpt2, ModelConfig,
    StoreDtype,
};
use crate::quant::Storage;
use crate::train::{Method, OptimConfig};
use crate::{ensure, rng, Error, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// The batch of step `step`: derived from (seed, step) alone, so a resumed run sees exactly the batches it would have.
fn batch_at(tokens: &[u32], batch: usize, seq: usize, seed: u64, step: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut r = rng::stream(seed.wrapping_add(step as u64), "pretrain-batch");
    crate::data::sample_batch(tokens, batch, seq, &mut r)
}

fn save_checkpoint(dir: &Path, trainer: &Trainer, step: usize) -> Result<()> {
    create_dir(dir)?;
    save_model_dir(&trainer.model, dir, StoreDtype::F32)?;
    let (m, v, t) = trainer.optimizer_state();
    let n = m.len();
    let bytes = write_safetensors(&[("m".into(), vec![n], m), ("v".into(), vec![n], v)], StoreDtype::F32)?;
    write_file(&dir.join("optimizer.safetensors"), &bytes)?;
    write_file(&dir.join("state.json"), json!({"step": step, "adam_t": t}).to_string().as_bytes())
}

fn load_checkpoint(dir: &Path, trainer: &mut Trainer) -> Result<usize> {
    let model = load_model_dir(dir)?;
    ensure!(model.config == trainer.model.config, "checkpoint in {} is for a different model shape", dir.display());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("state.json"))
            .map_err(|e| Error::new(format!("cannot read checkpoint state: {e}")))?,
    )
    .map_err(|e| Error::new(format!("checkpoint state.json: {e}")))?;
    let step = state["step"].as_u64().ok_or_else(|| Error::new("checkpoint state.json lacks step"))? as usize;
    let t = state["adam_t"].as_u64().unwrap_or(step as u64) as u32;
    let bytes = std::fs::read(dir.join("optimizer.safetensors"))
        .map_err(|e| Error::new(format!("cannot read optimizer state: {e}")))?;
    let tensors = read_safetensors_f32(&bytes)?;
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.clone())
            .ok_or_else(|| Error::new(format!("optimizer state lacks {name}")))
    };
    trainer.restore(&model.params, &get("m")?, &get("v")?, t, step)?;
    Ok(step)
}

pub(super) fn pretrain(a: PretrainArgs) -> Result<()> {
    let train = encode(&read_text_file(&a.data)?);
    let val = encode(&read_text_file(&a.val)?);
    ensure!(a.batch >= 1 && a.seq >= 1 && a.seq <= a.ctx, "need 1 ≤ seq ≤ ctx and batch ≥ 1");
    let cfg = ModelConfig::bytes(a.layers, a.heads, a.embd, a.ctx)?;
    let optim = OptimConfig { warmup: a.warmup, ..OptimConfig::with_defaults(a.lr, a.steps) };
    let mut trainer = Trainer::new(Gpt2::init(cfg, a.seed), Method::Full, Storage::FP32, None, optim.clone(), a.seed)?;
    let ckpt = a.out.join("checkpoint");
    let start = if ckpt.join("state.json").exists() { load_checkpoint(&ckpt, &mut trainer)? } else { 0 };
    let gpu = match super::commands::resolve_gpu(&a.backend)? {
        Some(g) => {
            let gt =
                GpuTrainer::new(g, &trainer.model, Method::Full, Storage::FP32, None, optim, a.seed, a.batch, a.seq)?;
            ensure!(start == 0, "resuming a checkpoint on the GPU backend is not supported yet; use --backend cpu");
            Some(gt)
        }
        None => None,
    };
    let mut gpu = gpu;
    let eval_slice = &val[..val.len().min(a.eval_bytes)];
    if !a.json {
        println!(
            "pretraining {} parameters from step {start} ({})",
            trainer.model.params.len(),
            if gpu.is_some() { "gpu" } else { "cpu" }
        );
    }
    let t0 = Instant::now();
    for step in start..a.steps {
        let (x, y) = batch_at(&train, a.batch, a.seq, a.seed, step)?;
        let ts = Instant::now();
        let s = match &mut gpu {
            Some(g) => pollster::block_on(g.step(&x, &y))?,
            None => trainer.step(&x, &y, a.batch, a.seq),
        };
        ensure!(s.loss.is_finite(), "training diverged at step {step}; try a lower learning rate than {}", a.lr);
        let last = step + 1 == a.steps;
        let mut line = json!({"step": step, "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm, "ms": ts.elapsed().as_secs_f64() * 1e3,
            "elapsed_s": t0.elapsed().as_secs_f64()});
        if (step + 1) % a.eval_every == 0 || last {
            if let Some(g) = &gpu {
                let p = pollster::block_on(g.trainable_params())?;
                trainer.trainable_params_mut().copy_from_slice(&p);
            }
            line["val_loss"] = json!(eval_loss(&trainer.model, None, eval_slice).0);
        }
        if (step + 1) % a.checkpoint_every == 0 && gpu.is_none() {
            save_checkpoint(&ckpt, &trainer, step + 1)?;
        }
        if a.json || line.get("val_loss").is_some() || step % 50 == 0 {
            println!("{line}");
        }
    }
    if let Some(g) = &gpu {
        let p = pollster::block_on(g.trainable_params())?;
        trainer.trainable_params_mut().copy_from_slice(&p);
    }
    save_checkpoint(&ckpt, &trainer, a.steps)?;
    let (full_val, tokens) = eval_loss(&trainer.model, None, &val);
    save_model_dir(&trainer.model, &a.out, StoreDtype::F16)?;
    // The shipped model is fp16: report the loss of what was written.
    let shipped = load_model_dir(&a.out)?;
    let (shipped_val, _) = eval_loss(&shipped, None, &val);
    let summary = json!({"val_loss": full_val, "val_loss_fp16": shipped_val, "val_tokens": tokens, "steps": a.steps,
        "tokens_seen": a.steps * a.batch * a.seq, "seconds": t0.elapsed().as_secs_f64(), "out": a.out.display().to_string()});
    println!("{summary}");
    Ok(())
}
