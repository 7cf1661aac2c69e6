//! The CLI's GPU backend (on lavapipe in CI): the same training losses and the same generated text as the CPU
//! backend, and the matmul benchmark's output.
#![cfg(not(target_arch = "wasm32"))]

use serde_json::Value;
use std::process::Command;

fn qlora(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_qlora")).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn fixtures(p: &str) -> String {
    format!("{}/tests/fixtures/{p}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn finetune_and_generate_agree_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.txt");
    std::fs::write(&data, "Anna sat by the window and counted the boats in the harbour. ".repeat(30)).unwrap();
    let run = |backend: &str| {
        let out = dir.path().join(backend).display().to_string();
        let args = [
            "finetune",
            "--model",
            &fixtures("hf-tiny"),
            "--data",
            data.to_str().unwrap(),
            "--method",
            "qlora",
            "--format",
            "nf4",
            "--double-quant",
            "--targets",
            "all",
            "--rank",
            "4",
            "--steps",
            "12",
            "--lr",
            "5e-3",
            "--batch",
            "2",
            "--seq",
            "16",
            "--dropout",
            "0.1",
            "--backend",
            backend,
            "--out",
            &out,
            "--json",
        ];
        qlora(&args)
    };
    let (cpu, gpu) = (run("cpu"), run("gpu"));
    assert_eq!(gpu.last().unwrap()["backend"], "gpu");
    let steps = |lines: &[serde_json::Value]| -> Vec<serde_json::Value> {
        lines.iter().filter(|l| l.get("step").is_some()).cloned().collect()
    };
    let (cpu_steps, gpu_steps) = (steps(&cpu), steps(&gpu));
    assert!(!cpu_steps.is_empty() && cpu_steps.len() == gpu_steps.len(), "{cpu_steps:?} against {gpu_steps:?}");
    for (c, g) in cpu_steps.iter().zip(&gpu_steps) {
        assert_eq!(c["step"], g["step"]);
        let (lc, lg) = (c["loss"].as_f64().unwrap(), g["loss"].as_f64().unwrap());
        assert!((lc - lg).abs() <= 1e-3, "step {}: cpu {lc} gpu {lg}", c["step"]);
        // Adam's update is blind to a gradient's scale; the norm is not.
        let (nc, ng) = (c["grad_norm"].as_f64().unwrap(), g["grad_norm"].as_f64().unwrap());
        assert!((nc - ng).abs() <= 1e-3 * nc.max(1.0), "step {}: grad norm cpu {nc} gpu {ng}", c["step"]);
    }
    let gen = |backend: &str| {
        let args = [
            "generate",
            "--model",
            &fixtures("hf-tiny"),
            "--adapter",
            &fixtures("peft-adapter"),
            "--prompt",
            "To be",
            "--tokens",
            "40",
            "--temperature",
            "0.8",
            "--top-k",
            "20",
            "--seed",
            "3",
            "--backend",
            backend,
            "--json",
        ];
        qlora(&args)[0]["text"].as_str().unwrap().to_string()
    };
    assert_eq!(gen("gpu"), gen("cpu"));
}

#[test]
fn matmul_benchmark_reports_both_kernels() {
    let lines = qlora(&["bench", "--matmul", "--backend", "gpu", "--steps", "1", "--json"]);
    let kernels: Vec<&str> = lines.iter().map(|l| l["kernel"].as_str().unwrap()).collect();
    assert_eq!(kernels, ["matmul_f32", "matmul_nf4", "matmul_f32", "matmul_nf4"]);
    assert!(lines.iter().all(|l| l["gflops"].as_f64().unwrap() > 0.0));
}

/// `--profile` counts a step on paper (`--time-kernels`: and times each of its dispatches alone on this adapter): the
/// step's row is its kernels' totals, every kernel took time, and the least a step needs (the accounting's count,
/// independent of the kernels) is below what the dispatches do on both paper GPUs. That the matrix products' FLOPs
/// are the accounting's is `gpu_training.rs`' `a_steps_matmul_dispatches_do_the_products_the_accounting_counts`.
#[test]
fn the_gpu_profile_adds_up_and_stays_above_the_least_a_step_needs() {
    let args =
        ["bench", "--backend", "gpu", "--profile", "--layers", "2", "--embd", "64", "--batch", "2", "--seq", "16"];
    let lines = qlora(&[&args[..], &["--time-kernels", "--steps", "2", "--json"]].concat());
    let p = &lines[0];
    let kernels = p["kernels"].as_array().unwrap();
    for key in ["dispatches", "flops", "read", "written"] {
        let sum: u64 = kernels.iter().map(|k| k[key].as_u64().unwrap()).sum();
        assert_eq!(sum, p["step"][key].as_u64().unwrap(), "{key}");
    }
    let measured: Vec<f64> = kernels.iter().map(|k| k["measured_ms"].as_f64().unwrap()).collect();
    assert!(measured.iter().all(|ms| *ms > 0.0), "{measured:?}");
    assert!(p["step"]["measured_ms"].as_f64().unwrap() > 0.0);
    let names: Vec<&str> = kernels.iter().map(|k| k["kernel"].as_str().unwrap()).collect();
    for k in ["matmul_dequant forward", "matmul_dequant backward", "attention forward", "adamw update"] {
        assert!(names.contains(&k), "{k} in {names:?}");
    }
    assert!(p["least"]["flops"].as_f64().unwrap() <= p["step"]["flops"].as_f64().unwrap());
    for i in 0..2 {
        let (ours, least) =
            (p["step"]["roofline_ms"][i].as_f64().unwrap(), p["least"]["roofline_ms"][i].as_f64().unwrap());
        assert!(least > 0.0 && ours >= least, "{ours} ms against the least {least} ms");
    }
}

#[test]
fn generation_benchmark_reports_tokens_per_second_on_both_backends() {
    for backend in ["gpu", "cpu"] {
        let args = ["bench", "--generate", "--backend", backend, "--layers", "1", "--heads", "2", "--embd", "16"];
        let lines =
            qlora(&[&args[..], &["--ctx", "32", "--seq", "8", "--format", "nf4", "--steps", "1", "--json"]].concat());
        let l = &lines[0];
        assert_eq!(
            (l["backend"].as_str(), l["tokens"].as_u64(), l["format"].as_str()),
            (Some(backend), Some(8), Some("nf4"))
        );
        assert!(l["generate_tokens_per_s"].as_f64().unwrap() > 0.0, "{l}");
    }
}

#[test]
fn eval_agrees_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer")
        .unwrap();
    let eval = |backend: &str| {
        let args = [
            "eval",
            "--model",
            &fixtures("hf-tiny"),
            "--adapter",
            &fixtures("peft-adapter"),
            "--format",
            "nf4",
            "--text-file",
            text.to_str().unwrap(),
            "--backend",
            backend,
            "--json",
        ];
        qlora(&args)[0].clone()
    };
    let (c, g) = (eval("cpu"), eval("gpu"));
    assert_eq!(c["tokens"], g["tokens"]);
    assert!((c["loss"].as_f64().unwrap() - g["loss"].as_f64().unwrap()).abs() < 1e-5, "{c} vs {g}");
}

/// Pretraining on the GPU continues its checkpoint exactly (the run's one checkpoint format holds what the GPU
/// trainer needs), and a GPU checkpoint continues on the CPU from the same parameters.
#[test]
fn pretrain_resumes_its_checkpoint_on_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(
        &text,
        "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n".repeat(20),
    )
    .unwrap();
    let run = |out: &str, steps: &str, backend: &str| {
        let (text, out) = (text.display().to_string(), dir.path().join(out).display().to_string());
        qlora(&[
            "pretrain",
            "--data",
            &text,
            "--val",
            &text,
            "--layers",
            "1",
            "--heads",
            "2",
            "--embd",
            "16",
            "--ctx",
            "32",
            "--steps",
            steps,
            "--warmup",
            "2",
            "--batch",
            "2",
            "--seq",
            "16",
            "--eval-every",
            "3",
            "--eval-bytes",
            "200",
            "--checkpoint-every",
            "3",
            "--backend",
            backend,
            "--out",
            &out,
            "--json",
        ])
    };
    let loss = |lines: &[Value], step: u64| lines.iter().find(|l| l["step"] == step).unwrap()["loss"].as_f64().unwrap();
    let straight = run("a", "6", "gpu");
    run("b", "3", "gpu");
    let resumed = run("b", "6", "gpu");
    assert!(resumed.iter().all(|l| l.get("step").is_none_or(|s| s.as_u64().unwrap() >= 3)), "resumed: {resumed:?}");
    for step in 3..6 {
        assert_eq!(loss(&straight, step), loss(&resumed, step), "step {step}");
    }
    // On the CPU from the GPU's checkpoint: the same parameters, so the first loss agrees to float rounding.
    run("c", "3", "gpu");
    let on_cpu = run("c", "6", "cpu");
    let (g, c) = (loss(&straight, 3), loss(&on_cpu, 3));
    assert!((g - c).abs() < 1e-4 * g, "gpu {g} vs cpu {c} at step 3");
}

/// A GPT-2 with the real 50,257-token vocabulary (saved by transformers, tests/fixtures/hf-gpt2, with GPT-2's
/// tokenizer files beside it): the GPU scores it as the CPU does, through NF4 + double quantization and the adapter
/// PEFT checked, and its greedy generation gives transformers' ids on both backends.
#[test]
fn a_bpe_model_scores_and_generates_alike_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures(&format!("hf-gpt2/{f}")), dir.path().join(f)).unwrap();
    }
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(format!("{}/assets/gpt2/{f}", env!("CARGO_MANIFEST_DIR")), dir.path().join(f)).unwrap();
    }
    let model = dir.path().to_str().unwrap();
    let expected: Value = serde_json::from_slice(&std::fs::read(fixtures("hf-gpt2/expected.json")).unwrap()).unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, expected["text"].as_str().unwrap()).unwrap();
    let adapter = fixtures("hf-gpt2/adapter");
    let eval = |backend: &str| {
        let args = ["eval", "--model", model, "--adapter", &adapter, "--format", "nf4", "--double-quant"];
        qlora(&[&args[..], &["--text-file", text.to_str().unwrap(), "--backend", backend, "--json"]].concat())[0]
            .clone()
    };
    let (c, g) = (eval("cpu"), eval("gpu"));
    assert_eq!(c["tokens"], g["tokens"]);
    assert!((c["loss"].as_f64().unwrap() - g["loss"].as_f64().unwrap()).abs() < 1e-4, "{c} vs {g}");
    for backend in ["cpu", "gpu"] {
        let prompt = expected["prompt"].as_str().unwrap();
        let args = ["generate", "--model", model, "--prompt", prompt, "--tokens", "8", "--temperature", "0"];
        let out = qlora(&[&args[..], &["--backend", backend, "--json"]].concat());
        assert_eq!(out[0]["ids"], expected["greedy_ids"], "{backend}");
    }
}
