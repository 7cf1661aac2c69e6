//! `qlora pretrain`: full-parameter training of a byte-level GPT-2 from scratch — a [`Run`] of full fine-tuning on a
//! freshly initialised model, over a corpus with its own held-out text — with periodic validation, one JSON line per
//! logged step and the run's checkpoint ([`Checkpoint`]) in OUT/checkpoint, which a later call continues from.

use super::PretrainArgs;
use crate::cpu::eval_loss;
use crate::data::tasks::FineTuneData;
use crate::data::{read_text_file, Split};
use crate::model::{create_dir, load_model_dir, save_model_dir, write_file, Gpt2, ModelConfig, StoreDtype};
use crate::run::{Checkpoint, Limits, Run, Settings};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// The checkpoint file inside OUT/checkpoint.
const STATE_FILE: &str = "state.safetensors";

/// Full fine-tuning of every weight, fp32, on the user's corpus (`text`), with the command's recipe.
fn pretrain_settings(a: &PretrainArgs) -> Settings {
    Settings {
        method: "full".into(),
        format: "fp32".into(),
        dq: false,
        lr: a.lr,
        batch: a.batch,
        seq: a.seq,
        steps: a.steps,
        seed: a.seed,
        task: "text".into(),
        warmup: Some(a.warmup),
        ..Settings::default()
    }
}

fn save_checkpoint(dir: &Path, run: &mut Run) -> Result<()> {
    let state = pollster::block_on(run.checkpoint())?.to_bytes()?;
    create_dir(dir)?;
    write_file(&dir.join(STATE_FILE), &state)
}

fn load_checkpoint(dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
    Checkpoint::from_bytes(&bytes).map(Some).map_err(|e| e.context(path.display()))
}

pub(super) fn pretrain(a: PretrainArgs) -> Result<()> {
    // Pretraining makes byte-level models (the shipped ones).
    let train = Tokenizer::Bytes.encode(&read_text_file(&a.data)?);
    let val = Tokenizer::Bytes.encode(&read_text_file(&a.val)?);
    let cfg = ModelConfig::bytes(a.layers, a.heads, a.embd, a.ctx)?;
    let base = Gpt2::init(cfg, a.seed);
    let data = FineTuneData { task: None, split: Split { train, val: val.clone() }, val_examples: Vec::new() };
    let gpu = super::commands::resolve_gpu(a.backend.backend)?;
    let mut run = Run::start(&base, pretrain_settings(&a), &Limits::CLI, data, gpu)?;
    let ckpt = a.out.join("checkpoint");
    if let Some(saved) = load_checkpoint(&ckpt)? {
        run.continue_from(&saved).map_err(|e| e.context(ckpt.display()))?;
    }
    let start = run.step_index();
    let eval_slice = &val[..val.len().min(a.eval_bytes)];
    if !a.output.json {
        println!("pretraining {} parameters from step {start} ({})", base.params.len(), run.backend());
    }
    let every = |n: usize, step: usize| n > 0 && (step + 1) % n == 0;
    let t0 = Instant::now();
    let mut ts = Instant::now();
    for step in start..a.steps {
        // A step whose state is read (validation, checkpoint) is awaited before the next is submitted.
        let reads_state = every(a.eval_every, step) || every(a.checkpoint_every, step) || step + 1 == a.steps;
        let s = pollster::block_on(run.step(!reads_state))?;
        let mut line = json!({"step": s.step, "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm,
            "ms": ts.elapsed().as_secs_f64() * 1e3, "elapsed_s": t0.elapsed().as_secs_f64()});
        ts = Instant::now();
        if every(a.eval_every, step) || step + 1 == a.steps {
            pollster::block_on(run.sync())?;
            line["val_loss"] = json!(eval_loss(run.trained().0, None, eval_slice).0);
        }
        if every(a.checkpoint_every, step) {
            save_checkpoint(&ckpt, &mut run)?;
        }
        if a.output.json || line.get("val_loss").is_some() || step % 50 == 0 {
            println!("{line}");
        }
    }
    save_checkpoint(&ckpt, &mut run)?;
    let model = run.trained().0;
    let (full_val, tokens) = eval_loss(model, None, &val);
    save_model_dir(model, &a.out, StoreDtype::F16)?;
    // The shipped model is fp16: report the loss of what was written.
    let shipped = load_model_dir(&a.out)?;
    let (shipped_val, _) = eval_loss(&shipped, None, &val);
    let summary = json!({"val_loss": full_val, "val_loss_fp16": shipped_val, "val_tokens": tokens, "steps": a.steps,
        "tokens_seen": a.steps * a.batch * a.seq, "seconds": t0.elapsed().as_secs_f64(), "out": a.out.display().to_string()});
    println!("{summary}");
    Ok(())
}
