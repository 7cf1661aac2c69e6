//! The `qlora` CLI end to end: the papers' numbers from `params`/`memory`, training that overfits, the PEFT adapter
//! round trip (finetune → eval → merge), and exit status 2 with a one-line message for bad input.
#![cfg(not(target_arch = "wasm32"))]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn qlora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qlora")).args(args).output().expect("qlora runs")
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "qlora failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn one(args: &[&str]) -> Value {
    json_lines(&qlora(args)).pop().expect("a line")
}

#[test]
fn params_reproduce_lora_paper_and_peft() {
    let gpt3 = |targets: &str, r: &str| {
        one(&["params", "--preset", "gpt3-175b", "--targets", targets, "--rank", r, "--json"])["trainable"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(gpt3("v", "2"), 4_718_592);
    assert_eq!(gpt3("q,v", "8"), 37_748_736);
    assert_eq!(gpt3("q,k,v,o", "64"), 603_979_776);
    let peft = one(&["params", "--preset", "gpt2", "--targets", "qkv", "--rank", "8", "--json"]);
    assert_eq!(peft["trainable"], 294_912);
    assert_eq!(peft["total"], 124_734_720);
    assert_eq!(format!("{:.4}", peft["percent"].as_f64().unwrap()), "0.2364");
}

#[test]
fn memory_reproduces_qlora_claims() {
    let gb = 1e9;
    let full = one(&[
        "memory",
        "--preset",
        "llama-65b",
        "--method",
        "full",
        "--dtype",
        "bf16",
        "--seq",
        "512",
        "--checkpointing",
        "--json",
    ]);
    assert!(full["total"].as_f64().unwrap() > 780.0 * gb, "{full}");
    let q = one(&[
        "memory",
        "--preset",
        "llama-65b",
        "--method",
        "qlora",
        "--format",
        "nf4",
        "--double-quant",
        "--rank",
        "64",
        "--targets",
        "all",
        "--dtype",
        "bf16",
        "--batch",
        "1",
        "--seq",
        "512",
        "--checkpointing",
        "--json",
    ]);
    let total = q["total"].as_f64().unwrap();
    assert!(total < 48.0 * (1u64 << 30) as f64, "QLoRA 65B must fit a 48 GB GPU: {q}");
    let cats = ["base_weights", "quant_constants", "adapters", "gradients", "optimizer", "activations"];
    assert_eq!(cats.iter().map(|c| q[c].as_u64().unwrap()).sum::<u64>() as f64, total);
    // Double quantization shrinks the constants from 0.5 to about 0.127 bits per quantized parameter.
    let plain = one(&[
        "memory",
        "--preset",
        "llama-65b",
        "--method",
        "qlora",
        "--rank",
        "64",
        "--targets",
        "all",
        "--dtype",
        "bf16",
        "--json",
    ]);
    let ratio = q["quant_constants"].as_f64().unwrap() / plain["quant_constants"].as_f64().unwrap();
    assert!((ratio - 0.127 / 0.5).abs() < 0.01, "constants ratio {ratio}");
}

fn write_text(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn losses(lines: &[Value]) -> Vec<f64> {
    lines.iter().filter_map(|l| l.get("loss").and_then(Value::as_f64)).collect()
}

#[test]
fn training_overfits_and_adapters_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    assert!(qlora(&[
        "init",
        "--layers",
        "2",
        "--heads",
        "4",
        "--embd",
        "64",
        "--ctx",
        "64",
        "--seed",
        "1",
        "--out",
        &d("m0")
    ])
    .status
    .success());
    let sentence = write_text(dir.path(), "rep.txt", &"The quick brown fox jumps over the lazy dog. ".repeat(200));

    // Full fine-tuning from a random model: the loss falls under a quarter of its first value within 300 steps.
    let full = json_lines(&qlora(&[
        "finetune",
        "--model",
        &d("m0"),
        "--data",
        &sentence,
        "--method",
        "full",
        "--steps",
        "300",
        "--lr",
        "3e-3",
        "--batch",
        "4",
        "--seq",
        "32",
        "--out",
        &d("full"),
        "--json",
    ]));
    let l = losses(&full);
    assert!(l[l.len() - 1] < l[0] / 4.0, "full: {} → {}", l[0], l[l.len() - 1]);

    // A base first trained briefly on other text, then QLoRA (r=8, all targets, nf4) on the sentence: under half.
    let other = write_text(
        dir.path(),
        "other.txt",
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap().repeat(4),
    );
    assert!(qlora(&[
        "finetune",
        "--model",
        &d("m0"),
        "--data",
        &other,
        "--method",
        "full",
        "--steps",
        "150",
        "--lr",
        "3e-3",
        "--batch",
        "8",
        "--seq",
        "64",
        "--out",
        &d("pre"),
        "--json"
    ])
    .status
    .success());
    let anna = write_text(
        dir.path(),
        "anna.txt",
        &"Anna sat by the window and counted the boats in the harbour. ".repeat(300),
    );
    let q = json_lines(&qlora(&[
        "finetune",
        "--model",
        &d("pre"),
        "--data",
        &anna,
        "--method",
        "qlora",
        "--format",
        "nf4",
        "--targets",
        "all",
        "--rank",
        "8",
        "--alpha",
        "16",
        "--steps",
        "300",
        "--lr",
        "3e-3",
        "--batch",
        "4",
        "--seq",
        "32",
        "--out",
        &d("qa"),
        "--json",
    ]));
    let l = losses(&q);
    assert!(l[l.len() - 1] < l[0] / 2.0, "qlora: {} → {}", l[0], l[l.len() - 1]);

    // The written adapter is PEFT-shaped and reproduces the validation loss the run reported.
    let summary = q.last().unwrap();
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("qa/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["fan_in_fan_out"], true);
    assert_eq!(cfg["rank_pattern"]["c_attn"], 24, "q, k, v at r=8 export as one rank-24 LoRA on c_attn");
    let val_text = &std::fs::read_to_string(&anna).unwrap();
    let val = write_text(dir.path(), "val.txt", &val_text[val_text.len() - val_text.len() / 10..]);
    let eval =
        one(&["eval", "--model", &d("pre"), "--adapter", &d("qa"), "--format", "nf4", "--text-file", &val, "--json"]);
    let reported = summary["val_loss"].as_f64().unwrap();
    assert!((eval["loss"].as_f64().unwrap() - reported).abs() < 2e-3 * reported.max(1.0), "{eval} vs {reported}");

    // Merging into deq(W0) gives a plain model with the same loss.
    assert!(qlora(&["merge", "--model", &d("pre"), "--adapter", &d("qa"), "--format", "nf4", "--out", &d("merged")])
        .status
        .success());
    let merged = one(&["eval", "--model", &d("merged"), "--text-file", &val, "--json"]);
    assert!((merged["loss"].as_f64().unwrap() - eval["loss"].as_f64().unwrap()).abs() < 1e-4, "{merged} vs {eval}");

    let generated = one(&[
        "generate",
        "--model",
        &d("pre"),
        "--adapter",
        &d("qa"),
        "--format",
        "nf4",
        "--prompt",
        "Anna",
        "--tokens",
        "20",
        "--json",
    ]);
    assert_eq!(generated["ids"].as_array().unwrap().len(), 20, "{generated}");
    assert!(!generated["text"].as_str().unwrap().is_empty());
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    assert!(qlora(&["init", "--layers", "1", "--heads", "2", "--embd", "16", "--ctx", "16", "--out", &d("m")])
        .status
        .success());
    let text = write_text(dir.path(), "t.txt", &"hello world ".repeat(50));
    std::fs::write(dir.path().join("bad.txt"), [0xff, 0xfe, 0x00]).unwrap();
    std::fs::create_dir(dir.path().join("trunc")).unwrap();
    std::fs::copy(dir.path().join("m/config.json"), dir.path().join("trunc/config.json")).unwrap();
    let full = std::fs::read(dir.path().join("m/model.safetensors")).unwrap();
    std::fs::write(dir.path().join("trunc/model.safetensors"), &full[..full.len() / 2]).unwrap();
    // A header that claims more bytes than the file has; a tensor of a dtype we do not read; a config.json that
    // disagrees with the tensors; an empty text.
    let model_variant = |name: &str, config: Option<String>, safetensors: Vec<u8>| {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        let cfg = config.unwrap_or_else(|| std::fs::read_to_string(dir.path().join("m/config.json")).unwrap());
        std::fs::write(dir.path().join(name).join("config.json"), cfg).unwrap();
        std::fs::write(dir.path().join(name).join("model.safetensors"), safetensors).unwrap();
    };
    let mut long_header = (1u64 << 30).to_le_bytes().to_vec();
    long_header.extend_from_slice(b"{}");
    model_variant("header", None, long_header);
    let i64_header = br#"{"wte.weight":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
    let mut i64_file = (i64_header.len() as u64).to_le_bytes().to_vec();
    i64_file.extend_from_slice(i64_header);
    i64_file.extend_from_slice(&[0u8; 8]);
    model_variant("dtype", None, i64_file);
    let wider =
        std::fs::read_to_string(dir.path().join("m/config.json")).unwrap().replace("\"n_embd\": 16", "\"n_embd\": 32");
    assert!(wider.contains("\"n_embd\": 32"), "{wider}");
    model_variant("shape", Some(wider), full.clone());
    let empty = write_text(dir.path(), "empty.txt", "");
    let finetune = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["finetune", "--model", &d("m"), "--data", &text, "--out", &d("o")].map(String::from).to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["eval".into(), "--model".into(), d("header"), "--text-file".into(), text.clone()], "safetensors"),
        (vec!["eval".into(), "--model".into(), d("dtype"), "--text-file".into(), text.clone()], "I64"),
        (vec!["eval".into(), "--model".into(), d("shape"), "--text-file".into(), text.clone()], "config.json implies"),
        (vec!["eval".into(), "--model".into(), d("m"), "--text-file".into(), empty.clone()], "empty"),
        (finetune(&["--lr=-0.1"]), "learning rate"),
        (finetune(&["--lr", "1e9"]), "learning rate"),
        (finetune(&["--steps", "0"]), "steps"),
        (vec!["bench".into(), "--backend".into(), "cpu".into(), "--memory".into()], "--backend gpu"),
        (vec!["bench".into(), "--backend".into(), "cpu".into(), "--webgpu-limits".into()], "--backend gpu"),
        (vec!["bench".into(), "--backend".into(), "cpu".into(), "--profile".into()], "--backend gpu"),
        (finetune(&["--batch", "0"]), "batch"),
        (finetune(&["--batch", "100000"]), "batch"),
        (
            vec!["finetune".into(), "--model".into(), d("m"), "--task".into(), "sudoku".into(), "--out".into(), d("o")],
            "unknown task",
        ),
        (vec!["finetune".into(), "--model".into(), d("m"), "--out".into(), d("o")], "--data"),
        (vec!["params".into(), "--preset".into(), "gpt2".into(), "--rank".into(), "0".into()], "rank"),
        (vec!["params".into(), "--preset".into(), "gpt5".into()], "preset"),
        (vec!["params".into(), "--preset".into(), "gpt5".into()], "gpt2-medium"),
        (vec!["memory".into(), "--preset".into(), "gpt2".into(), "--dtype".into(), "fp8".into()], "fp32, bf16, fp16"),
        (
            vec![
                "eval".into(),
                "--model".into(),
                d("m"),
                "--text-file".into(),
                text.clone(),
                "--backend".into(),
                "tpu".into(),
            ],
            "gpu, cpu, auto",
        ),
        (vec!["params".into(), "--preset".into(), "gpt2".into(), "--targets".into(), "q,zz".into()], "target"),
        (vec!["eval".into(), "--model".into(), d("nope"), "--text-file".into(), text.clone()], "cannot read"),
        (vec!["eval".into(), "--model".into(), d("trunc"), "--text-file".into(), text.clone()], "safetensors"),
        (vec!["eval".into(), "--model".into(), d("m"), "--text-file".into(), d("bad.txt")], "UTF-8"),
        (
            vec![
                "finetune".into(),
                "--model".into(),
                d("m"),
                "--data".into(),
                text.clone(),
                "--rank".into(),
                "17".into(),
                "--out".into(),
                d("o"),
            ],
            "rank 17",
        ),
        (
            vec![
                "finetune".into(),
                "--model".into(),
                d("m"),
                "--data".into(),
                text.clone(),
                "--lr".into(),
                "NaN".into(),
                "--out".into(),
                d("o"),
            ],
            "learning rate",
        ),
        (
            vec![
                "finetune".into(),
                "--model".into(),
                d("m"),
                "--data".into(),
                text.clone(),
                "--format".into(),
                "int3".into(),
                "--out".into(),
                d("o"),
            ],
            "format",
        ),
        (
            vec![
                "finetune".into(),
                "--model".into(),
                d("m"),
                "--data".into(),
                text.clone(),
                "--method".into(),
                "full".into(),
                "--format".into(),
                "nf4".into(),
                "--out".into(),
                d("o"),
            ],
            "full fine-tuning",
        ),
        (
            vec![
                "finetune".into(),
                "--model".into(),
                d("m"),
                "--data".into(),
                text.clone(),
                "--targets".into(),
                "qkv,q".into(),
                "--out".into(),
                d("o"),
            ],
            "qkv",
        ),
        (
            vec![
                "memory".into(),
                "--preset".into(),
                "gpt2".into(),
                "--format".into(),
                "int4".into(),
                "--double-quant".into(),
            ],
            "double quantization",
        ),
        (
            vec![
                "finetune".into(),
                "--model".into(),
                d("m"),
                "--data".into(),
                text.clone(),
                "--seq".into(),
                "999".into(),
                "--out".into(),
                d("o"),
            ],
            "seq",
        ),
    ];
    for (args, needle) in cases {
        let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if refs[0] == "finetune" && !refs.contains(&"--seq") {
            refs.extend(["--seq", "8"]);
        }
        let out = qlora(&refs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2; stderr: {err}");
        assert!(err.contains(needle), "{args:?}: message {err:?} should mention {needle:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        // Our own messages are one line; clap's parse errors (an unknown format or preset) add the accepted values
        // and a pointer to --help.
        if !err.contains("For more information, try '--help'") {
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, not {err:?}");
        }
    }
}

#[test]
fn quant_reports_bits_and_error_per_tensor() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-tiny");
    let lines = json_lines(&qlora(&["quant", "--model", model, "--format", "nf4", "--json"]));
    assert_eq!(lines.len(), 2 * 4 + 1, "one line per quantized tensor plus a summary");
    assert_eq!(lines.last().unwrap()["bits_per_param"], 4.5);
    for l in &lines[..8] {
        let (rmse, max) = (l["rmse"].as_f64().unwrap(), l["max_abs_error"].as_f64().unwrap());
        assert!(rmse > 0.0 && rmse <= max, "{l}");
    }
    let fp32 = json_lines(&qlora(&["quant", "--model", model, "--format", "fp32", "--json"]));
    assert_eq!(fp32[0]["rmse"], 0.0);
}

#[test]
fn built_in_task_reports_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    assert!(qlora(&["init", "--layers", "2", "--heads", "2", "--embd", "32", "--ctx", "32", "--out", &d("m")])
        .status
        .success());
    let lines = json_lines(&qlora(&[
        "finetune",
        "--model",
        &d("m"),
        "--task",
        "even",
        "--method",
        "lora",
        "--targets",
        "all",
        "--rank",
        "4",
        "--steps",
        "200",
        "--lr",
        "1e-2",
        "--batch",
        "16",
        "--seq",
        "32",
        "--eval-examples",
        "40",
        "--out",
        &d("ad"),
        "--json",
    ]));
    let summary = lines.last().unwrap();
    let (before, after) = (summary["accuracy_before"].as_f64().unwrap(), summary["accuracy"].as_f64().unwrap());
    assert_eq!(before, 0.0, "a random model cannot answer");
    assert!((0.0..=1.0).contains(&after));
    assert!(summary["val_loss"].as_f64().unwrap() < summary["val_loss_before"].as_f64().unwrap());
}

/// `qlora pretrain` of one block 16 wide (2 heads, context 32, batch 2 × 16) on `text`, which is also the held-out
/// text, into `out`, with `flags`.
fn tiny_pretrain(text: &str, out: &str, flags: &[&str]) -> Output {
    let shape = ["--layers", "1", "--heads", "2", "--embd", "16", "--ctx", "32", "--batch", "2", "--seq", "16"];
    let args = [&["pretrain", "--data", text, "--val", text, "--out", out][..], &shape, flags].concat();
    qlora(&args)
}

#[test]
fn pretrain_resumes_exactly_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let text = write_text(
        dir.path(),
        "t.txt",
        &"Now is the winter of our discontent\nMade glorious summer by this sun of York;\n".repeat(20),
    );
    let run = |out: &str, steps: &str| {
        let flags = ["--steps", steps, "--warmup", "2", "--eval-every", "3", "--eval-bytes", "200"];
        json_lines(&tiny_pretrain(
            &text,
            &d(out),
            &[&flags[..], &["--checkpoint-every", "3", "--backend", "cpu", "--json"]].concat(),
        ))
    };
    let straight = run("a", "6");
    run("b", "3");
    // A second run with more steps picks up the checkpoint at step 3 and continues with the same batches.
    let resumed = run("b", "6");
    let loss = |lines: &[Value], step: u64| lines.iter().find(|l| l["step"] == step).unwrap()["loss"].as_f64().unwrap();
    assert!(
        resumed.iter().all(|l| l.get("step").is_none_or(|s| s.as_u64().unwrap() >= 3)),
        "resumed from the checkpoint"
    );
    for step in 3..6 {
        assert_eq!(loss(&straight, step), loss(&resumed, step), "step {step}");
    }
    let summary = straight.last().unwrap();
    assert!(summary["val_loss_fp16"].as_f64().unwrap().is_finite());
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("a/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "float16");
}

/// A checkpoint continues only the run that wrote it: other settings (here the learning rate) are refused with the
/// setting named, exit status 2, and the checkpoint stays as it was.
#[test]
fn pretrain_refuses_a_checkpoint_of_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let text = write_text(dir.path(), "t.txt", &"To be, or not to be, that is the question.\n".repeat(20));
    let run = |lr: &str| tiny_pretrain(&text, &d("m"), &["--steps", "2", "--lr", lr, "--backend", "cpu"]);
    assert!(run("0.003").status.success());
    let state = std::fs::read(dir.path().join("m/checkpoint/state.safetensors")).unwrap();
    let out = run("0.01");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("other settings") && err.contains("lr 0.003"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(dir.path().join("m/checkpoint/state.safetensors")).unwrap(), state);
}

/// The reduced evidence grid CI runs: on the shipped base, the generated task starts near 0% accuracy and every
/// method moves its validation loss down; the command writes its JSON, Markdown tables and SVG plot.
#[test]
fn evidence_reduced_grid_on_the_shipped_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ev");
    let o = qlora(&[
        "evidence",
        "--model",
        "www/models/shakespeare",
        "--out",
        out.to_str().unwrap(),
        "--reduced",
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "full + (lora fp32, qlora nf4) × r ∈ {{1, 8}}");
    for r in rows {
        let (before, after) = (r["val_loss_before"].as_f64().unwrap(), r["val_loss"].as_f64().unwrap());
        assert!(r["accuracy_before"].as_f64().unwrap() <= 0.05, "base accuracy near 0: {r}");
        assert!(after < before - 2.0, "validation loss falls: {r}");
    }
    assert_eq!(rows[1]["trainable"], 13_824);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| qlora | nf4 | 8 | 110592 |"), "{md}");
    assert!(std::fs::read_to_string(out.join("accuracy.svg")).unwrap().starts_with("<svg"));
}

/// The first `n` non-empty golden cases of `tests/fixtures/gpt2-bpe/golden.json` (transformers' ids); a text file
/// holds each unchanged (`\r` and control characters included), and an empty file is refused as input.
fn golden_cases(n: usize) -> Vec<(String, Vec<u64>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-bpe/golden.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            (c["text"].as_str().unwrap().to_string(), ids)
        })
        .filter(|(t, _)| !t.is_empty())
        .take(n)
        .collect()
}

#[test]
fn a_gpt2_bpe_model_dir_works_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let init = ["init", "--preset", "gpt2", "--layers", "1", "--embd", "32", "--heads", "2", "--ctx", "64"];
    let out = qlora(&[&init[..], &["--seed", "1", "--out", &d("m")]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"]
    {
        assert!(dir.path().join("m").join(f).is_file(), "init writes {f}");
    }
    let config: Value = serde_json::from_slice(&std::fs::read(dir.path().join("m/config.json")).unwrap()).unwrap();
    assert_eq!((config["vocab_size"].as_u64(), config["n_layer"].as_u64()), (Some(50257), Some(1)));
    assert_eq!(config.get("_name_or_path"), None, "a shape other than the published one names no hub model");

    // tokenize: transformers' ids, from vocab.json + merges.txt and from tokenizer.json alone.
    std::fs::create_dir(dir.path().join("json-only")).unwrap();
    std::fs::copy(dir.path().join("m/tokenizer.json"), dir.path().join("json-only/tokenizer.json")).unwrap();
    for (i, (text, ids)) in golden_cases(12).into_iter().enumerate() {
        let file = write_text(dir.path(), &format!("g{i}.txt"), &text);
        for model in [d("m"), d("json-only")] {
            let got = one(&["tokenize", "--model", &model, "--text-file", &file, "--json"]);
            let got: Vec<u64> = got["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            assert_eq!(got, ids, "{model}: {text:?}");
        }
    }

    // eval scores tokens; generate prints the ids it sampled and their text.
    let gpt2 = qlora_playground::tokenizer::Tokenizer::gpt2().unwrap();
    let content = "The boats came home to the harbour at dusk. ".repeat(40);
    let text = write_text(dir.path(), "t.txt", &content);
    let e = one(&["eval", "--model", &d("m"), "--text-file", &text, "--json"]);
    let n = gpt2.encode(&content).len() as u64;
    assert!(n < content.len() as u64 / 3, "BPE, not bytes: {n} tokens");
    // Consecutive windows of n_positions = 64 tokens, each predicting all but its first.
    assert_eq!(e["tokens"].as_u64(), Some(n - n.div_ceil(64)), "{n} tokens in windows of 64");
    assert!(e["loss"].as_f64().unwrap() > 10.0, "a random model is near ln 50257 = 10.8");
    let g =
        one(&["generate", "--model", &d("m"), "--prompt", "The boats", "--tokens", "6", "--json", "--backend", "cpu"]);
    let ids: Vec<u32> = g["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    assert_eq!(ids.len(), 6);
    assert!(ids.iter().any(|&id| id >= 256), "ids beyond the byte range: {ids:?}");
    assert_eq!(g["text"], gpt2.decode(&ids));

    // finetune on own text and on a generated task; the adapter names the hub model config.json names (as
    // transformers 4.x writes `_name_or_path` into the directories it saves).
    let named = std::fs::read_to_string(dir.path().join("m/config.json")).unwrap().replacen(
        '{',
        "{\n  \"_name_or_path\": \"openai-community/gpt2\",",
        1,
    );
    std::fs::write(dir.path().join("m/config.json"), named).unwrap();
    let lora = ["finetune", "--model", &d("m"), "--method", "lora", "--steps", "3", "--batch", "2", "--seq", "16"];
    let s = one(&[&lora[..], &["--data", &text, "--out", &d("a"), "--json"]].concat());
    assert!(s["val_loss"].as_f64().unwrap().is_finite());
    let ac: Value = serde_json::from_slice(&std::fs::read(dir.path().join("a/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(ac["base_model_name_or_path"], "openai-community/gpt2");
    let t = one(&[&lora[..], &["--task", "reverse", "--eval-examples", "4", "--out", &d("r"), "--json"]].concat());
    assert!(t["accuracy"].as_f64().is_some(), "{t}");

    // A broken tokenizer file gets one message naming it, exit status 2.
    std::fs::write(dir.path().join("m/merges.txt"), "#version: 0.2\nĠt\n").unwrap();
    std::fs::remove_file(dir.path().join("m/tokenizer.json")).unwrap();
    let out = qlora(&["tokenize", "--model", &d("m"), "--text-file", &text]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("merges.txt: line 2"), "{err}");
}
