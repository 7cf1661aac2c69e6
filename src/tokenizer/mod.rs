//! How text becomes tokens and back. Two kinds, chosen by the model directory:
//! - bytes: token = byte value (the shipped Shakespeare models; any UTF-8 text is representable);
//! - GPT-2's byte-level BPE (Hugging Face GPT-2 directories: `vocab.json` + `merges.txt` and/or `tokenizer.json`),
//!   run by Hugging Face's own `tokenizers` crate so ids equal transformers' GPT-2 tokenizer (see [`bpe`]).
//!
//! Either way every token stands for a run of bytes, so decoding is the same for both: concatenate the tokens'
//! bytes and read them as UTF-8. [`Utf8Stream`] does that incrementally, holding back a character whose bytes are
//! split across tokens until it is complete.

mod bpe;
mod stream;

pub use bpe::{Bpe, TokenizerFiles, ENDOFTEXT};
pub use stream::Utf8Stream;

use crate::Result;
use std::sync::Arc;

/// A model's tokenizer. Cheap to clone (the BPE tables are shared).
#[derive(Clone)]
pub enum Tokenizer {
    Bytes,
    Bpe(Arc<Bpe>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Bytes => f.write_str("Tokenizer::Bytes"),
            Tokenizer::Bpe(b) => write!(f, "Tokenizer::Bpe({} tokens)", b.vocab_size()),
        }
    }
}

impl Tokenizer {
    /// GPT-2's published tokenizer (vocab.json + merges.txt of `openai-community/gpt2`, shipped in `assets/gpt2/`).
    pub fn gpt2() -> Result<Self> {
        Ok(Tokenizer::Bpe(Arc::new(Bpe::gpt2()?)))
    }

    /// A short name for messages and settings: `bytes` or `gpt2-bpe`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tokenizer::Bytes => "bytes",
            Tokenizer::Bpe(_) => "gpt2-bpe",
        }
    }

    /// Number of distinct ids the tokenizer can produce (a model's vocabulary must hold at least these).
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Bpe(b) => b.vocab_size(),
        }
    }

    /// The ids of `text`. Byte-level: one id per byte. BPE: as transformers' `tokenizer.encode(text)`, with
    /// `<|endoftext|>` written in the text becoming its special id.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::Bytes => text.bytes().map(u32::from).collect(),
            Tokenizer::Bpe(b) => b.encode(text),
        }
    }

    /// The bytes a token stands for (empty for an id outside the vocabulary, which no model output can be once the
    /// vocabulary fits the model; padding rows of a larger embedding decode to nothing).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        match self {
            Tokenizer::Bytes => BYTES.get(id as usize).map(std::slice::from_ref).unwrap_or(&[]),
            Tokenizer::Bpe(b) => b.token_bytes(id),
        }
    }

    /// The ids a generation starts from: the prompt's, or for an empty prompt the token that starts a document
    /// (`<|endoftext|>`, as transformers' `generate` starts from the BOS token) or a newline for byte models.
    pub fn encode_prompt(&self, prompt: &str) -> Vec<u32> {
        match (self.encode(prompt), self.end_of_text()) {
            (ids, _) if !ids.is_empty() => ids,
            (_, Some(eot)) => vec![eot],
            (_, None) => vec![u32::from(b'\n')],
        }
    }

    /// All bytes of a token sequence.
    pub fn bytes_of(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        out
    }

    /// The text of a token sequence; bytes that are not UTF-8 (a sample cut mid-character) become U+FFFD, as
    /// transformers' `decode` does.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.bytes_of(ids)).into_owned()
    }

    /// The text of a sequence still being generated: like [`Tokenizer::decode`], but a character whose bytes are
    /// not all there yet is left out until they are (instead of showing U+FFFD for a moment).
    pub fn decode_so_far(&self, ids: &[u32]) -> String {
        let mut s = Utf8Stream::default();
        s.push(&self.bytes_of(ids))
    }

    /// A generation as transformers' `generate` returns it: up to and including the first end-of-document token.
    pub fn up_to_end_of_text<'a>(&self, ids: &'a [u32]) -> &'a [u32] {
        match self.end_of_text().and_then(|eot| ids.iter().position(|t| *t == eot)) {
            Some(i) => &ids[..=i],
            None => ids,
        }
    }

    /// The id that ends a document, where the tokenizer has one (`<|endoftext|>`, 50256 for GPT-2).
    pub fn end_of_text(&self) -> Option<u32> {
        match self {
            Tokenizer::Bytes => None,
            Tokenizer::Bpe(b) => b.end_of_text(),
        }
    }
}

/// Each byte value once, so a byte token's bytes can be borrowed.
static BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_a_split_character_waits() {
        let t = Tokenizer::Bytes;
        let ids = t.encode("é!");
        assert_eq!(ids, vec![0xC3, 0xA9, b'!' as u32]);
        assert_eq!(t.decode(&ids), "é!");
        assert_eq!(t.decode(&ids[..1]), "\u{FFFD}");
        assert_eq!(t.decode_so_far(&ids[..1]), "");
        assert_eq!(t.decode_so_far(&ids), "é!");
        assert_eq!(t.token_bytes(300), b"");
        assert_eq!(t.up_to_end_of_text(&[1, 2, 3]), &[1, 2, 3]);
    }

    #[test]
    fn a_generation_ends_with_its_first_end_of_text() {
        let t = Tokenizer::gpt2().unwrap();
        assert_eq!(t.up_to_end_of_text(&[464, 50256, 383, 50256]), &[464, 50256]);
        assert_eq!(t.up_to_end_of_text(&[464, 383]), &[464, 383]);
        assert_eq!(t.encode_prompt(""), vec![50256]);
        assert_eq!(Tokenizer::Bytes.encode_prompt(""), vec![u32::from(b'\n')]);
    }
}
