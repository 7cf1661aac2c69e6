//! Exported runs: one zip a reader can keep, share, load in PEFT, and import back into the playground.
//!
//! ```text
//! run-….zip
//! ├── README.txt                   what each file is, and the PEFT lines that load the adapter
//! ├── run.json                     settings, step, and the loss/validation history the page drew
//! ├── state.safetensors            the resumable state (web::checkpoint): parameters, AdamW moments, sampler
//! ├── adapter_config.json          LoRA/QLoRA: a PEFT adapter directory …
//! ├── adapter_model.safetensors    … that PeftModel.from_pretrained loads
//! │   (full fine-tuning: config.json + model.safetensors, a transformers model directory)
//! └── train.txt                    the reader's own text, when the run trained on it
//! ```
//!
//! Import needs only `state.safetensors` (and `train.txt` for a run on the reader's text); `run.json` restores the
//! chart. Files may sit in one folder inside the zip (an archive unpacked and zipped again), and a bare
//! `state.safetensors` is accepted too.

use crate::{bail, ensure, Error, Result};
use std::io::{Cursor, Read, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

pub const STATE: &str = "state.safetensors";
pub const RUN_JSON: &str = "run.json";
pub const USER_TEXT: &str = "train.txt";
pub const README: &str = "README.txt";

/// Largest file read out of an archive: more than any run the page can train, and a zip bomb stops here.
const MAX_ENTRY: u64 = 1 << 30;

/// What an imported archive gives back.
#[derive(Debug)]
pub struct RunArchive {
    pub state: Vec<u8>,
    pub run_json: Option<String>,
    pub user_text: Option<String>,
}

/// Zips `files` (name, bytes) in order: text compressed, safetensors stored (floats barely compress, and storing
/// keeps the export quick in a browser tab).
pub fn write_archive(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let io = |e: std::io::Error| Error::new(format!("cannot write the archive: {e}"));
    for (name, bytes) in files {
        let method =
            if name.ends_with(".safetensors") { CompressionMethod::Stored } else { CompressionMethod::Deflated };
        // Large files need zip64 records; the writer only adds them when told the size may exceed 4 GiB.
        let options =
            SimpleFileOptions::default().compression_method(method).large_file(bytes.len() >= u32::MAX as usize);
        zip.start_file(*name, options).map_err(|e| Error::new(format!("cannot write the archive: {e}")))?;
        zip.write_all(bytes).map_err(io)?;
    }
    let cursor = zip.finish().map_err(|e| Error::new(format!("cannot write the archive: {e}")))?;
    Ok(cursor.into_inner())
}

/// The archive of a run: `state` from [`crate::run::Checkpoint::to_bytes`], `weights` from `Run::weight_files`,
/// `run_json` as the page writes it, the reader's text if the run trained on it.
pub fn export_run(
    state: &[u8],
    weights: &[(&'static str, Vec<u8>)],
    run_json: &str,
    user_text: Option<&str>,
) -> Result<Vec<u8>> {
    let run: serde_json::Value = serde_json::from_str(run_json).map_err(|e| Error::new(format!("run.json: {e}")))?;
    let adapter = weights.iter().any(|(n, _)| *n == "adapter_config.json");
    let settings = &run["settings"];
    let base = (settings["method"] == "qlora")
        .then(|| (settings["format"].as_str().unwrap_or("nf4").to_string(), settings["dq"].as_bool().unwrap_or(false)));
    let readme = readme(adapter, base);
    let mut files: Vec<(&str, &[u8])> =
        vec![(README, readme.as_bytes()), (RUN_JSON, run_json.as_bytes()), (STATE, state)];
    files.extend(weights.iter().map(|(n, b)| (*n, b.as_slice())));
    if let Some(t) = user_text {
        files.push((USER_TEXT, t.as_bytes()));
    }
    write_archive(&files)
}

/// How to load the frozen base as a QLoRA run's was stored, in bitsandbytes' words (`base`: format and double
/// quantization of a QLoRA run).
fn bitsandbytes_hint(base: Option<(String, bool)>) -> String {
    match base {
        Some((f, dq)) if f == "nf4" || f == "fp4" => format!(
            "    This QLoRA run kept its base in {f}{}: load it the same way to evaluate it exactly as the playground did,\n    \
             BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"{f}\", bnb_4bit_use_double_quant={}).\n",
            if dq { " with double quantization" } else { "" },
            if dq { "True" } else { "False" }
        ),
        Some((f, _)) => format!(
            "    This QLoRA run kept its base in {f} (absmax per block of 64), a format bitsandbytes does not offer in this\n    \
             form: loaded in fp32 the base differs from the playground's by that rounding.\n"
        ),
        None => String::new(),
    }
}

fn readme(adapter: bool, base: Option<(String, bool)>) -> String {
    let weights = if adapter {
        format!(
            "adapter_config.json, adapter_model.safetensors\n    A PEFT LoRA adapter for the playground's GPT-2 base (config.json of its model directory). In Python:\n\n        \
             from transformers import AutoModelForCausalLM\n        from peft import PeftModel\n        \
             model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_DIR), UNZIPPED_DIR)\n\n    \
             PEFT keeps one adapter per module, and q, k and v are slices of GPT-2's fused c_attn: adapters on them are\n    \
             one c_attn adapter whose rank is the sum of theirs, with B zero outside each one's block, and lora_alpha\n    \
             set so that PEFT's alpha/r is the playground's scaling. The product is the same; the rank in\n    \
             adapter_config.json is that sum, and PEFT's count of trainable parameters includes the zero blocks.\n\n{}",
            bitsandbytes_hint(base)
        )
    } else {
        "config.json, model.safetensors\n    The fully fine-tuned model, a transformers directory: AutoModelForCausalLM.from_pretrained(UNZIPPED_DIR).\n".into()
    };
    format!(
        "A run exported by qlora-playground.\n\n\
         state.safetensors\n    Everything needed to continue the run: drop this zip on the playground's \"Import run\".\n\
         run.json\n    The settings and the loss and validation history shown on the page.\n{weights}\
         train.txt (when present)\n    The text the run trained on.\n"
    )
}

/// Reads an exported run (or a bare `state.safetensors`).
pub fn read_archive(bytes: &[u8]) -> Result<RunArchive> {
    if !bytes.starts_with(b"PK") {
        ensure!(
            bytes.len() >= 8 && bytes.get(8) == Some(&b'{'),
            "this file is neither an exported run (.zip) nor a run state (state.safetensors)"
        );
        return Ok(RunArchive { state: bytes.to_vec(), run_json: None, user_text: None });
    }
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Error::new(format!("this file is not a readable zip archive: {e}")))?;
    let state = read_entry(&mut zip, STATE)?
        .ok_or_else(|| Error::new(format!("the archive has no {STATE}: it is not a run exported by the playground")))?;
    let text = |zip: &mut ZipArchive<Cursor<&[u8]>>, name: &str| -> Result<Option<String>> {
        read_entry(zip, name)?
            .map(|b| String::from_utf8(b).map_err(|_| Error::new(format!("{name} in the archive is not UTF-8"))))
            .transpose()
    };
    let run_json = text(&mut zip, RUN_JSON)?;
    let user_text = text(&mut zip, USER_TEXT)?;
    Ok(RunArchive { state, run_json, user_text })
}

/// The entry whose file name (last path component) is `name`, if there is exactly one.
fn read_entry(zip: &mut ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Option<Vec<u8>>> {
    let matches: Vec<usize> = (0..zip.len())
        .filter(|&i| zip.name_for_index(i).is_some_and(|n| n == name || n.ends_with(&format!("/{name}"))))
        .collect();
    let index = match matches[..] {
        [] => return Ok(None),
        [i] => i,
        _ => bail!("the archive holds {} files named {name}; keep one run per archive", matches.len()),
    };
    let entry = zip.by_index(index).map_err(|e| Error::new(format!("{name} in the archive: {e}")))?;
    ensure!(entry.size() <= MAX_ENTRY, "{name} in the archive is {} bytes; at most {MAX_ENTRY} are read", entry.size());
    let mut out = Vec::with_capacity(entry.size() as usize);
    // The size in the header can lie: read one byte past the limit to notice.
    entry
        .take(MAX_ENTRY + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::new(format!("{name} in the archive cannot be read: {e}")))?;
    ensure!(out.len() as u64 <= MAX_ENTRY, "{name} in the archive is larger than {MAX_ENTRY} bytes");
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_back_at_the_top_or_in_one_folder() {
        let zip = write_archive(&[(RUN_JSON, b"{\"step\":3}"), (STATE, b"\x08\0\0\0\0\0\0\0{}      ")]).unwrap();
        let a = read_archive(&zip).unwrap();
        assert_eq!(a.run_json.as_deref(), Some("{\"step\":3}"));
        assert_eq!(&a.state[8..10], b"{}");
        assert!(a.user_text.is_none());
        let nested =
            write_archive(&[("run-7/state.safetensors", b"x"), ("run-7/train.txt", "héllo".as_bytes())]).unwrap();
        let a = read_archive(&nested).unwrap();
        assert_eq!((a.state.as_slice(), a.user_text.as_deref()), (&b"x"[..], Some("héllo")));
    }

    #[test]
    fn other_files_are_refused_with_a_reason() {
        let err = |b: &[u8]| read_archive(b).unwrap_err().to_string();
        assert!(err(b"hello").contains("neither an exported run"));
        assert!(err(b"PK\x03\x04 truncated").contains("not a readable zip"));
        assert!(err(&write_archive(&[("notes.txt", b"hi")]).unwrap()).contains("has no state.safetensors"));
        let two = write_archive(&[("a/state.safetensors", b"1"), ("b/state.safetensors", b"2")]).unwrap();
        assert!(err(&two).contains("2 files named state.safetensors"));
        let latin1 = write_archive(&[(STATE, b"x"), (USER_TEXT, b"caf\xe9")]).unwrap();
        assert!(err(&latin1).contains("train.txt in the archive is not UTF-8"));
    }
}
