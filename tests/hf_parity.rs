//! Parity with Hugging Face: a GPT2LMHeadModel saved by transformers 5.24 (tests/fixtures/hf-tiny, made by
//! tests/hf/make_fixtures.py) gives the same logits and loss here, and an adapter written by `qlora finetune` gives
//! the loss that PEFT 0.21's `PeftModel.from_pretrained` computed with it.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::{eval_loss, forward, Activations, Weights};
use qlora_playground::lora::load_adapter_dir;
use qlora_playground::model::load_model_dir;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> (Vec<u32>, Vec<f32>, f64) {
    let bytes = std::fs::read(fixtures().join("hf-tiny/expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tokens: Vec<u32> = st
        .tensor("tokens")
        .unwrap()
        .data()
        .chunks(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let floats = read_safetensors_f32_subset(&bytes);
    (tokens, floats.0, floats.1 as f64)
}

fn read_safetensors_f32_subset(bytes: &[u8]) -> (Vec<f32>, f32) {
    // The fixture also holds an i64 tensor, which the model loader rightly refuses; read the two f32 tensors directly.
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let f = |n: &str| {
        st.tensor(n).unwrap().data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect::<Vec<f32>>()
    };
    (f("logits"), f("loss")[0])
}

#[test]
fn logits_and_loss_match_transformers() {
    let model = load_model_dir(&fixtures().join("hf-tiny")).unwrap();
    let (tokens, want_logits, want_loss) = expected();
    let t = tokens.len();
    let mut acts = Activations::new(&model.config, None, 1, t - 1);
    let w = Weights::of(&model);
    forward(&w, None, &mut acts, &tokens[..t - 1], None, None);
    // Without targets our executor gives probabilities; compare log-probabilities, which equal logits up to a per-row constant.
    let v = model.config.vocab_size;
    let mut worst = 0.0f32;
    for row in 0..t - 1 {
        let logits = &want_logits[row * v..(row + 1) * v];
        let maxl = logits.iter().fold(f32::MIN, |m, x| m.max(*x));
        let lse = maxl + logits.iter().map(|x| (x - maxl).exp()).sum::<f32>().ln();
        for (j, l) in logits.iter().enumerate() {
            let ours = acts.probs()[row * v + j].ln();
            worst = worst.max(((l - lse) - ours).abs() / (l - lse).abs().max(1.0));
        }
    }
    assert!(worst <= 1e-4, "log-probabilities differ by {worst:e} (relative)");
    let (loss, n) = eval_loss(&model, None, &tokens);
    assert_eq!(n, t - 1);
    assert!((loss - want_loss).abs() <= 1e-5, "loss {loss} vs transformers {want_loss}");
}

#[test]
fn our_adapter_gives_peft_loss() {
    let model = load_model_dir(&fixtures().join("hf-tiny")).unwrap();
    let ad = load_adapter_dir(&fixtures().join("peft-adapter"), model.config.n_layer, model.config.n_embd).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("peft_expected.json")).unwrap()).unwrap();
    let tokens: Vec<u32> = expected["tokens"].as_str().unwrap().bytes().map(u32::from).collect();
    let (loss, _) = eval_loss(&model, Some(&ad), &tokens);
    let want = expected["loss"].as_f64().unwrap();
    assert!((loss - want).abs() <= 1e-5, "loss {loss} vs PEFT {want}");
    // The adapter actually changes the model (otherwise the comparison would prove nothing).
    let (base, _) = eval_loss(&model, None, &tokens);
    assert!((base - loss).abs() > 1e-2);
}
