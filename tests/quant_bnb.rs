//! The 4-bit formats reproduce bitsandbytes 0.50.2 bit for bit (tests/fixtures/bnb/bnb_4bit_vectors.safetensors:
//! a 96×200 weight quantized with quantize_4bit on the CPU) — packed bytes, constants, double-quantization codes and
//! dequantized values — and every format round-trips within its documented error. The fixtures are committed and
//! pinned by SHA-256; tests/fixtures/bnb/make_bnb_fixtures.py regenerates them from bitsandbytes.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::quant::{codebooks, Format, QuantizedTensor, Scales, Storage, Stored};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::PathBuf;

/// `sha256sum` of each committed fixture: a changed file must come with its new hash (and the script's run).
const VECTORS: (&str, &str) =
    ("bnb_4bit_vectors.safetensors", "8a3bec6fc74d333ca9c36645234b3d5b175790774004d43c8e689507671595f2");
const CODEBOOKS: (&str, &str) = ("codebooks.json", "92d59911653cb1ed888333fc62939b3981ba8ad6eb12178e68b81431fe47f860");

/// A fixture's bytes, after checking that they are the ones the hash pins.
fn fixture((name, sha256): (&str, &str)) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join("bnb").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(
        sha256_hex(&bytes),
        sha256,
        "{} is not the committed fixture (regenerate it with make_bnb_fixtures.py and update the hash)",
        path.display()
    );
    bytes
}

/// What `sha256sum` prints for `data`.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

struct Vectors {
    f32s: HashMap<String, Vec<f32>>,
    u8s: HashMap<String, Vec<u8>>,
}

fn vectors() -> Vectors {
    let bytes = fixture(VECTORS);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut u8s = HashMap::new();
    for name in st.names() {
        let t = st.tensor(name).unwrap();
        if t.dtype() == safetensors::Dtype::U8 {
            u8s.insert(name.to_string(), t.data().to_vec());
        }
    }
    let f32s = st
        .names()
        .into_iter()
        .filter(|n| st.tensor(n).unwrap().dtype() == safetensors::Dtype::F32)
        .map(|n| {
            (
                n.to_string(),
                st.tensor(n).unwrap().data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            )
        })
        .collect();
    Vectors { f32s, u8s }
}

fn check(prefix: &str, format: Format, dq: bool) {
    let v = vectors();
    let weight = &v.f32s["weight"];
    let q = QuantizedTensor::quantize(weight, Storage::new(format, dq).unwrap());
    let Stored::Packed4 { bytes, scales } = &q.stored else { panic!("4-bit format stores packed bytes") };
    assert_eq!(bytes, &v.u8s[&format!("{prefix}.packed")], "{prefix}: packed bytes differ from bitsandbytes");
    match scales {
        Scales::F32(absmax) => {
            let expected = &v.f32s[&format!("{prefix}.absmax")];
            assert_eq!(
                absmax.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
        Scales::Double { codes, nested_absmax, offset } => {
            assert_eq!(
                codes,
                &v.u8s[&format!("{prefix}.absmax_u8")],
                "{prefix}: absmax codes differ from bitsandbytes"
            );
            let nested = &v.f32s[&format!("{prefix}.nested_absmax")];
            assert_eq!(
                nested_absmax.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                nested.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(
                offset.to_bits(),
                v.f32s[&format!("{prefix}.absmax_offset")][0].to_bits(),
                "{prefix}: offset differs"
            );
        }
    }
    let deq = q.dequantize();
    let expected = &v.f32s[&format!("{prefix}.dequantized")];
    let worst = deq.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst == 0.0, "{prefix}: dequantized values differ by {worst}");
}

#[test]
fn nf4_matches_bitsandbytes() {
    check("nf4", Format::Nf4, false);
}

#[test]
fn nf4_double_quant_matches_bitsandbytes() {
    check("nf4_dq", Format::Nf4, true);
}

#[test]
fn fp4_matches_bitsandbytes() {
    check("fp4", Format::Fp4, false);
}

#[test]
fn fp4_double_quant_matches_bitsandbytes() {
    check("fp4_dq", Format::Fp4, true);
}

#[test]
fn codebooks_match_reference_file() {
    let json: serde_json::Value = serde_json::from_slice(&fixture(CODEBOOKS)).unwrap();
    let get = |k: &str| json[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>();
    assert_eq!(get("nf4"), codebooks::NF4.to_vec());
    assert_eq!(
        get("fp4").iter().map(|x| x.abs()).collect::<Vec<_>>(),
        codebooks::FP4.iter().map(|x| x.abs()).collect::<Vec<_>>()
    );
    assert_eq!(get("dynamic_map_signed_8bit"), codebooks::DYNAMIC_SIGNED_8BIT.to_vec());
}
