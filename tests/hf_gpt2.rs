//! GPT-2 with its real 50,257-token BPE vocabulary against Hugging Face: a model randomly initialised and saved by
//! transformers (tests/fixtures/hf-gpt2, made by tests/hf/make_gpt2_fixtures.py) beside GPT-2's tokenizer files gives
//! transformers' ids and loss, bitsandbytes' NF4 + double-quantization loss, transformers' greedy ids, and with an
//! adapter our CLI trained, the loss PEFT computed.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::{eval_loss, generate, quantize_base};
use qlora_playground::lora::load_adapter_dir;
use qlora_playground::model::load_model_dir;
use qlora_playground::quant::{Format, Storage};
use qlora_playground::train::Sampling;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture's two files with the repository's tokenizer files beside them, as a hub directory holds them.
fn model_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(root().join("tests/fixtures/hf-gpt2").join(f), d.path().join(f)).unwrap();
    }
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(root().join("assets/gpt2").join(f), d.path().join(f)).unwrap();
    }
    d
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("tests/fixtures/hf-gpt2/expected.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn load(dir: &Path) -> qlora_playground::model::Gpt2 {
    load_model_dir(dir).unwrap()
}

#[test]
fn ids_and_loss_equal_transformers() {
    let (dir, want) = (model_dir(), expected());
    let model = load(dir.path());
    assert_eq!(model.tokenizer.kind(), "gpt2-bpe");
    let tokens = model.tokenizer.encode(want["text"].as_str().unwrap());
    assert_eq!(tokens, ids(&want["ids"]));
    let (loss, n) = eval_loss(&model, None, &tokens);
    assert_eq!(n, tokens.len() - 1);
    let want_loss = want["loss"].as_f64().unwrap();
    assert!((loss - want_loss).abs() <= 1e-4, "loss {loss} vs transformers {want_loss}");
}

#[test]
fn nf4_double_quant_loss_equals_bitsandbytes() {
    let (dir, want) = (model_dir(), expected());
    let mut model = load(dir.path());
    let before = eval_loss(&model, None, &ids(&want["ids"])).0;
    quantize_base(&mut model, Storage::new(Format::Nf4, true).unwrap());
    let (loss, _) = eval_loss(&model, None, &ids(&want["ids"]));
    let want_loss = want["loss_nf4_dq"].as_f64().unwrap();
    assert!((loss - want_loss).abs() <= 1e-4, "loss {loss} vs bitsandbytes {want_loss}");
    assert!((loss - before).abs() > 1e-3, "quantizing changed the loss (else the comparison proves nothing)");
}

#[test]
fn greedy_generation_gives_transformers_ids() {
    let (dir, want) = (model_dir(), expected());
    let model = load(dir.path());
    assert!(want["greedy_min_gap"].as_f64().unwrap() > 1e-3, "no near-ties among the choices");
    let prompt = model.tokenizer.encode_prompt(want["prompt"].as_str().unwrap());
    let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    let out = generate(&model, None, &prompt, 8, greedy);
    assert_eq!(out, ids(&want["greedy_ids"]));
}

#[test]
fn our_adapter_gives_peft_loss_on_a_bpe_model() {
    let (dir, want) = (model_dir(), expected());
    let model = load(dir.path());
    let adapter = root().join("tests/fixtures/hf-gpt2/adapter");
    let ad = load_adapter_dir(&adapter, model.config.n_layer, model.config.n_embd).unwrap();
    let tokens = ids(&want["ids"]);
    let (loss, _) = eval_loss(&model, Some(&ad), &tokens);
    let want_loss = want["peft_loss"].as_f64().unwrap();
    assert!((loss - want_loss).abs() <= 1e-4, "loss {loss} vs PEFT {want_loss}");
    assert!((eval_loss(&model, None, &tokens).0 - loss).abs() > 1e-2, "the adapter changes the model");
    let config: Value = serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["base_model_name_or_path"], Value::Null, "transformers' config.json names no hub id");
}
