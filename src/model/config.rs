//! `config.json` of a Hugging Face GPT-2 directory, read tolerantly (names from transformers 4.x and 5.x) and
//! written the way `save_pretrained` writes it, plus one key of our own that marks byte-level models. Which tokenizer
//! a model uses is decided by its directory's tokenizer files (see `model::io`), not by config.json.

use crate::tokenizer::Tokenizer;
use crate::{bail, ensure, Error, Result};
use serde_json::{json, Map, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_layer: usize,
    pub layer_norm_epsilon: f64,
    /// The hub id the model came from (`_name_or_path`), where config.json names one: PEFT adapters name it as
    /// their `base_model_name_or_path`.
    pub name_or_path: Option<String>,
}

/// The key under which config.json marks a byte-level model (token = byte value); transformers ignores unknown keys.
pub(crate) const BYTES_KEY: &str = "qlora_tokenizer";

/// GPT-2's vocabulary: 50,000 merges, 256 bytes and `<|endoftext|>`.
pub const GPT2_VOCAB: usize = 50257;

/// A published GPT-2 shape `qlora init --preset` writes and the page offers from the hub.
pub struct HfPreset {
    pub name: &'static str,
    pub hub_id: &'static str,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
}

/// GPT-2's published shapes (all with the 50,257-token vocabulary and 1,024 positions).
pub const HF_PRESETS: [HfPreset; 4] = [
    HfPreset { name: "gpt2", hub_id: "openai-community/gpt2", n_layer: 12, n_embd: 768, n_head: 12 },
    HfPreset { name: "distilgpt2", hub_id: "distilbert/distilgpt2", n_layer: 6, n_embd: 768, n_head: 12 },
    HfPreset { name: "gpt2-medium", hub_id: "openai-community/gpt2-medium", n_layer: 24, n_embd: 1024, n_head: 16 },
    HfPreset { name: "gpt2-large", hub_id: "openai-community/gpt2-large", n_layer: 36, n_embd: 1280, n_head: 20 },
];

/// The presets' names, for the CLI's choices and its messages.
pub const HF_PRESET_NAMES: [&str; 4] = ["gpt2", "distilgpt2", "gpt2-medium", "gpt2-large"];

/// Most parameters a model may have here: 2^30, 4 GiB of f32, all that 32-bit wasm addresses (so no byte count of
/// the parameters overflows there). gpt2-large's 774 M fit; what a browser tab can actually hold depends on the
/// format its base is kept in (`web::accounts::check_model_fits`).
pub const MAX_PARAMS: u64 = 1 << 30;

impl ModelConfig {
    /// A byte-level GPT-2 of the given shape.
    pub fn bytes(n_layer: usize, n_head: usize, n_embd: usize, n_positions: usize) -> Result<Self> {
        let c = ModelConfig {
            vocab_size: 256,
            n_positions,
            n_embd,
            n_head,
            n_layer,
            layer_norm_epsilon: 1e-5,
            name_or_path: None,
        };
        c.validate()?;
        Ok(c)
    }

    /// A published GPT-2 shape (`gpt2`: 12 layers; `distilgpt2`: 6) — width 768, 12 heads, 1,024 positions, GPT-2's
    /// vocabulary — with `layers` blocks instead of the preset's where given. Only the published shape names its hub
    /// model (`name_or_path`): an adapter for another shape could not be applied to it.
    pub fn hf_preset(name: &str, layers: Option<usize>) -> Result<Self> {
        let Some(p) = HF_PRESETS.iter().find(|p| p.name == name) else {
            bail!("unknown preset {name:?}; expected one of {}", HF_PRESET_NAMES.join(", "))
        };
        let n_layer = layers.unwrap_or(p.n_layer);
        let c = ModelConfig {
            vocab_size: GPT2_VOCAB,
            n_positions: 1024,
            n_embd: p.n_embd,
            n_head: p.n_head,
            n_layer,
            layer_norm_epsilon: 1e-5,
            name_or_path: (n_layer == p.n_layer).then(|| p.hub_id.to_string()),
        };
        c.validate()?;
        Ok(c)
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.n_layer >= 1, "n_layer must be at least 1 (got {})", self.n_layer);
        ensure!(self.n_head >= 1, "n_head must be at least 1 (got {})", self.n_head);
        ensure!(self.n_embd >= 1, "n_embd must be at least 1 (got {})", self.n_embd);
        ensure!(self.n_positions >= 2, "n_positions must be at least 2 (got {})", self.n_positions);
        ensure!(
            self.n_embd % self.n_head == 0,
            "n_embd ({}) must be a multiple of n_head ({})",
            self.n_embd,
            self.n_head
        );
        ensure!(
            self.vocab_size >= 256,
            "vocab_size {} is smaller than the 256 tokens of the byte tokenizer",
            self.vocab_size
        );
        ensure!(
            self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0,
            "layer_norm_epsilon must be a positive number"
        );
        // Sizes beyond these make no sense for a playground and would overflow buffers on 32-bit wasm.
        ensure!(
            self.n_embd <= 1 << 16 && self.n_layer <= 1024 && self.n_positions <= 1 << 16 && self.vocab_size <= 1 << 20,
            "model is too large for this engine (n_embd {}, n_layer {}, n_positions {}, vocab_size {})",
            self.n_embd,
            self.n_layer,
            self.n_positions,
            self.vocab_size
        );
        // The whole parameter count, in u64 so it cannot wrap on wasm32: at most 2^30 (4 GiB of f32).
        let params = self.param_count();
        ensure!(
            params <= MAX_PARAMS,
            "model is too large for this engine: {params} parameters, at most {MAX_PARAMS} (4 GiB of f32)"
        );
        Ok(())
    }

    /// Parameters of the model (the LM head is tied to wte): embeddings, 12c² + 13c per block, the final LayerNorm.
    pub fn param_count(&self) -> u64 {
        let (c, l) = (self.n_embd as u64, self.n_layer as u64);
        (self.vocab_size as u64 + self.n_positions as u64) * c + l * (12 * c * c + 13 * c) + 2 * c
    }

    /// Parses config.json text.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::new(format!("not valid JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| Error::new("expected a JSON object"))?;
        if let Some(mt) = obj.get("model_type").and_then(Value::as_str) {
            ensure!(mt == "gpt2", "model_type is {mt:?}; only \"gpt2\" is supported");
        }
        if let Some(act) = obj.get("activation_function").and_then(Value::as_str) {
            ensure!(act == "gelu_new", "activation_function is {act:?}; only \"gelu_new\" (GPT-2's) is supported");
        }
        let int = |names: &[&str]| -> Result<usize> {
            for n in names {
                if let Some(x) = obj.get(*n) {
                    return x
                        .as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| Error::new(format!("{n} must be a non-negative integer, got {x}")));
                }
            }
            bail!("missing key {}", names[0])
        };
        let eps = match obj.get("layer_norm_epsilon") {
            None => 1e-5,
            Some(x) => x.as_f64().ok_or_else(|| Error::new("layer_norm_epsilon must be a number"))?,
        };
        match obj.get(BYTES_KEY) {
            None => {}
            Some(Value::String(s)) if s == "bytes" => {}
            Some(other) => bail!("{BYTES_KEY} is {other}; only \"bytes\" is supported"),
        }
        let name_or_path = obj.get("_name_or_path").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
        let c = ModelConfig {
            vocab_size: int(&["vocab_size"])?,
            n_positions: int(&["n_positions", "n_ctx"])?,
            n_embd: int(&["n_embd", "hidden_size"])?,
            n_head: int(&["n_head", "num_attention_heads"])?,
            n_layer: int(&["n_layer", "num_hidden_layers"])?,
            layer_norm_epsilon: eps,
            name_or_path,
        };
        c.validate()?;
        Ok(c)
    }

    /// config.json as transformers' `save_pretrained` writes it (sorted keys, indent 2). A byte-level model gets our
    /// tokenizer key; a GPT-2-BPE one GPT-2's begin/end-of-text ids and, where known, the hub id it stands for.
    pub fn to_json(&self, dtype: &str, tokenizer: &Tokenizer) -> String {
        let mut m = Map::new();
        let end_of_text = tokenizer.end_of_text().map_or(Value::Null, |id| json!(id));
        let entries = [
            ("activation_function", json!("gelu_new")),
            ("architectures", json!(["GPT2LMHeadModel"])),
            ("attn_pdrop", json!(0.0)),
            ("bos_token_id", end_of_text.clone()),
            ("dtype", json!(dtype)),
            ("embd_pdrop", json!(0.0)),
            ("eos_token_id", end_of_text),
            ("initializer_range", json!(0.02)),
            ("layer_norm_epsilon", json!(self.layer_norm_epsilon)),
            ("model_type", json!("gpt2")),
            ("n_embd", json!(self.n_embd)),
            ("n_head", json!(self.n_head)),
            ("n_inner", Value::Null),
            ("n_layer", json!(self.n_layer)),
            ("n_positions", json!(self.n_positions)),
            ("pad_token_id", Value::Null),
            ("reorder_and_upcast_attn", json!(false)),
            ("resid_pdrop", json!(0.0)),
            ("scale_attn_by_inverse_layer_idx", json!(false)),
            ("scale_attn_weights", json!(true)),
            ("tie_word_embeddings", json!(true)),
            ("use_cache", json!(true)),
            ("vocab_size", json!(self.vocab_size)),
        ];
        for (k, v) in entries {
            m.insert(k.to_string(), v);
        }
        if matches!(tokenizer, Tokenizer::Bytes) {
            m.insert(BYTES_KEY.into(), json!("bytes"));
        }
        if let Some(name) = &self.name_or_path {
            m.insert("_name_or_path".into(), json!(name));
        }
        // serde_json's Map is a BTreeMap without the preserve_order feature: keys come out sorted, as in transformers.
        serde_json::to_string_pretty(&Value::Object(m)).expect("serializable") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParamLayout;

    #[test]
    fn param_count_is_the_layout_and_huge_configs_are_refused_before_allocation() {
        for (l, h, c, p) in [(1, 1, 8, 8), (4, 4, 192, 256), (12, 12, 768, 1024)] {
            let cfg = ModelConfig::bytes(l, h, c, p).unwrap();
            assert_eq!(cfg.param_count(), ParamLayout::new(&cfg).total() as u64);
        }
        let huge =
            r#"{"model_type":"gpt2","vocab_size":256,"n_positions":1024,"n_embd":65536,"n_head":1,"n_layer":1024}"#;
        let e = ModelConfig::from_json(huge).unwrap_err().to_string();
        assert!(e.contains("too large") && e.contains("at most 1073741824"), "{e}");
    }
}
