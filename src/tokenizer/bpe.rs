//! GPT-2's byte-level BPE, run by Hugging Face's `tokenizers` crate: the Rust core of transformers' GPT-2 tokenizer,
//! so the splitting rules (the pre-tokenizer's pattern, `<|endoftext|>` found in the text first, merges by rank) are
//! transformers' own rather than a re-implementation. It is built with the crate's pure-Rust regex engine (feature
//! `unstable_wasm`, fancy-regex) on every target, so the page and the CLI split text by the same code, and the
//! golden ids of `tests/fixtures/gpt2-bpe/` hold both to transformers.
//!
//! What is ours: reading a Hugging Face directory's files from bytes (the page has no file system), checking they
//! describe a byte-level BPE, and the table from id to bytes that decoding and streaming use.
//!
//! The pipeline is assembled from the crate's concrete parts ([`Pipeline`]) rather than its `Tokenizer`, whose parts
//! are enums over every kind of tokenizer (WordPiece, Unigram, Unicode normalizers…): naming the parts keeps the other
//! kinds' code and tables out of the wasm module (1.4 MB less than `tokenizers::Tokenizer`; see BENCHMARKS.md).

use crate::{bail, ensure, Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerImpl};

/// GPT-2's tokenizer as transformers runs it: no normalizer, byte-level splitting (the regex pattern), the BPE
/// model, byte-level post-processing and decoding. The normalizer slot needs a type but stays empty (`None`).
type Pipeline = TokenizerImpl<BPE, Lowercase, ByteLevel, ByteLevel, ByteLevel>;

/// Most ids a vocabulary may have (a model's vocab_size is held to the same bound).
const MAX_VOCAB: usize = 1 << 20;

/// GPT-2's end-of-document token; written in a text it is one token (50256), as transformers reads it.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// The tokenizer files of a Hugging Face GPT-2 directory, as bytes. `tokenizer.json` alone, `vocab.json` +
/// `merges.txt`, or all three (then `tokenizer.json` is used, as transformers' `AutoTokenizer` does).
#[derive(Clone, Debug, Default)]
pub struct TokenizerFiles {
    pub vocab_json: Option<Vec<u8>>,
    pub merges_txt: Option<Vec<u8>>,
    pub tokenizer_json: Option<Vec<u8>>,
    pub tokenizer_config_json: Option<Vec<u8>>,
}

impl TokenizerFiles {
    /// The file names this reads, in the order [`TokenizerFiles::named`] lists them.
    pub const NAMES: [&'static str; 4] = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"];

    /// Whether any file that defines a tokenizer is present (`tokenizer_config.json` alone defines none).
    pub fn any(&self) -> bool {
        self.vocab_json.is_some() || self.merges_txt.is_some() || self.tokenizer_json.is_some()
    }

    /// Sets the file called `name` (one of [`TokenizerFiles::NAMES`]); false for any other name.
    pub fn set(&mut self, name: &str, bytes: Vec<u8>) -> bool {
        let slot = match name {
            "vocab.json" => &mut self.vocab_json,
            "merges.txt" => &mut self.merges_txt,
            "tokenizer.json" => &mut self.tokenizer_json,
            "tokenizer_config.json" => &mut self.tokenizer_config_json,
            _ => return false,
        };
        *slot = Some(bytes);
        true
    }

    /// The files present, by name.
    pub fn named(&self) -> Vec<(&'static str, &[u8])> {
        let slots = [&self.vocab_json, &self.merges_txt, &self.tokenizer_json, &self.tokenizer_config_json];
        Self::NAMES.iter().zip(slots).filter_map(|(n, s)| s.as_deref().map(|b| (*n, b))).collect()
    }
}

/// A loaded byte-level BPE tokenizer.
pub struct Bpe {
    inner: Pipeline,
    /// The bytes each id stands for (empty where the vocabulary has no such id).
    token_bytes: Vec<Box<[u8]>>,
    end_of_text: Option<u32>,
    /// The files it was read from, written back unchanged when the model is saved.
    files: TokenizerFiles,
}

impl Bpe {
    /// GPT-2's published vocabulary and merges (identical to `openai-community/gpt2`'s; see `assets/gpt2/README.md`).
    pub fn gpt2() -> Result<Self> {
        let files = TokenizerFiles {
            vocab_json: Some(include_bytes!("../../assets/gpt2/vocab.json").to_vec()),
            merges_txt: Some(include_bytes!("../../assets/gpt2/merges.txt").to_vec()),
            ..Default::default()
        };
        let mut bpe = Bpe::from_files(files)?;
        // A directory we write carries all the files the hub's GPT-2 has, tokenizer.json included.
        bpe.files.tokenizer_json = Some(bpe.tokenizer_json()?.into_bytes());
        bpe.files.tokenizer_config_json = Some(GPT2_TOKENIZER_CONFIG.as_bytes().to_vec());
        Ok(bpe)
    }

    /// Reads a directory's tokenizer files; each problem names the file it is in.
    pub fn from_files(files: TokenizerFiles) -> Result<Self> {
        let inner = match (&files.tokenizer_json, &files.vocab_json, &files.merges_txt) {
            (Some(json), _, _) => from_tokenizer_json(json).map_err(|e| e.context("tokenizer.json"))?,
            (None, Some(vocab), Some(merges)) => from_vocab_and_merges(vocab, merges)?,
            (None, Some(_), None) => bail!("merges.txt is missing (vocab.json needs it, or give tokenizer.json)"),
            (None, None, Some(_)) => bail!("vocab.json is missing (merges.txt needs it, or give tokenizer.json)"),
            (None, None, None) => bail!("no tokenizer files: expected vocab.json + merges.txt, or tokenizer.json"),
        };
        let source = if files.tokenizer_json.is_some() { "tokenizer.json" } else { "vocab.json" };
        let token_bytes = token_byte_table(&inner).map_err(|e| e.context(source))?;
        let end_of_text = inner.token_to_id(ENDOFTEXT);
        Ok(Bpe { inner, token_bytes, end_of_text, files })
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        // Cannot fail: every byte is a token of the vocabulary (checked when loading), so no piece of text lacks
        // an id, and the byte-level pipeline has no other failure.
        self.inner.encode_fast(text, false).expect("a byte-level BPE encodes any text").get_ids().to_vec()
    }

    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map(|b| &b[..]).unwrap_or(&[])
    }

    pub fn end_of_text(&self) -> Option<u32> {
        self.end_of_text
    }

    /// The files to write into a model directory.
    pub fn files(&self) -> &TokenizerFiles {
        &self.files
    }

    /// The tokenizer as a `tokenizer.json` text (what transformers' fast tokenizers read).
    pub fn tokenizer_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| Error::new(format!("cannot write tokenizer.json: {e}")))
    }
}

/// `tokenizer_config.json` as the hub's GPT-2 has it (what `AutoTokenizer` needs to pick GPT-2's tokenizer).
const GPT2_TOKENIZER_CONFIG: &str = r#"{
  "add_prefix_space": false,
  "bos_token": "<|endoftext|>",
  "eos_token": "<|endoftext|>",
  "model_max_length": 1024,
  "tokenizer_class": "GPT2Tokenizer",
  "unk_token": "<|endoftext|>"
}
"#;

/// The parts of a `tokenizer.json` that GPT-2's tokenizer has, each checked to be what a byte-level BPE needs.
fn from_tokenizer_json(json: &[u8]) -> Result<Pipeline> {
    let v: Value = serde_json::from_slice(json).map_err(|e| Error::new(format!("not a tokenizer file: {e}")))?;
    ensure!(v.is_object(), "not a tokenizer file: expected a JSON object");
    let kind = |part: &str| v[part]["type"].as_str().unwrap_or("none").to_string();
    ensure!(v["model"].is_object(), "not a tokenizer file: it has no model");
    // Older files (written before the model's type was recorded) leave it out; a model with merges is a BPE, as
    // the crate's own reader decides.
    let model_kind = match v["model"]["type"].as_str() {
        None if v["model"]["merges"].is_array() => "BPE".to_string(),
        _ => kind("model"),
    };
    ensure!(model_kind == "BPE", "the model is {model_kind}, not GPT-2's byte-level BPE");
    for (option, gpt2) in
        [("dropout", Value::Null), ("continuing_subword_prefix", "".into()), ("end_of_word_suffix", "".into())]
    {
        let value = &v["model"][option];
        ensure!(
            value.is_null() || *value == gpt2,
            "the model sets {option} to {value}; GPT-2's tokenizer has none (dropout makes ids random, affixes change \
             the tokens' text)"
        );
    }
    ensure!(
        kind("pre_tokenizer") == "ByteLevel",
        "the pre-tokenizer is {}, not GPT-2's ByteLevel",
        kind("pre_tokenizer")
    );
    ensure!(v["normalizer"].is_null(), "it has a normalizer ({}); GPT-2's tokenizer has none", kind("normalizer"));
    // The crate's parts deserialize from text (they borrow their type tags), so each part is read from its own text.
    let part = |name: &str| serde_json::to_string(&v[name]).expect("a JSON value prints");
    let bpe: BPE = serde_json::from_str(&part("model")).map_err(|e| Error::new(format!("model: {e}")))?;
    let split: ByteLevel =
        serde_json::from_str(&part("pre_tokenizer")).map_err(|e| Error::new(format!("pre_tokenizer: {e}")))?;
    let mut t = pipeline(bpe, split);
    // Added tokens (GPT-2 has one, <|endoftext|>) keep the ids the file gives them.
    for entry in v["added_tokens"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let token: AddedToken =
            serde_json::from_value(entry.clone()).map_err(|e| Error::new(format!("added_tokens: {e}")))?;
        let id = entry["id"].as_u64();
        let content = token.content.clone();
        if token.special {
            t.add_special_tokens(&[token]);
        } else {
            t.add_tokens(&[token]);
        }
        let got = t.token_to_id(&content).map(u64::from);
        ensure!(got == id, "added token {content:?} has id {id:?} in the file but {got:?} in the vocabulary");
    }
    Ok(t)
}

/// What transformers builds for GPT-2: byte-level splitting as `split` says (GPT-2: no prefix space), the
/// byte-level post-processor and decoder.
fn pipeline(bpe: BPE, split: ByteLevel) -> Pipeline {
    let mut t = Pipeline::new(bpe);
    t.with_pre_tokenizer(Some(split));
    t.with_post_processor(Some(ByteLevel::default()));
    t.with_decoder(Some(ByteLevel::default()));
    t
}

fn from_vocab_and_merges(vocab_json: &[u8], merges_txt: &[u8]) -> Result<Pipeline> {
    let vocab: HashMap<String, u32> = serde_json::from_slice(vocab_json)
        .map_err(|e| Error::new(format!("vocab.json: not a JSON object of token → id: {e}")))?;
    let merges = parse_merges(merges_txt).map_err(|e| e.context("merges.txt"))?;
    let has_eot = vocab.contains_key(ENDOFTEXT);
    let vocab: Vocab = vocab.into_iter().collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::new(format!("vocab.json and merges.txt do not fit together: {e}")))?;
    // GPT-2's splitting has no prefix space; <|endoftext|> is a special token, matched in the text before splitting.
    let mut t = pipeline(bpe, ByteLevel::new(false, true, true));
    if has_eot {
        t.add_special_tokens(&[AddedToken::from(ENDOFTEXT, true)]);
    }
    Ok(t)
}

/// `merges.txt`: an optional `#version` line, then one merge a line, two tokens separated by one space.
fn parse_merges(bytes: &[u8]) -> Result<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::new(format!("not UTF-8 text ({e})")))?;
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || (i == 0 && line.starts_with("#version")) {
            continue;
        }
        match line.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                merges.push((a.to_string(), b.to_string()))
            }
            _ => bail!("line {} is not two tokens separated by one space: {line:?}", i + 1),
        }
    }
    Ok(merges)
}

/// GPT-2's byte ↔ character table: byte-level BPE writes each byte as a printable character (printable Latin-1
/// bytes as themselves, the rest as U+0100 onwards in byte order), so vocab.json holds text.
fn byte_of_char() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0u32;
    let mut map = HashMap::with_capacity(256);
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(255 + next).expect("below the surrogates")
        };
        map.insert(c, b);
    }
    map
}

/// The bytes of every id: a vocabulary token's characters mapped back to bytes; an added token (`<|endoftext|>`)
/// is its own text. Also checks that every byte is a token, so that encoding cannot meet a byte without an id.
fn token_byte_table(t: &Pipeline) -> Result<Vec<Box<[u8]>>> {
    let byte_of = byte_of_char();
    let added = t.get_added_tokens_decoder();
    let vocab = t.get_vocab(true);
    let largest = vocab.values().max().map_or(0, |m| *m as usize);
    // The table has a slot per id up to the largest: an id far beyond any vocabulary would ask for gigabytes.
    ensure!(largest < MAX_VOCAB, "id {largest} is beyond the largest vocabulary this engine reads ({MAX_VOCAB} ids)");
    let size = largest + 1;
    let mut table: Vec<Box<[u8]>> = vec![Box::default(); size];
    for (token, id) in &vocab {
        let bytes: Vec<u8> = if added.contains_key(id) {
            token.as_bytes().to_vec()
        } else {
            token.chars().map(|c| byte_of.get(&c).copied()).collect::<Option<_>>().ok_or_else(|| {
                Error::new(format!("token {token:?} (id {id}) is not written in byte-level characters"))
            })?
        };
        table[*id as usize] = bytes.into_boxed_slice();
    }
    for (c, b) in &byte_of {
        ensure!(vocab.contains_key(&c.to_string()), "byte {b:#04x} ({c:?}) has no token: not a byte-level vocabulary");
    }
    Ok(table)
}
