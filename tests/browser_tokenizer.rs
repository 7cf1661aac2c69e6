//! GPT-2's byte-level BPE in the browser: the wasm32 build of the tokenizer (Hugging Face's `tokenizers` with its
//! pure-Rust regex engine) gives transformers' ids for every text of `tests/fixtures/gpt2-bpe/golden.json`, as the
//! native build does in `tests/tokenizer.rs`. Run by `wasm-pack test --headless --chrome` (or `--firefox`) with the
//! other browser tests.
#![cfg(target_arch = "wasm32")]

use qlora_playground::tokenizer::{Bpe, Tokenizer, TokenizerFiles};
use std::sync::Arc;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn gpt2_bpe_ids_equal_transformers_in_the_browser() {
    let files = TokenizerFiles {
        vocab_json: Some(include_bytes!("../assets/gpt2/vocab.json").to_vec()),
        merges_txt: Some(include_bytes!("../assets/gpt2/merges.txt").to_vec()),
        ..Default::default()
    };
    let t = Tokenizer::Bpe(Arc::new(Bpe::from_files(files).unwrap()));
    let golden: serde_json::Value = serde_json::from_str(include_str!("fixtures/gpt2-bpe/golden.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() > 300);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let ids: Vec<u32> = c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(t.encode(text), ids, "ids of {text:?}");
        assert_eq!(t.decode(&ids), c["decoded"].as_str().unwrap(), "decoding {text:?}");
    }
}
