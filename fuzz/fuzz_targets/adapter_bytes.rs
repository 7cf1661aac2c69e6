//! A PEFT adapter as a user would drop it: adapter_config.json text before a NUL byte, adapter_model.safetensors
//! bytes after it (without a NUL: a fixed rank-2 config and the input as the safetensors), for a 1-block, 8-wide
//! GPT-2. Loading returns adapters or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qlora_playground::lora::load_adapter_bytes;

const CONFIG: &str = r#"{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["c_attn"],"fan_in_fan_out":true}"#;

fuzz_target!(|data: &[u8]| {
    match data.iter().position(|&b| b == 0) {
        Some(i) => {
            if let Ok(config) = std::str::from_utf8(&data[..i]) {
                let _ = load_adapter_bytes(config, &data[i + 1..], 1, 8);
            }
        }
        None => {
            let _ = load_adapter_bytes(CONFIG, data, 1, 8);
        }
    }
});
