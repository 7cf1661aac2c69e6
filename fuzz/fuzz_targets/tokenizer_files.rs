//! Tokenizer files as a user would drop them. The first byte picks which file the rest is: tokenizer.json (0),
//! merges.txt beside GPT-2's vocab.json (1), or vocab.json beside GPT-2's merges.txt (2). Loading returns a
//! tokenizer or an error, never a panic; a tokenizer that loads gives ids inside its vocabulary, which decode. (Not
//! necessarily back to the text: a file may ask for a prefix space or for added tokens that eat whitespace, as
//! transformers would honour too.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use qlora_playground::tokenizer::{Bpe, Tokenizer, TokenizerFiles};
use std::sync::Arc;

const VOCAB: &[u8] = include_bytes!("../../assets/gpt2/vocab.json");
const MERGES: &[u8] = include_bytes!("../../assets/gpt2/merges.txt");
const TEXT: &str = "Hello <|endoftext|> wörld 👍🏽\n\t  'll 42";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let rest = Some(rest.to_vec());
    let files = match mode % 3 {
        0 => TokenizerFiles { tokenizer_json: rest, ..Default::default() },
        1 => TokenizerFiles { vocab_json: Some(VOCAB.to_vec()), merges_txt: rest, ..Default::default() },
        _ => TokenizerFiles { vocab_json: rest, merges_txt: Some(MERGES.to_vec()), ..Default::default() },
    };
    if let Ok(bpe) = Bpe::from_files(files) {
        let t = Tokenizer::Bpe(Arc::new(bpe));
        let ids = t.encode(TEXT);
        assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()), "ids inside the vocabulary");
        let _ = (t.decode(&ids), t.decode_so_far(&ids));
    }
});
