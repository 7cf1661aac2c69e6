//! Hugging Face model directories: `config.json`, `model.safetensors` (through the `safetensors` crate's header
//! types; a directory is read tensor by tensor, the page's bytes all at once) and the tokenizer files. Reading accepts
//! names with or without the `transformer.` prefix, ignores the `attn.bias` / `attn.masked_bias` causal-mask buffers
//! and a tied `lm_head.weight`, and converts f32, f16 and bf16 to f32.

use super::config::BYTES_KEY;
use super::{Gpt2, Linear, ModelConfig, ParamLayout, StoredLinears, TensorId, WeightsHasher};
use crate::quant::{round_in_place, QuantizedTensor, Storage};
use crate::tokenizer::{Bpe, Tokenizer, TokenizerFiles};
use crate::{bail, ensure, Error, Result};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, Metadata, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

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
    let width = dtype_width(name, view.dtype())?;
    let mut values = vec![0.0; view.data().len() / width];
    convert_into(name, view.dtype(), view.data(), &mut values)?;
    Ok(values)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))
}

/// Loads a model directory: config.json, model.safetensors read tensor by tensor (the whole fp32 file never sits in
/// memory beside the parameters: peak ≈ the parameters plus the largest tensor), and the tokenizer its files name.
pub fn load_model_dir(dir: &Path) -> Result<Gpt2> {
    let cfg_path = dir.join("config.json");
    let cfg_text = String::from_utf8(read_file(&cfg_path)?)
        .map_err(|_| Error::new(format!("{} is not UTF-8 text", cfg_path.display())))?;
    let config = ModelConfig::from_json(&cfg_text).map_err(|e| e.context(cfg_path.display()))?;
    let st_path = dir.join("model.safetensors");
    let open = |e: std::io::Error| Error::new(format!("cannot read {}: {e}", st_path.display()));
    let file = std::fs::File::open(&st_path).map_err(open)?;
    let len = file.metadata().map_err(open)?.len();
    let model =
        SafetensorsSource::with_config(config, file, len, st_path.display().to_string())?.load(Storage::FP32)?;
    let tokenizer = load_tokenizer_dir(dir)?;
    // A directory that names no tokenizer is byte-level only where that is plausible; a GPT-2 vocabulary without its
    // tokenizer files would otherwise be read as bytes without a word.
    let says_bytes = serde_json::from_str::<serde_json::Value>(&cfg_text)
        .is_ok_and(|v| v.get(BYTES_KEY).is_some_and(|k| k == "bytes"));
    match (&tokenizer, says_bytes) {
        (Tokenizer::Bpe(_), true) => {
            bail!("{}: config.json says {BYTES_KEY} \"bytes\" but the directory has tokenizer files", dir.display())
        }
        (Tokenizer::Bytes, false) if model.config.vocab_size != 256 => bail!(
            "{}: no tokenizer files (vocab.json + merges.txt, or tokenizer.json) for a vocabulary of {} tokens",
            dir.display(),
            model.config.vocab_size
        ),
        _ => model.with_tokenizer(tokenizer),
    }
}

/// The tokenizer of a model directory: GPT-2's byte-level BPE where it holds tokenizer files (vocab.json +
/// merges.txt and/or tokenizer.json), else bytes.
pub fn load_tokenizer_dir(dir: &Path) -> Result<Tokenizer> {
    let mut files = TokenizerFiles::default();
    for name in TokenizerFiles::NAMES {
        let path = dir.join(name);
        if path.is_file() {
            files.set(name, read_file(&path)?);
        }
    }
    if !files.any() {
        return Ok(Tokenizer::Bytes);
    }
    Ok(Tokenizer::Bpe(Arc::new(Bpe::from_files(files).map_err(|e| e.context(dir.display()))?)))
}

/// Loads a model from config.json's text and a safetensors file of `len` bytes that `file` reads (the page's is a
/// `Blob` read slice by slice): peak memory ≈ the fp32 parameters plus a few MiB. The tokenizer is the caller's to
/// set.
pub fn load_model_stream(config_json: &str, file: impl Read + Seek, len: u64) -> Result<Gpt2> {
    SafetensorsSource::open(config_json, file, len)?.load(Storage::FP32)
}

/// Bytes read from a streamed file at a time: a tensor is converted piece by piece, never held as bytes whole
/// (GPT-2's embedding is 154 MB).
const READ_CHUNK: usize = 4 << 20;

/// A model's safetensors file read where it lies (the page's `Blob`, a file on disk): its header is read and checked
/// against config.json once, and its tensors are then read one at a time, as often as asked — the page reads the
/// base again when a run needs it in another format than the one it was loaded in.
pub struct SafetensorsSource<R> {
    config: ModelConfig,
    file: R,
    /// What errors name the file by.
    label: String,
    data_start: u64,
    /// Every parameter's tensor in layout order.
    tensors: Vec<Planned>,
}

impl<R: Read + Seek> SafetensorsSource<R> {
    /// Reads config.json's text and the header of the `len`-byte file `file`, checking every tensor the model needs
    /// is there with the shape config.json implies (no tensor is read yet).
    pub fn open(config_json: &str, file: R, len: u64) -> Result<Self> {
        let config = ModelConfig::from_json(config_json).map_err(|e| e.context("config.json"))?;
        Self::with_config(config, file, len, "model.safetensors".into())
    }

    /// [`SafetensorsSource::open`] with config.json read, errors naming the file `label`.
    fn with_config(config: ModelConfig, file: R, len: u64, label: String) -> Result<Self> {
        match Self::open_header(config, file, len) {
            Ok(source) => Ok(SafetensorsSource { label, ..source }),
            Err(e) => Err(e.context(&label)),
        }
    }

    fn open_header(config: ModelConfig, mut file: R, file_len: u64) -> Result<Self> {
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|_| Error::new("not a valid safetensors file: shorter than its header"))?;
        let n = u64::from_le_bytes(len);
        ensure!(n <= 100 << 20, "not a valid safetensors file: header of {n} bytes");
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).map_err(|_| Error::new("not a valid safetensors file: header cut short"))?;
        let meta: Metadata = serde_json::from_slice(&header)
            .map_err(|e| Error::new(format!("not a valid safetensors file: header: {e}")))?;
        let data_start = 8 + n;
        ensure!(
            data_start + meta.data_len() as u64 == file_len,
            "not a valid safetensors file: the header describes {} bytes of data but the file has {}",
            meta.data_len(),
            file_len.saturating_sub(data_start)
        );
        let infos = meta.tensors();
        for (name, info) in &infos {
            if parameter_key(name).is_some() {
                dtype_width(name, info.dtype)?;
            }
        }
        let shapes = infos.iter().map(|(name, info)| (name.clone(), info.shape.clone())).collect();
        // The header's type checked the offsets (contiguous, each tensor's size from its shape and dtype); the
        // file's length was checked against them above.
        let tensors = match_tensors(&config, &shapes)?
            .into_iter()
            .map(|(id, name)| {
                let info = infos[name.as_str()];
                (id, name, info.dtype, info.data_offsets)
            })
            .collect();
        Ok(SafetensorsSource { config, file, label: String::new(), data_start, tensors })
    }

    /// The model, with its block linear weights in `storage` (all of it in fp32 for [`Storage::FP32`]): peak memory
    /// is the model in that form plus one linear weight in fp32 (twice: as read and transposed) and a few MiB.
    pub fn load(&mut self, storage: Storage) -> Result<Gpt2> {
        let config = self.config.clone();
        let tensors = std::mem::take(&mut self.tensors);
        let model =
            build(&config, &tensors, storage, |name, dtype, range, out| self.read_into(name, dtype, range, out));
        self.tensors = tensors;
        model.map_err(|e| e.context(&self.label))
    }

    /// One parameter's tensor in fp32, as the file's model holds it (a block linear weight as Conv1D `[in, out]`).
    pub fn tensor(&mut self, id: TensorId) -> Result<Vec<f32>> {
        let i = self.tensors.iter().position(|(t, ..)| *t == id).expect("every parameter is listed");
        let (_, name, dtype, range) = self.tensors[i].clone();
        let mut out = vec![0.0f32; ParamLayout::new(&self.config).shape(id).iter().product()];
        self.read_into(&name, dtype, range, &mut out).map_err(|e| e.context(&self.label))?;
        Ok(out)
    }

    /// The tensor at `range` (bytes after the header) of `dtype` into `out`, a piece at a time.
    fn read_into(&mut self, name: &str, dtype: Dtype, range: (usize, usize), out: &mut [f32]) -> Result<()> {
        let io = |e: std::io::Error| Error::new(format!("read failed: {e}"));
        let width = dtype_width(name, dtype)?;
        ensure!(
            range.1 - range.0 == out.len() * width,
            "tensor {name}: {} bytes for {} values",
            range.1 - range.0,
            out.len()
        );
        self.file.seek(SeekFrom::Start(self.data_start + range.0 as u64)).map_err(io)?;
        let mut bytes = vec![0u8; READ_CHUNK.min(range.1 - range.0)];
        for piece in out.chunks_mut(READ_CHUNK / width) {
            let bytes = &mut bytes[..piece.len() * width];
            self.file.read_exact(bytes).map_err(io)?;
            convert_into(name, dtype, bytes, piece)?;
        }
        Ok(())
    }
}

/// Loads a model from the bytes of its two files (the page fetches them; the CLI reads a directory).
pub fn load_model_bytes(config_json: &str, safetensors: &[u8]) -> Result<Gpt2> {
    let config = ModelConfig::from_json(config_json).map_err(|e| e.context("config.json"))?;
    let tensors = read_safetensors_f32(safetensors).map_err(|e| e.context("model.safetensors"))?;
    from_named_tensors(config, tensors).map_err(|e| e.context("model.safetensors"))
}

/// Builds a model from named tensors, checking that every tensor is present with the shape config.json implies.
pub fn from_named_tensors(config: ModelConfig, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<Gpt2> {
    let mut values: HashMap<String, Vec<f32>> = HashMap::new();
    let mut shapes = HashMap::new();
    for (name, shape, v) in tensors {
        shapes.insert(name.clone(), shape);
        values.insert(name, v);
    }
    let plan: Vec<_> =
        match_tensors(&config, &shapes)?.into_iter().map(|(id, name)| (id, name, Dtype::F32, (0, 0))).collect();
    build(&config, &plan, Storage::FP32, |name, _, _, out| {
        out.copy_from_slice(&values.remove(name).expect("listed"));
        Ok(())
    })
}

/// What a file's tensor name means for GPT-2: its name without the `transformer.` prefix, or nothing for the
/// causal-mask buffers and a tied LM head, which carry no parameters of their own.
fn parameter_key(name: &str) -> Option<&str> {
    if name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name == "lm_head.weight" {
        return None;
    }
    Some(name.strip_prefix("transformer.").unwrap_or(name))
}

/// Which of a file's tensors (by name, with their shapes) is each parameter of `config`'s model, in layout order.
/// Every tensor is checked before anything is allocated: a config.json that claims a huge model is refused by the
/// tensors it lacks, not by an allocation failure.
fn match_tensors(config: &ModelConfig, shapes: &HashMap<String, Vec<usize>>) -> Result<Vec<(TensorId, String)>> {
    let layout = ParamLayout::new(config);
    let mut by_key: HashMap<&str, (&str, &Vec<usize>)> = HashMap::new();
    for (name, shape) in shapes {
        if let Some(key) = parameter_key(name) {
            by_key.insert(key, (name, shape));
        }
    }
    let mut plan = Vec::new();
    for id in layout.ids() {
        let full = layout.hf_name(id);
        let key = full.strip_prefix("transformer.").expect("prefixed");
        let (name, shape) = by_key.remove(key).ok_or_else(|| Error::new(format!("missing tensor {full}")))?;
        let expected = layout.shape(id);
        ensure!(*shape == expected, "tensor {full} has shape {shape:?} but config.json implies {expected:?}");
        plan.push((id, name.to_string()));
    }
    if let Some(extra) = by_key.values().map(|(name, _)| *name).min() {
        bail!("unexpected tensor {extra} (not part of a GPT-2 model with this config)");
    }
    Ok(plan)
}

/// A tensor to read: its id, its name in the file, its dtype and its byte range after the header.
type Planned = (TensorId, String, Dtype, (usize, usize));

/// The model of `config` from `plan` (every parameter, in layout order), `read_into` filling each tensor's fp32
/// values, with its block linear weights kept in `storage` as [`crate::cpu::stored_base`] keeps them: each weight
/// quantized as it is read, so the fp32 model never exists whole below fp32. Its digest is that of the fp32 values
/// read, as if it had.
fn build(
    config: &ModelConfig,
    plan: &[Planned],
    storage: Storage,
    mut read_into: impl FnMut(&str, Dtype, (usize, usize), &mut [f32]) -> Result<()>,
) -> Result<Gpt2> {
    let full = ParamLayout::new(config);
    let stored = storage != Storage::FP32;
    let layout = if stored { ParamLayout::without_block_linears(config) } else { full.clone() };
    // Asked for, not assumed: where memory runs out (a browser tab's), the load fails with a message rather than
    // aborting the engine.
    let mut params = Vec::new();
    params.try_reserve_exact(layout.total()).map_err(|_| {
        Error::new(format!(
            "out of memory: the model's {} parameters need {} MiB for the {} values it keeps in fp32",
            full.total(),
            (4 * layout.total() as u64) >> 20,
            layout.total()
        ))
    })?;
    params.resize(layout.total(), 0.0f32);
    // Only a stored model needs it: an fp32 one has its weights to digest.
    let mut digest = stored.then(WeightsHasher::default);
    let mut linears = Vec::new();
    let mut scratch = Vec::new();
    for (id, name, dtype, range) in plan {
        let linear = id.block_linear().filter(|_| stored);
        let out = match linear {
            Some(_) => {
                scratch.resize(full.range(*id).len(), 0.0);
                &mut scratch[..]
            }
            None => &mut params[layout.range(*id)],
        };
        read_into(name, *dtype, *range, out)?;
        ensure!(out.iter().all(|v| v.is_finite()), "tensor {} contains NaN or infinite values", full.hf_name(*id));
        if let Some(d) = &mut digest {
            d.update(out);
        }
        if let Some(lin) = linear {
            let (d_in, d_out) = lin.dims(config.n_embd);
            linears.push(QuantizedTensor::quantize(&Linear::transpose(out, d_in, d_out), storage));
        }
    }
    let params = Arc::new(params);
    let mut model = Gpt2 { config: config.clone(), layout, params, tokenizer: Tokenizer::Bytes, linears: None };
    if let Some(digest) = digest {
        model.linears = Some(Arc::new(StoredLinears::new(config, storage, linears, digest.finish())));
        // As `stored_base` keeps it: the tied embedding's values rounded to 16 bits.
        round_in_place(model.tensor_mut(TensorId::Wte), storage.embedding());
    }
    Ok(model)
}

/// Bytes per value of the dtypes a model's tensors may have.
fn dtype_width(name: &str, dtype: Dtype) -> Result<usize> {
    match dtype {
        Dtype::F32 => Ok(4),
        Dtype::F16 | Dtype::BF16 => Ok(2),
        other => bail!("tensor {name} has dtype {other:?}; expected F32, F16 or BF16"),
    }
}

/// Little-endian f32, f16 or bf16 bytes into f32 values.
fn convert_into(name: &str, dtype: Dtype, data: &[u8], out: &mut [f32]) -> Result<()> {
    let width = dtype_width(name, dtype)?;
    ensure!(data.len() == out.len() * width, "tensor {name}: {} bytes for {} values", data.len(), out.len());
    for (o, b) in out.iter_mut().zip(data.chunks_exact(width)) {
        *o = match dtype {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        };
    }
    Ok(())
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

/// Writes `config.json`, `model.safetensors` (names with the `transformer.` prefix, as `save_pretrained` does) and
/// a BPE model's tokenizer files.
pub fn save_model_dir(model: &Gpt2, dir: &Path, dtype: StoreDtype) -> Result<()> {
    create_dir(dir)?;
    for (name, bytes) in model_files(model, dtype)? {
        write_file(&dir.join(name), &bytes)?;
    }
    Ok(())
}

/// The files of a Hugging Face model directory, in memory: `config.json`, `model.safetensors` and, for a BPE model,
/// the tokenizer files it was read from.
pub fn model_files(model: &Gpt2, dtype: StoreDtype) -> Result<Vec<(&'static str, Vec<u8>)>> {
    ensure!(
        model.linears.is_none(),
        "the model keeps its linear weights in {}: a model directory holds them in fp32 (merge or dequantize first)",
        model.linears.as_ref().map_or(String::new(), |l| l.storage.label())
    );
    let tensors: Vec<(String, Vec<usize>, &[f32])> = model
        .layout
        .iter()
        .map(|(id, range)| (model.layout.hf_name(id), model.layout.shape(id), &model.params[range]))
        .collect();
    let mut files = vec![
        ("config.json", model.config.to_json(dtype.hf_name(), &model.tokenizer).into_bytes()),
        ("model.safetensors", write_safetensors(&tensors, dtype)?),
    ];
    if let Tokenizer::Bpe(bpe) = &model.tokenizer {
        files.extend(bpe.files().named().into_iter().map(|(name, bytes)| (name, bytes.to_vec())));
    }
    Ok(files)
}

/// The header metadata of a safetensors buffer (empty when it has none).
pub fn read_safetensors_metadata(bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::new(format!("not a valid safetensors file: {e}")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A safetensors file laid out as the hub's `openai-community/gpt2` one is: names without the `transformer.`
    /// prefix, each block's `attn.bias` causal-mask buffer, and a header whose length leaves the data unaligned.
    fn hub_style_file(model: &Gpt2) -> Vec<u8> {
        let mut entries = Vec::new();
        let mut data = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, values: &[f32]| {
            let begin = data.len();
            data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            entries.push(format!(
                "\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape:?},\"data_offsets\":[{begin},{}]}}",
                data.len()
            ));
        };
        for (id, range) in model.layout.iter() {
            let name = model.layout.hf_name(id).strip_prefix("transformer.").unwrap().to_string();
            push(name, model.layout.shape(id), &model.params[range]);
        }
        let t = model.config.n_positions;
        let mask: Vec<f32> = (0..t * t).map(|i| ((i % t) <= (i / t)) as u8 as f32).collect();
        for l in 0..model.config.n_layer {
            push(format!("h.{l}.attn.bias"), vec![1, 1, t, t], &mask);
        }
        let mut header = format!("{{\"__metadata__\":{{\"format\":\"pt\"}},{}}}", entries.join(","));
        while (8 + header.len()) % 4 != 1 {
            header.push(' ');
        }
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend(header.as_bytes());
        file.extend(data);
        file
    }

    #[test]
    fn a_hub_style_file_streams_in_without_prefix_mask_buffers_or_alignment() {
        let model = Gpt2::init(ModelConfig::bytes(2, 2, 8, 16).unwrap(), 3);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), model.config.to_json("float32", &Tokenizer::Bytes)).unwrap();
        std::fs::write(dir.path().join("model.safetensors"), hub_style_file(&model)).unwrap();
        let loaded = load_model_dir(dir.path()).unwrap();
        assert_eq!(loaded.params, model.params);
        // The same bytes through the in-memory reader the page uses.
        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert_eq!(load_model_bytes(&cfg, &bytes).unwrap().params, model.params);
        // And through the streaming reader the page uses for large files (a Blob read slice by slice).
        let streamed = load_model_stream(&cfg, std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(streamed.params, model.params);
        // A file cut short is refused by its length, before any tensor is read.
        let cut = &bytes[..bytes.len() - 4];
        let e = load_model_stream(&cfg, std::io::Cursor::new(cut), cut.len() as u64).unwrap_err().to_string();
        assert!(e.starts_with("model.safetensors: not a valid safetensors file: the header describes"), "{e}");
    }

    #[test]
    fn a_directory_whose_tokenizer_is_unclear_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ModelConfig::bytes(1, 1, 8, 8).unwrap();
        cfg.vocab_size = 300;
        let model = Gpt2::init(cfg, 1);
        for (name, bytes) in model_files(&model, StoreDtype::F32).unwrap() {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        // Our byte-level directory says so in config.json: it loads with a vocabulary larger than 256.
        assert_eq!(load_model_dir(dir.path()).unwrap().tokenizer.kind(), "bytes");
        // Without that key (a GPT-2 whose tokenizer files were left behind) it is refused by name…
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let unmarked = text.replace("\"qlora_tokenizer\": \"bytes\",", "");
        assert_ne!(unmarked, text);
        std::fs::write(dir.path().join("config.json"), &unmarked).unwrap();
        let e = load_model_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no tokenizer files") && e.contains("300 tokens"), "{e}");
        // …and a directory that says bytes while holding tokenizer files is contradictory.
        std::fs::write(dir.path().join("config.json"), &text).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), b"{}").unwrap();
        let e = load_model_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
    }

    #[test]
    fn a_file_cut_short_or_pointing_outside_itself_is_refused() {
        let model = Gpt2::init(ModelConfig::bytes(1, 1, 8, 8).unwrap(), 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), model.config.to_json("float32", &Tokenizer::Bytes)).unwrap();
        let file = hub_style_file(&model);
        std::fs::write(dir.path().join("model.safetensors"), &file[..file.len() - 4]).unwrap();
        let e = load_model_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("the header describes") && e.contains("model.safetensors"), "{e}");
    }
}
