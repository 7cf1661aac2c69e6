//! GPT-2's byte-level BPE against transformers: the ids and decoded text of `tests/fixtures/gpt2-bpe/golden.json`
//! (made by `tests/hf/make_bpe_fixtures.py` with transformers' GPT-2 tokenizer), read from each kind of tokenizer
//! file set a Hugging Face directory may hold.

use qlora_playground::tokenizer::{Bpe, Tokenizer, TokenizerFiles, Utf8Stream};
use std::sync::Arc;

struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

fn golden() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-bpe/golden.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            decoded: c["decoded"].as_str().unwrap().to_string(),
        })
        .collect()
}

fn asset(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/assets/gpt2/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn check(t: &Tokenizer, what: &str) {
    let cases = golden();
    assert!(cases.len() > 300, "the fixture has its random cases");
    for c in &cases {
        assert_eq!(t.encode(&c.text), c.ids, "{what}: ids of {:?}", c.text);
        assert_eq!(t.decode(&c.ids), c.decoded, "{what}: decoding {:?}", c.text);
    }
}

#[test]
fn ids_equal_transformers_from_vocab_and_merges() {
    let files = TokenizerFiles {
        vocab_json: Some(asset("vocab.json")),
        merges_txt: Some(asset("merges.txt")),
        ..Default::default()
    };
    let t = Tokenizer::Bpe(Arc::new(Bpe::from_files(files).unwrap()));
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.end_of_text(), Some(50256));
    check(&t, "vocab.json + merges.txt");
}

#[test]
fn ids_equal_transformers_from_tokenizer_json_alone() {
    // The tokenizer.json a directory we write carries, read back on its own.
    let json = Tokenizer::gpt2().unwrap();
    let Tokenizer::Bpe(b) = &json else { unreachable!() };
    let files = TokenizerFiles { tokenizer_json: b.files().tokenizer_json.clone(), ..Default::default() };
    check(&Tokenizer::Bpe(Arc::new(Bpe::from_files(files).unwrap())), "tokenizer.json");
}

#[test]
fn merges_in_either_spelling_of_tokenizer_json_read_the_same() {
    // tokenizers ≥ 0.20 writes each merge as a pair ["Ġ", "t"]; the hub's older gpt2 tokenizer.json has "Ġ t".
    let Tokenizer::Bpe(b) = Tokenizer::gpt2().unwrap() else { unreachable!() };
    let mut v: serde_json::Value = serde_json::from_slice(b.files().tokenizer_json.as_ref().unwrap()).unwrap();
    let merges = v["model"]["merges"].as_array_mut().unwrap();
    assert!(merges[0].is_array(), "written as pairs");
    for m in merges.iter_mut() {
        let pair = m.as_array().unwrap();
        *m = serde_json::Value::String(format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()));
    }
    let files = TokenizerFiles { tokenizer_json: Some(serde_json::to_vec(&v).unwrap()), ..Default::default() };
    check(&Tokenizer::Bpe(Arc::new(Bpe::from_files(files).unwrap())), "tokenizer.json with string merges");
}

#[test]
fn an_older_tokenizer_json_without_the_model_type_reads_the_same() {
    // Older files (the layout of tokenizers before the model's type was recorded): no model type, merges as
    // strings, no use_regex, <|endoftext|> marked normalized, a ByteLevel post-processor without offset trimming.
    let legacy = gpt2_json_with(|v| {
        let model = v["model"].as_object_mut().unwrap();
        model.remove("type");
        model.remove("ignore_merges");
        model.insert("continuing_subword_prefix".into(), "".into());
        model.insert("end_of_word_suffix".into(), "".into());
        for m in model["merges"].as_array_mut().unwrap() {
            let pair = m.as_array().unwrap();
            *m = format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()).into();
        }
        v["pre_tokenizer"].as_object_mut().unwrap().remove("use_regex");
        v["added_tokens"][0]["normalized"] = true.into();
        v["post_processor"] = serde_json::json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false});
    });
    let files = TokenizerFiles { tokenizer_json: Some(legacy), ..Default::default() };
    check(&Tokenizer::Bpe(Arc::new(Bpe::from_files(files).unwrap())), "older tokenizer.json");
}

#[test]
fn streamed_decoding_shows_each_character_once_it_is_complete() {
    let t = Tokenizer::gpt2().unwrap();
    for c in golden() {
        let mut stream = Utf8Stream::default();
        let mut shown = String::new();
        for (i, id) in c.ids.iter().enumerate() {
            let piece = stream.push(t.token_bytes(*id));
            shown.push_str(&piece);
            // What a page shows after i + 1 tokens: the same text, and never a half character as U+FFFD.
            assert_eq!(shown, t.decode_so_far(&c.ids[..=i]));
            if !c.text.contains('\u{FFFD}') {
                assert!(!shown.contains('\u{FFFD}'), "{:?} after {} tokens: {shown:?}", c.text, i + 1);
            }
        }
        assert_eq!(shown + &stream.finish(), c.decoded);
    }
}

/// Our tokenizer.json for GPT-2, changed by `edit`.
fn gpt2_json_with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let Tokenizer::Bpe(b) = Tokenizer::gpt2().unwrap() else { unreachable!() };
    let mut v: serde_json::Value = serde_json::from_slice(b.files().tokenizer_json.as_ref().unwrap()).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn broken_tokenizer_files_each_get_one_message_naming_the_file() {
    let cases: Vec<(TokenizerFiles, &str)> = vec![
        (TokenizerFiles::default(), "no tokenizer files"),
        (TokenizerFiles { vocab_json: Some(asset("vocab.json")), ..Default::default() }, "merges.txt is missing"),
        (TokenizerFiles { merges_txt: Some(asset("merges.txt")), ..Default::default() }, "vocab.json is missing"),
        (
            TokenizerFiles {
                vocab_json: Some(b"[1, 2]".to_vec()),
                merges_txt: Some(asset("merges.txt")),
                ..Default::default()
            },
            "vocab.json: not a JSON object",
        ),
        (
            TokenizerFiles {
                vocab_json: Some(asset("vocab.json")),
                merges_txt: Some(b"#version: 0.2\nab\n".to_vec()),
                ..Default::default()
            },
            "merges.txt: line 2",
        ),
        (
            TokenizerFiles {
                vocab_json: Some(br#"{"a": 0, "b": 1}"#.to_vec()),
                merges_txt: Some(Vec::new()),
                ..Default::default()
            },
            "vocab.json: byte",
        ),
        (
            TokenizerFiles { tokenizer_json: Some(b"{}".to_vec()), ..Default::default() },
            "tokenizer.json: not a tokenizer file",
        ),
        (
            TokenizerFiles {
                tokenizer_json: Some(br#"{"model": {"type": "WordPiece"}, "pre_tokenizer": null}"#.to_vec()),
                ..Default::default()
            },
            "tokenizer.json: the model is WordPiece",
        ),
        (
            TokenizerFiles {
                tokenizer_json: Some(gpt2_json_with(|v| v["normalizer"] = serde_json::json!({"type": "NFC"}))),
                ..Default::default()
            },
            "tokenizer.json: it has a normalizer (NFC)",
        ),
        (
            TokenizerFiles {
                tokenizer_json: Some(gpt2_json_with(|v| v["added_tokens"][0]["id"] = 7.into())),
                ..Default::default()
            },
            "tokenizer.json: added token \"<|endoftext|>\" has id Some(7)",
        ),
        (
            TokenizerFiles {
                tokenizer_json: Some(gpt2_json_with(|v| v["model"]["dropout"] = 0.1.into())),
                ..Default::default()
            },
            "tokenizer.json: the model sets dropout to 0.1",
        ),
        (
            TokenizerFiles {
                tokenizer_json: Some(gpt2_json_with(|v| v["model"]["continuing_subword_prefix"] = "##".into())),
                ..Default::default()
            },
            "tokenizer.json: the model sets continuing_subword_prefix",
        ),
        (
            TokenizerFiles {
                vocab_json: Some({
                    let mut v: serde_json::Value = serde_json::from_slice(&asset("vocab.json")).unwrap();
                    v["far"] = 4_000_000_000u32.into();
                    serde_json::to_vec(&v).unwrap()
                }),
                merges_txt: Some(asset("merges.txt")),
                ..Default::default()
            },
            "vocab.json: id 4000000000 is beyond",
        ),
    ];
    for (files, expected) in cases {
        let e = Bpe::from_files(files).err().expect(expected).to_string();
        assert!(e.starts_with(expected), "{e:?} should start with {expected:?}");
    }
}
