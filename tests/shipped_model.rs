//! The base model the page ships (www/models/shakespeare): a Hugging Face GPT-2 directory in fp16 under 4 MB whose
//! held-out loss on the three validation plays is at most 1.75 nats per byte, as its model card states.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::eval_loss;
use qlora_playground::data::read_text_file;
use qlora_playground::model::load_model_dir;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_model_meets_its_card() {
    let dir = root().join("www/models/shakespeare");
    let size = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    assert!(size <= 4_000_000, "model.safetensors is {size} bytes; the page ships at most 4 MB");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "float16");
    let model = load_model_dir(&dir).unwrap();
    let val = model.tokenizer.encode(&read_text_file(&root().join("data/shakespeare/val.txt")).unwrap());
    let (loss, n) = eval_loss(&model, None, &val);
    assert!(n > 400_000, "the whole validation text is scored");
    assert!(loss <= 1.75, "held-out loss {loss:.4} is above 1.75 nats/byte");
    let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let stated: f64 = card
        .lines()
        .find_map(|l| l.strip_prefix("- Held-out loss: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .expect("the model card states the held-out loss as '- Held-out loss: X nats/byte'");
    assert!((stated - loss).abs() < 5e-4, "card says {stated}, measured {loss:.4}");
}
