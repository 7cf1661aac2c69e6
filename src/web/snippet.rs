//! The "run this on a real GPU" snippet: the page's configuration as Hugging Face PEFT + bitsandbytes code for
//! GPT-2, with every place where our settings and theirs differ said in a comment.

use crate::model::ModelConfig;
use crate::run::Settings;

/// The PEFT module of one of our targets on GPT-2 (q, k and v are slices of one fused `c_attn`; PEFT adapts it whole).
fn module_of(target: &str) -> Option<&'static str> {
    match target {
        "q" | "k" | "v" | "qkv" => Some("attn.c_attn"),
        "o" => Some("attn.c_proj"),
        "fc" => Some("mlp.c_fc"),
        "proj" => Some("mlp.c_proj"),
        _ => None,
    }
}

/// The PEFT modules of `ranks` with the rank each gets: a fused `c_attn` takes the largest of its slices' ranks.
fn module_ranks(ranks: &[(String, usize)]) -> Vec<(&'static str, usize)> {
    let mut mods: Vec<(&'static str, usize)> = Vec::new();
    for (t, r) in ranks {
        let Some(m) = module_of(t) else { continue };
        match mods.iter_mut().find(|(x, _)| *x == m) {
            Some((_, rank)) => *rank = (*rank).max(*r),
            None => mods.push((m, *r)),
        }
    }
    mods
}

fn escaped(module: &str) -> String {
    module.replace('.', r"\.")
}

/// GPT-2 124M's width: the snippet loads it where the page's model is not on the hub.
const GPT2_WIDTH: usize = 768;

/// Python for these settings on the model `config` describes, runnable where CUDA and bitsandbytes are: its hub id
/// (`_name_or_path`) where it names one, else Hugging Face's `gpt2` (124M parameters) — the built-in model is not on
/// the hub, and the snippet says so.
pub fn peft_snippet(s: &Settings, config: &ModelConfig) -> String {
    let (id, width) = match config.name_or_path.as_deref() {
        Some(id) => (id, config.n_embd),
        None => ("gpt2", GPT2_WIDTH),
    };
    let mut out = String::from(
        "# This playground's configuration on a real GPU with Hugging Face transformers + PEFT + bitsandbytes.\n\
         # pip install torch transformers peft bitsandbytes accelerate\n",
    );
    if config.name_or_path.is_none() {
        out.push_str(
            "# The page's model is not on the hub: this trains the same adapters on GPT-2 124M (\"gpt2\") instead.\n",
        );
    }
    out.push_str("import torch\nfrom transformers import AutoModelForCausalLM\n");
    let load = match (s.method.as_str(), s.format.as_str()) {
        ("full", _) | (_, "fp32") => format!("model = AutoModelForCausalLM.from_pretrained(\"{id}\", torch_dtype=torch.float32)\n"),
        (_, "fp16") => format!("model = AutoModelForCausalLM.from_pretrained(\"{id}\", torch_dtype=torch.float16)\n"),
        (_, "bf16") => format!("model = AutoModelForCausalLM.from_pretrained(\"{id}\", torch_dtype=torch.bfloat16)\n"),
        (_, "nf4" | "fp4") => format!(
            "from transformers import BitsAndBytesConfig\n\
             # The QLoRA paper computes in bf16 through the 4-bit base; the page computes in fp32.\n\
             bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"{}\",\n    bnb_4bit_use_double_quant={}, bnb_4bit_compute_dtype=torch.bfloat16)\n\
             model = AutoModelForCausalLM.from_pretrained(\"{id}\", quantization_config=bnb)\n",
            s.format,
            if s.dq { "True" } else { "False" }
        ),
        (_, "int8") => format!("from transformers import BitsAndBytesConfig\n\
             # bitsandbytes' 8-bit is LLM.int8() (row-wise absmax with fp16 outliers), not our blockwise int8.\n\
             model = AutoModelForCausalLM.from_pretrained(\"{id}\", quantization_config=BitsAndBytesConfig(load_in_8bit=True))\n"),
        _ => format!("# bitsandbytes has no symmetric int4; nf4 is the nearest 4-bit base it offers (a different, non-uniform codebook).\n\
              from transformers import BitsAndBytesConfig\n\
              model = AutoModelForCausalLM.from_pretrained(\"{id}\", quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\"))\n"),
    };
    out.push_str(&load);
    if s.method == "full" {
        out.push_str("# Full fine-tuning: every weight is trained.\n");
    } else {
        if s.method == "qlora" && matches!(s.format.as_str(), "nf4" | "fp4" | "int4" | "int8") {
            out.push_str(
                "from peft import prepare_model_for_kbit_training\nmodel = prepare_model_for_kbit_training(model)\n",
            );
        }
        let ranks = s.target_ranks().unwrap_or_else(|_| s.targets.iter().map(|t| (t.clone(), s.r)).collect());
        let slices: Vec<usize> =
            ranks.iter().filter(|(t, _)| matches!(t.as_str(), "q" | "k" | "v")).map(|(_, r)| *r).collect();
        if !slices.is_empty() {
            out.push_str(&format!(
                "# q, k and v are slices of GPT-2's fused c_attn; PEFT adapts c_attn as a whole (r·({width} + {})).\n",
                3 * width
            ));
            if slices.iter().any(|r| *r != slices[0]) {
                out.push_str("# Their ranks differ here; c_attn takes the largest.\n");
            }
        }
        let mods = module_ranks(&ranks);
        let pattern = mods.iter().map(|(m, _)| escaped(m)).collect::<Vec<_>>().join("|");
        let differing: Vec<String> =
            mods.iter().filter(|(_, r)| *r != s.r).map(|(m, r)| format!("r\"{}\": {r}", escaped(m))).collect();
        let rank_pattern = if differing.is_empty() {
            String::new()
        } else {
            format!(",\n    rank_pattern={{{}}}", differing.join(", "))
        };
        out.push_str(&format!(
            "from peft import LoraConfig, get_peft_model\n\
             config = LoraConfig(r={r}, lora_alpha={alpha}, lora_dropout=0.0, bias=\"none\", task_type=\"CAUSAL_LM\",\n    \
             target_modules=r\".*\\.({pattern})\", fan_in_fan_out=True{rank_pattern})\n\
             model = get_peft_model(model, config)\nmodel.print_trainable_parameters()\n",
            r = s.r,
            alpha = s.alpha,
        ));
    }
    out.push_str(&format!(
        "optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr={lr}, weight_decay=0.0)\n\
         # Train on batches of {batch} sequences × {seq} tokens for {steps} steps (warm-up then cosine decay to lr/10).\n",
        lr = s.lr,
        batch = s.batch,
        seq = s.seq,
        steps = s.steps
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_names_the_modules_and_the_quantization() {
        let s = Settings::default();
        let py = peft_snippet(&s, &built_in());
        assert!(py.contains(r#"bnb_4bit_quant_type="nf4""#) && py.contains("bnb_4bit_use_double_quant=True"));
        assert!(
            py.contains(
                r"target_modules=r'.*\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)'".replace('\'', "\"").as_str()
            ),
            "{py}"
        );
        assert!(py.contains("r=8, lora_alpha=16"));
        let per = Settings { ranks: "fc:16,q:2,v:12".into(), ..Default::default() };
        let py = peft_snippet(&per, &built_in());
        assert!(py.contains(r#"rank_pattern={r"attn\.c_attn": 12, r"mlp\.c_fc": 16}"#), "{py}");
        assert!(py.contains("c_attn takes the largest"), "{py}");
        let full = Settings { method: "full".into(), format: "fp32".into(), dq: false, ..Default::default() };
        assert!(!peft_snippet(&full, &built_in()).contains("LoraConfig"));
    }

    #[test]
    fn snippet_loads_the_hub_model_the_page_loaded() {
        for s in [
            Settings::default(),
            Settings { format: "fp16".into(), dq: false, method: "lora".into(), ..Default::default() },
            Settings { format: "int8".into(), dq: false, ..Default::default() },
            Settings { format: "int4".into(), dq: false, ..Default::default() },
        ] {
            let py = peft_snippet(&s, &hub("distilbert/distilgpt2", 768));
            assert!(py.contains(r#"from_pretrained("distilbert/distilgpt2""#), "{py}");
            assert!(!py.contains(r#""gpt2""#) && !py.contains("not on the hub"), "{py}");
        }
        let py = peft_snippet(&Settings::default(), &built_in());
        assert!(py.contains(r#"from_pretrained("gpt2""#) && py.contains("not on the hub"), "{py}");
    }

    /// The c_attn count is the loaded model's (the built-in one's snippet loads GPT-2 124M, so it is GPT-2's).
    #[test]
    fn snippet_counts_c_attn_at_the_width_of_the_model_it_loads() {
        let qv = Settings { targets: vec!["q".into(), "v".into()], ..Default::default() };
        assert!(peft_snippet(&qv, &built_in()).contains("r·(768 + 2304)"));
        assert!(peft_snippet(&qv, &hub("openai-community/gpt2-large", 1280)).contains("r·(1280 + 3840)"));
    }

    fn built_in() -> ModelConfig {
        ModelConfig::bytes(4, 4, 192, 256).unwrap()
    }

    fn hub(id: &str, width: usize) -> ModelConfig {
        let mut c = ModelConfig::hf_preset("gpt2", None).unwrap();
        c.n_embd = width;
        c.name_or_path = Some(id.into());
        c
    }
}
