//! Hugging Face model directories: `config.json` + `model.safetensors`, through the `safetensors` crate.
//! Reading accepts names with or without the `transformer.` prefix, ignores the `attn.bias` / `attn.masked_bias`
//! causal-mask buffers and a tied `lm_head.weight`, and converts f32, f16 and bf16 to f32.

use super::{Gpt2, ModelConfig, ParamLayout};
use crate::{bail, ensure, Error, Result};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

/// The dtype tensors are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDtype {
    F32,
    F16,
}

impl StoreDtype {
    fn hf_name(self) -> &'static str {
        match self {
            StoreDtype::F32 => "float32",
            StoreDtype::F16 => "float16",
        }
    }
}

/// A tensor by name: (name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Every tensor of a safetensors buffer as (name, shape, f32 values).
pub fn read_safetensors_f32(bytes: &[u8]) -> Result<Vec<NamedTensor>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::new(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let view = st.tensor(&name).map_err(|e| Error::new(format!("tensor {name}: {e}")))?;
        let values = to_f32(&name, &view)?;
        out.push((name, view.shape().to_vec(), values));
    }
    Ok(out)
}

fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => bail!("tensor {name} has dtype {other:?}; expected F32, F16 or BF16"),
    };
    Ok(values)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))
}

/// Loads a model directory.
pub fn load_model_dir(dir: &Path) -> Result<Gpt2> {
    let cfg_path = dir.join("config.json");
    let cfg_text = String::from_utf8(read_file(&cfg_path)?)
        .map_err(|_| Error::new(format!("{} is not UTF-8 text", cfg_path.display())))?;
    let config = ModelConfig::from_json(&cfg_text).map_err(|e| e.context(cfg_path.display()))?;
    let st_path = dir.join("model.safetensors");
    let bytes = read_file(&st_path)?;
    let tensors = read_safetensors_f32(&bytes).map_err(|e| e.context(st_path.display()))?;
    from_named_tensors(config, tensors).map_err(|e| e.context(st_path.display()))
}

/// Loads a model from the bytes of its two files (the page fetches them; the CLI reads a directory).
pub fn load_model_bytes(config_json: &str, safetensors: &[u8]) -> Result<Gpt2> {
    let config = ModelConfig::from_json(config_json).map_err(|e| e.context("config.json"))?;
    let tensors = read_safetensors_f32(safetensors).map_err(|e| e.context("model.safetensors"))?;
    from_named_tensors(config, tensors).map_err(|e| e.context("model.safetensors"))
}

/// Builds a model from named tensors, checking that every tensor is present with the shape config.json implies.
pub fn from_named_tensors(config: ModelConfig, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<Gpt2> {
    let layout = ParamLayout::new(&config);
    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (name, shape, values) in tensors {
        if name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name == "lm_head.weight" {
            continue; // causal-mask buffers and the tied LM head carry no parameters of their own
        }
        let key = name.strip_prefix("transformer.").unwrap_or(&name).to_string();
        by_name.insert(key, (shape, values));
    }
    // Every tensor is checked before the parameter buffer is allocated: a config.json that claims a huge model is
    // refused by the tensors it lacks, not by an allocation failure.
    for (id, _) in layout.iter() {
        let full = layout.hf_name(id);
        let key = full.strip_prefix("transformer.").expect("prefixed");
        let (shape, values) = by_name.get(key).ok_or_else(|| Error::new(format!("missing tensor {full}")))?;
        let expected = layout.shape(id);
        ensure!(*shape == expected, "tensor {full} has shape {shape:?} but config.json implies {expected:?}");
        ensure!(values.iter().all(|v| v.is_finite()), "tensor {full} contains NaN or infinite values");
    }
    let mut params = vec![0.0f32; layout.total()];
    for (id, range) in layout.iter() {
        let full = layout.hf_name(id);
        let (_, values) = by_name.remove(full.strip_prefix("transformer.").expect("prefixed")).expect("checked above");
        params[range].copy_from_slice(&values);
    }
    if let Some(extra) = by_name.keys().min() {
        bail!("unexpected tensor {extra} (not part of a GPT-2 model with this config)");
    }
    Ok(Gpt2 { config, layout, params })
}

/// Writes tensors as safetensors bytes in the given dtype, with `{"format": "pt"}` metadata as PyTorch tools expect.
pub fn write_safetensors(tensors: &[(String, Vec<usize>, &[f32])], dtype: StoreDtype) -> Result<Vec<u8>> {
    write_safetensors_with(tensors, dtype, &[])
}

/// [`write_safetensors`] with more header metadata (string keys and values, as the format allows).
pub fn write_safetensors_with(
    tensors: &[(String, Vec<usize>, &[f32])],
    dtype: StoreDtype,
    extra_metadata: &[(&str, String)],
) -> Result<Vec<u8>> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let bytes: Vec<u8> = match dtype {
                StoreDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                StoreDtype::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
            };
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let st_dtype = match dtype {
        StoreDtype::F32 => Dtype::F32,
        StoreDtype::F16 => Dtype::F16,
    };
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(st_dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::new(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    metadata.extend(extra_metadata.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let metadata = Some(metadata);
    safetensors::serialize(views, metadata).map_err(|e| Error::new(format!("cannot serialize safetensors: {e}")))
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))
}

pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::new(format!("cannot create directory {}: {e}", dir.display())))
}

/// Writes `config.json` and `model.safetensors` (names with the `transformer.` prefix, as `save_pretrained` does).
pub fn save_model_dir(model: &Gpt2, dir: &Path, dtype: StoreDtype) -> Result<()> {
    create_dir(dir)?;
    for (name, bytes) in model_files(model, dtype)? {
        write_file(&dir.join(name), &bytes)?;
    }
    Ok(())
}

/// The two files of a Hugging Face model directory, in memory: `config.json` and `model.safetensors`.
pub fn model_files(model: &Gpt2, dtype: StoreDtype) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let tensors: Vec<(String, Vec<usize>, &[f32])> = model
        .layout
        .iter()
        .map(|(id, range)| (model.layout.hf_name(id), model.layout.shape(id), &model.params[range]))
        .collect();
    Ok(vec![
        ("config.json", model.config.to_json(dtype.hf_name()).into_bytes()),
        ("model.safetensors", write_safetensors(&tensors, dtype)?),
    ])
}

/// The header metadata of a safetensors buffer (empty when it has none).
pub fn read_safetensors_metadata(bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::new(format!("not a valid safetensors file: {e}")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}
