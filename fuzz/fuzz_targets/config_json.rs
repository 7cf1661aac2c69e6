//! config.json text: parsed into a model configuration or refused with a message, and a parsed one round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qlora_playground::model::ModelConfig;
use qlora_playground::tokenizer::Tokenizer;

fuzz_target!(|text: &str| {
    if let Ok(cfg) = ModelConfig::from_json(text) {
        let again =
            ModelConfig::from_json(&cfg.to_json("float32", &Tokenizer::Bytes)).expect("our own config.json parses");
        assert_eq!(again, cfg);
    }
});
