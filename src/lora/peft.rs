//! Adapters as Hugging Face PEFT writes them: `adapter_config.json` + `adapter_model.safetensors` with PEFT's GPT-2
//! key names (`base_model.model.transformer.h.N.attn.c_attn.lora_A.weight`, …), f32, so that
//! `PeftModel.from_pretrained` loads them onto the same model in transformers.
//!
//! PEFT knows one adapter per module. Our q, k and v adapters all live on `c_attn`, so they are exported as one LoRA
//! on `c_attn` whose rank is the sum of theirs: A stacks their A's, and B is block-structured (q's B in the q rows
//! and q's columns, and so on), which gives exactly Σ s·B_t·A_t. Each module's `lora_alpha` is set (through
//! `alpha_pattern`/`rank_pattern`) to s·R so that PEFT's α/R equals our scaling; where q, k and v have different
//! scalings, the ratio to the first one is folded into their B block.

use super::{Adapters, LoraConfig, Target};
use crate::model::{create_dir, read_safetensors_f32, write_file, write_safetensors, Linear, ModelConfig, StoreDtype};
use crate::{bail, ensure, Error, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The name PEFT's `target_modules` uses for a linear layer (unambiguous as a suffix of the module path).
fn module_key(lin: Linear) -> &'static str {
    match lin {
        Linear::Attn => "c_attn",
        Linear::AttnProj => "attn.c_proj",
        Linear::Fc => "c_fc",
        Linear::MlpProj => "mlp.c_proj",
    }
}

fn tensor_name(layer: usize, lin: Linear, which: &str) -> String {
    format!("base_model.model.transformer.h.{layer}.{}.lora_{which}.weight", lin.module())
}

/// One PEFT module's combined adapter.
struct Combined {
    rank: usize,
    scaling: f32,
    a: Vec<f32>, // [rank, d_in]
    b: Vec<f32>, // [d_out, rank]
}

fn combine(ad: &Adapters, layer: usize, lin: Linear) -> Option<Combined> {
    let c = ad.n_embd;
    let entries: Vec<_> = ad.on(layer, lin).collect();
    let first = entries.first()?;
    let (d_in, d_out) = lin.dims(c);
    let rank: usize = entries.iter().map(|e| e.rank).sum();
    let scaling = first.scaling;
    let mut a = Vec::with_capacity(rank * d_in);
    let mut b = vec![0.0f32; d_out * rank];
    let mut col = 0;
    for e in &entries {
        a.extend_from_slice(&ad.params[e.a.clone()]);
        let ratio = e.scaling / scaling;
        let eb = &ad.params[e.b.clone()];
        for (j, row) in e.target.out_cols(c).enumerate() {
            for k in 0..e.rank {
                let v = eb[j * e.rank + k];
                b[row * rank + col + k] = if ratio == 1.0 { v } else { v * ratio };
            }
        }
        col += e.rank;
    }
    Some(Combined { rank, scaling, a, b })
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`, for the base model `base`.
pub fn save_adapter_dir(ad: &Adapters, base: &ModelConfig, dir: &Path) -> Result<()> {
    create_dir(dir)?;
    for (name, bytes) in adapter_files(ad, base)? {
        write_file(&dir.join(name), &bytes)?;
    }
    Ok(())
}

/// The two files of a PEFT adapter directory, in memory: `adapter_config.json` and `adapter_model.safetensors`.
/// `base_model_name_or_path` is the hub id the base's config.json names (`_name_or_path`), else null.
pub fn adapter_files(ad: &Adapters, base: &ModelConfig) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let n_layer = base.n_layer;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut rank_pattern = Map::new();
    let mut alpha_pattern = Map::new();
    let mut modules: Vec<&str> = Vec::new();
    let mut first: Option<(usize, f32)> = None;
    for lin in Linear::ALL {
        for layer in 0..n_layer {
            let Some(comb) = combine(ad, layer, lin) else {
                continue;
            };
            let (d_in, d_out) = lin.dims(ad.n_embd);
            let key = module_key(lin);
            if !modules.contains(&key) {
                modules.push(key);
                let alpha = comb.scaling as f64 * comb.rank as f64;
                rank_pattern.insert(key.to_string(), json!(comb.rank));
                alpha_pattern.insert(key.to_string(), json!(alpha));
                first.get_or_insert((comb.rank, alpha as f32));
            }
            tensors.push((tensor_name(layer, lin, "A"), vec![comb.rank, d_in], comb.a));
            tensors.push((tensor_name(layer, lin, "B"), vec![d_out, comb.rank], comb.b));
        }
    }
    let (r, alpha) = first.ok_or_else(|| Error::new("no adapters to save"))?;
    let config = json!({
        "alpha_pattern": Value::Object(alpha_pattern),
        "auto_mapping": null,
        "base_model_name_or_path": base.name_or_path,
        "bias": "none",
        "fan_in_fan_out": true,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": alpha,
        "lora_dropout": ad.config.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": Value::Object(rank_pattern),
        "revision": null,
        "target_modules": modules,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false,
        "qlora_playground": {
            "targets": ad.config.targets.iter().map(|(t, r)| json!({"target": t.name(), "rank": r})).collect::<Vec<_>>(),
            "alpha": ad.config.alpha,
            "rslora": ad.config.rslora,
        },
    });
    let refs: Vec<(String, Vec<usize>, &[f32])> =
        tensors.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice())).collect();
    Ok(vec![
        ("adapter_config.json", (serde_json::to_string_pretty(&config).expect("json") + "\n").into_bytes()),
        ("adapter_model.safetensors", write_safetensors(&refs, StoreDtype::F32)?),
    ])
}

/// Reads a PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`) for a GPT-2 model of
/// width `n_embd` and `n_layer` blocks; see [`load_adapter_bytes`].
pub fn load_adapter_dir(dir: &Path, n_layer: usize, n_embd: usize) -> Result<Adapters> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| Error::new(format!("cannot read {}: {e}", cfg_path.display())))?;
    let st_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| Error::new(format!("cannot read {}: {e}", st_path.display())))?;
    load_adapter_bytes(&text, &bytes, n_layer, n_embd).map_err(|e| e.context(dir.display()))
}

/// Reads a PEFT LoRA adapter from the text of its `adapter_config.json` and the bytes of its
/// `adapter_model.safetensors`. Each module becomes one adapter (c_attn → qkv, attn.c_proj → o, c_fc → fc,
/// mlp.c_proj → proj) with PEFT's scaling for that module.
pub fn load_adapter_bytes(config_json: &str, safetensors: &[u8], n_layer: usize, n_embd: usize) -> Result<Adapters> {
    const CFG: &str = "adapter_config.json";
    const ST: &str = "adapter_model.safetensors";
    let cfg: Value =
        serde_json::from_str(config_json).map_err(|e| Error::new(format!("{CFG}: not valid JSON: {e}")))?;
    let ctx = |e: Error| e.context(CFG);
    ensure!(
        cfg.get("peft_type").and_then(Value::as_str).unwrap_or("LORA") == "LORA",
        "{CFG}: only LoRA adapters are supported"
    );
    let num = |v: Option<&Value>, what: &str| -> Result<f64> {
        v.and_then(Value::as_f64).ok_or_else(|| Error::new(format!("{what} must be a number")))
    };
    let r0 = num(cfg.get("r"), "r").map_err(ctx)?;
    let alpha0 = num(cfg.get("lora_alpha"), "lora_alpha").map_err(ctx)?;
    let rslora = cfg.get("use_rslora").and_then(Value::as_bool).unwrap_or(false);
    let dropout = cfg.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0) as f32;
    let pattern = |name: &str, key: &str| -> Option<f64> { cfg.get(name)?.get(key)?.as_f64() };

    let tensors = read_safetensors_f32(safetensors).map_err(|e| e.context(ST))?;
    let mut by_name: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
        tensors.into_iter().map(|(n, s, v)| (n, (s, v))).collect();

    // Which modules carry adapters, and their ranks (from layer 0's A).
    let mut targets = Vec::new();
    let mut scalings = Vec::new();
    for lin in Linear::ALL {
        let a_name = tensor_name(0, lin, "A");
        let Some((shape, _)) = by_name.get(&a_name) else {
            continue;
        };
        ensure!(shape.len() == 2, "{ST}: {a_name} must be 2-D");
        let rank = shape[0];
        let key = module_key(lin);
        let r = pattern("rank_pattern", key).unwrap_or(r0);
        let alpha = pattern("alpha_pattern", key).unwrap_or(alpha0);
        ensure!(r as usize == rank, "{ST}: {a_name} has rank {rank} but the config says {r}");
        let s = if rslora { alpha / r.sqrt() } else { alpha / r };
        let target = match lin {
            Linear::Attn => Target::Qkv,
            Linear::AttnProj => Target::O,
            Linear::Fc => Target::Fc,
            Linear::MlpProj => Target::Proj,
        };
        targets.push((target, rank));
        scalings.push(s as f32);
    }
    ensure!(!targets.is_empty(), "{ST}: no LoRA tensors for a GPT-2 model found");
    let config = LoraConfig { targets, alpha: alpha0 as f32, rslora, dropout };
    let mut ad = Adapters::zeros(config, n_layer, n_embd).map_err(|e| e.context(ST))?;
    for i in 0..ad.entries.len() {
        let e = ad.entries[i].clone();
        let lin = e.target.linear();
        let ti = ad.config.targets.iter().position(|(t, _)| *t == e.target).expect("listed");
        ad.entries[i].scaling = scalings[ti];
        for (which, range, shape) in
            [("A", e.a.clone(), vec![e.rank, e.d_in]), ("B", e.b.clone(), vec![e.d_out, e.rank])]
        {
            let name = tensor_name(e.layer, lin, which);
            let (s, v) = by_name.remove(&name).ok_or_else(|| Error::new(format!("{ST}: missing tensor {name}")))?;
            ensure!(s == shape, "{ST}: tensor {name} has shape {s:?}, expected {shape:?}");
            ensure!(v.iter().all(|x| x.is_finite()), "{ST}: tensor {name} contains NaN or infinite values");
            ad.params[range].copy_from_slice(&v);
        }
    }
    if let Some(extra) = by_name.keys().next() {
        bail!("{ST}: unexpected tensor {extra} (a different model shape or adapter type?)");
    }
    Ok(ad)
}
