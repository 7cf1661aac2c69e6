//! `qlora evidence`: the grid behind the README's tables — for each generated task, full fine-tuning once, LoRA on an
//! fp32 base and QLoRA on nf4 and nf4 + double quantization at each rank, all for the same number of steps from the
//! same seed. Each run is the page's own `run::Run` (same data, same validation), so page and README agree.

use super::args::{BackendArgs, BackendChoice};
use super::commands::resolve_gpu;
use crate::data::tasks::Task;
use crate::model::load_model_dir;
use crate::quant::{Format, Storage};
use crate::run::{Run, Settings};
use crate::web::accounting_of;
use crate::{ensure, Error, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub(super) struct EvidenceArgs {
    #[arg(long)]
    model: PathBuf,
    /// Directory for results.json, results.md and accuracy.svg. Rows already there from the same settings are kept,
    /// so an interrupted grid resumes where it stopped.
    #[arg(long)]
    out: PathBuf,
    /// Generated tasks, comma-separated.
    #[arg(long, default_value = "even,add,reverse")]
    tasks: String,
    #[arg(long, default_value = "1,2,4,8,16,64")]
    ranks: String,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Learning rate of LoRA and QLoRA.
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Learning rate of full fine-tuning (every weight moves, so a tenth of the adapters' rate).
    #[arg(long, default_value_t = 3e-4)]
    full_lr: f32,
    /// LoRA alpha, fixed across ranks as in the LoRA paper (so the scaling α/r falls as r grows).
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// Held-out examples scored for accuracy.
    #[arg(long, default_value_t = 100)]
    eval_examples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The grid CI runs: one task, ranks 1 and 8, fp32 and nf4 only, 30 steps.
    #[arg(long)]
    reduced: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    task: String,
    method: String,
    rank: Option<usize>,
    base: String,
    trainable: u64,
    percent: f64,
    memory_bytes: u64,
    val_loss_before: f64,
    val_loss: f64,
    accuracy_before: f64,
    accuracy: f64,
    seconds: f64,
}

fn parse_list(s: &str, what: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|p| p.trim().parse::<usize>().map_err(|_| Error::new(format!("{what}: {p:?} is not a whole number"))))
        .collect()
}

pub(super) fn evidence(a: EvidenceArgs) -> Result<()> {
    let base = load_model_dir(&a.model)?;
    let (tasks, ranks, steps): (Vec<Task>, Vec<usize>, usize) = if a.reduced {
        (vec![Task::Even], vec![1, 8], 30)
    } else {
        let tasks = a.tasks.split(',').map(|t| Task::parse(t.trim())).collect::<Result<Vec<_>>>()?;
        (tasks, parse_list(&a.ranks, "--ranks")?, a.steps)
    };
    ensure!(!tasks.is_empty() && !ranks.is_empty(), "give at least one task and one rank");
    let formats: &[(&str, bool)] = if a.reduced { &[("nf4", false)] } else { &[("nf4", false), ("nf4", true)] };
    let gpu_wanted = resolve_gpu(a.backend.backend)?.is_some();
    let mut configs: Vec<Settings> = Vec::new();
    for task in &tasks {
        let common = Settings {
            task: task.name().into(),
            steps,
            batch: a.batch,
            seq: a.seq,
            seed: a.seed,
            alpha: a.alpha,
            lr: a.lr,
            ..Default::default()
        };
        configs.push(Settings {
            method: "full".into(),
            format: "fp32".into(),
            dq: false,
            lr: a.full_lr,
            ..common.clone()
        });
        for &r in &ranks {
            configs.push(Settings { method: "lora".into(), r, format: "fp32".into(), dq: false, ..common.clone() });
            for &(f, dq) in formats {
                configs.push(Settings { method: "qlora".into(), r, format: f.into(), dq, ..common.clone() });
            }
        }
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::new(format!("cannot create {}: {e}", a.out.display())))?;
    let done = finished_rows(&a, steps, gpu_wanted);
    let mut rows = Vec::new();
    for (i, s) in configs.iter().enumerate() {
        let key = (s.task.clone(), s.method.clone(), (s.method != "full").then_some(s.r), s.base_label());
        if let Some(row) = done.iter().find(|r| (r.task.clone(), r.method.clone(), r.rank, r.base.clone()) == key) {
            eprintln!("[{}/{}] {} {} {}: kept from {}", i + 1, configs.len(), key.0, key.1, key.3, a.out.display());
            rows.push(row.clone());
            continue;
        }
        let t0 = Instant::now();
        let gpu = if gpu_wanted { resolve_gpu(BackendChoice::Gpu)? } else { None };
        let mut run = Run::new_with_examples(&base, s.clone(), None, gpu, a.eval_examples)?;
        let before = pollster::block_on(run.validate())?;
        while !run.finished() {
            // One step stays in flight on the GPU until the last (validation only comes after it).
            let st = pollster::block_on(run.step(true))?;
            // A lost GPU device moves the run to the CPU executor; say so, since the row's timing changes with it.
            if let Some(notice) = run.take_notice() {
                eprintln!("{} r={}: {notice}", s.method, s.r);
            }
            ensure!(
                st.loss.is_finite(),
                "{} r={} diverged at step {} (loss {}); lower the learning rate",
                s.method,
                s.r,
                st.step,
                st.loss
            );
        }
        let after = pollster::block_on(run.validate())?;
        let acc = accounting_of(s, &base.config)?;
        let row = Row {
            task: s.task.clone(),
            method: s.method.clone(),
            rank: (s.method != "full").then_some(s.r),
            base: s.base_label(),
            trainable: acc.trainable,
            percent: acc.percent,
            memory_bytes: acc.memory.total,
            val_loss_before: before.val_loss,
            val_loss: after.val_loss,
            accuracy_before: before.accuracy.unwrap_or(0.0),
            accuracy: after.accuracy.unwrap_or(0.0),
            seconds: t0.elapsed().as_secs_f64(),
        };
        eprintln!(
            "[{}/{}] {} {} r={} {}: val {:.3} → {:.3}, accuracy {:.0}% → {:.0}% ({:.0} s, {})",
            i + 1,
            configs.len(),
            row.task,
            row.method,
            row.rank.map_or("-".into(), |r| r.to_string()),
            row.base,
            row.val_loss_before,
            row.val_loss,
            100.0 * row.accuracy_before,
            100.0 * row.accuracy,
            row.seconds,
            run.backend()
        );
        rows.push(row);
        // Written after every run, so a long grid that is stopped still leaves its finished rows.
        write_results(&a, &rows, &ranks, steps, gpu_wanted)?;
    }
    println!("wrote {}/results.json, results.md and accuracy.svg ({} runs)", a.out.display(), rows.len());
    Ok(())
}

/// Rows of an earlier run of the same grid settings in the output directory (a long grid resumes where it stopped;
/// rows made with other settings are never mixed in).
fn finished_rows(a: &EvidenceArgs, steps: usize, gpu: bool) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(a.out.join("results.json")) else { return Vec::new() };
    let Ok(old) = serde_json::from_str::<serde_json::Value>(&text) else { return Vec::new() };
    if old["settings"] != settings_json(a, steps, gpu) {
        return Vec::new();
    }
    serde_json::from_value(old["rows"].clone()).unwrap_or_default()
}

fn settings_json(a: &EvidenceArgs, steps: usize, gpu: bool) -> serde_json::Value {
    serde_json::json!({
        "model": a.model.display().to_string(), "steps": steps, "batch": a.batch, "seq": a.seq, "lr": a.lr,
        "full_lr": a.full_lr, "alpha": a.alpha, "eval_examples": a.eval_examples, "seed": a.seed,
        "backend": if gpu { "gpu" } else { "cpu" },
    })
}

fn write_results(a: &EvidenceArgs, rows: &[Row], ranks: &[usize], steps: usize, gpu_wanted: bool) -> Result<()> {
    let meta = settings_json(a, steps, gpu_wanted);
    let json = serde_json::json!({"settings": meta, "rows": rows});
    let write = |name: &str, text: String| {
        let p = a.out.join(name);
        std::fs::write(&p, text).map_err(|e| Error::new(format!("cannot write {}: {e}", p.display())))
    };
    write("results.json", serde_json::to_string_pretty(&json).expect("serializable"))?;
    write("results.md", markdown(rows, &meta))?;
    write("accuracy.svg", plot(rows, ranks)?)?;
    Ok(())
}

/// A setting stored from an f32, shown at f32 precision (0.003, not 0.003000000026).
fn as_f32(v: &serde_json::Value) -> f32 {
    v.as_f64().unwrap_or(f64::NAN) as f32
}

/// One table per task: rows by method/base, rank columns for accuracy and validation loss.
fn markdown(rows: &[Row], meta: &serde_json::Value) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Settings: {} steps, batch {} × {} tokens, LoRA/QLoRA lr {}, full lr {}, α = {} (fixed across ranks), seed {}, \
         accuracy on {} held-out examples (greedy, exact match), {} executor.\n",
        meta["steps"],
        meta["batch"],
        meta["seq"],
        as_f32(&meta["lr"]),
        as_f32(&meta["full_lr"]),
        as_f32(&meta["alpha"]),
        meta["seed"],
        meta["eval_examples"],
        meta["backend"].as_str().unwrap_or("?")
    );
    let mut tasks: Vec<&str> = rows.iter().map(|r| r.task.as_str()).collect();
    tasks.dedup();
    for task in tasks {
        let _ = writeln!(md, "### {task}\n");
        let _ = writeln!(md, "| method | base | r | trainable | % of model | memory (theory) | val loss | accuracy |");
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
        for r in rows.iter().filter(|r| r.task == task) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.3}% | {:.2} MiB | {:.3} → {:.3} | {:.0}% → {:.0}% |",
                r.method,
                r.base,
                r.rank.map_or("–".into(), |x| x.to_string()),
                r.trainable,
                r.percent,
                r.memory_bytes as f64 / (1 << 20) as f64,
                r.val_loss_before,
                r.val_loss,
                100.0 * r.accuracy_before,
                100.0 * r.accuracy
            );
        }
        md.push('\n');
    }
    md
}

/// Accuracy against rank, one panel per task: LoRA (fp32 base), QLoRA (nf4, nf4 + dq) as lines, full fine-tuning
/// as a dashed level.
fn plot(rows: &[Row], ranks: &[usize]) -> Result<String> {
    use plotters::prelude::*;
    let mut tasks: Vec<&str> = rows.iter().map(|r| r.task.as_str()).collect();
    tasks.dedup();
    let mut svg = String::new();
    {
        let width = 360 * tasks.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (width.max(360), 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| Error::new(e.to_string()))?;
        let panels = root.split_evenly((1, tasks.len()));
        let max_r = *ranks.iter().max().unwrap_or(&64) as f64;
        // Okabe–Ito colours, as on the page.
        let (fp32, nf4, nf4dq) = (Storage::FP32, Storage::new(Format::Nf4, false)?, Storage::new(Format::Nf4, true)?);
        let series = [
            ("lora", fp32.label(), RGBColor(0x00, 0x72, 0xB2), format!("LoRA, {} base", fp32.label())),
            ("qlora", nf4.label(), RGBColor(0xE6, 0x9F, 0x00), format!("QLoRA, {}", nf4.label())),
            ("qlora", nf4dq.label(), RGBColor(0x00, 0x9E, 0x73), format!("QLoRA, {}", nf4dq.label())),
        ];
        for (panel, task) in panels.iter().zip(&tasks) {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("task: {task}"), ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d((0.8f64..max_r * 1.25).log_scale(), 0.0f64..100.0)
                .map_err(|e| Error::new(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("rank r")
                .y_desc("accuracy %")
                .draw()
                .map_err(|e| Error::new(e.to_string()))?;
            for (method, base, color, label) in &series {
                let (method, color) = (*method, *color);
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.task == *task && r.method == method && r.base == *base)
                    .filter_map(|r| r.rank.map(|k| (k as f64, 100.0 * r.accuracy)))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| Error::new(e.to_string()))?
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(|e| Error::new(e.to_string()))?;
            }
            if let Some(full) = rows.iter().find(|r| r.task == *task && r.method == "full") {
                let y = 100.0 * full.accuracy;
                let black = RGBColor(0, 0, 0);
                chart
                    .draw_series(DashedLineSeries::new(vec![(0.8, y), (max_r * 1.25, y)], 6, 4, black.stroke_width(1)))
                    .map_err(|e| Error::new(e.to_string()))?
                    .label("full fine-tuning")
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], black.stroke_width(1)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(|e| Error::new(e.to_string()))?;
        }
        root.present().map_err(|e| Error::new(e.to_string()))?;
    }
    Ok(svg)
}
