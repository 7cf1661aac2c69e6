//! A model file as the page receives it: any bytes as model.safetensors for a tiny config.json, or, when the input
//! holds a NUL byte, config.json text before it and safetensors bytes after it. Loading returns a model or an error;
//! it never panics and never allocates more than the input justifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qlora_playground::model::load_model_bytes;

const TINY: &str = r#"{"model_type":"gpt2","vocab_size":256,"n_positions":8,"n_embd":8,"n_head":2,"n_layer":1,"qlora_tokenizer":"bytes"}"#;

fuzz_target!(|data: &[u8]| {
    match data.iter().position(|&b| b == 0) {
        Some(i) => {
            if let Ok(config) = std::str::from_utf8(&data[..i]) {
                let _ = load_model_bytes(config, &data[i + 1..]);
            }
        }
        None => {
            let _ = load_model_bytes(TINY, data);
        }
    }
});
