//! Every storage format round-trips within its documented error, reports its documented bits per parameter, and the
//! CPU executor's saved activations equal the accounting's formula.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::accounting::{self, AdapterSpec, Arch, MemoryQuery};
use qlora_playground::cpu::Activations;
use qlora_playground::lora::{Adapters, LoraConfig, Target};
use qlora_playground::model::ModelConfig;
use qlora_playground::quant::{round_in_place, Format, QuantizedTensor, Storage};
use qlora_playground::train::Method;
use rand::{RngExt, SeedableRng};

fn weights(n: usize) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    (0..n).map(|_| r.random_range(-1.0f32..1.0) * r.random_range(0.0f32..0.2)).collect()
}

/// Largest gap between neighbouring codebook values (a value is at most half of it away from its code).
fn max_gap(format: Format) -> f32 {
    let mut c = QuantizedTensor::codebook4(format).to_vec();
    if format == Format::Int4 {
        c.retain(|v| *v >= -1.0);
    }
    c.sort_by(f32::total_cmp);
    c.windows(2).map(|w| w[1] - w[0]).fold(0.0, f32::max)
}

#[test]
fn every_format_round_trips_within_its_documented_error() {
    let w = weights(64 * 37 + 5); // a trailing partial block
    for format in Format::ALL {
        for dq in [false, true] {
            let Ok(storage) = Storage::new(format, dq) else {
                continue;
            };
            let q = QuantizedTensor::quantize(&w, storage);
            let back = q.dequantize();
            assert_eq!(back.len(), w.len());
            for (i, (x, y)) in w.iter().zip(&back).enumerate() {
                let block = &w[i / 64 * 64..((i / 64 + 1) * 64).min(w.len())];
                let absmax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let bound = match format {
                    Format::Fp32 => 0.0,
                    Format::Fp16 => x.abs() * 2f32.powi(-11) + 6e-8, // half an ulp; subnormals below 6e-5
                    Format::Bf16 => x.abs() * 2f32.powi(-8),
                    Format::Int8 => absmax / 254.0 * 1.0001,
                    Format::Int4 => absmax / 14.0 * 1.0001,
                    // half the widest gap of the codebook, plus the error of the double-quantized absmax itself
                    Format::Fp4 | Format::Nf4 => {
                        absmax * (max_gap(format) / 2.0 * 1.0001) + if dq { absmax * 0.02 } else { 0.0 }
                    }
                };
                assert!((x - y).abs() <= bound, "{}: value {i} {x} → {y} (bound {bound})", storage.label());
            }
            let err = q.error(&w);
            assert!(err.max_abs as f32 <= w.iter().fold(0.0f32, |m, v| m.max(v.abs())));
        }
    }
}

#[test]
fn bits_per_parameter() {
    let nf4 = Storage::new(Format::Nf4, false).unwrap();
    let dq = Storage::new(Format::Nf4, true).unwrap();
    let n = 4096 * 4096;
    assert_eq!(nf4.bits_per_param(n), 4.5);
    let b = dq.bits_per_param(n);
    assert!((b - 4.127).abs() < 1e-3, "nf4 + double quant: {b} bits per parameter");
    assert_eq!(Storage::new(Format::Fp16, false).unwrap().bits_per_param(n), 16.0);
    assert_eq!(Storage::new(Format::Int8, false).unwrap().bits_per_param(n), 8.5);
    // The stored tensor reports the same bytes as the formula.
    let w = weights(64 * 300);
    let q = QuantizedTensor::quantize(&w, dq);
    let (values, constants) = q.bytes();
    assert_eq!(values, 64 * 300 / 2);
    assert_eq!(constants, 300 + 4 * 2 + 4);
}

#[test]
fn executor_activations_equal_the_accounting() {
    let cfg = ModelConfig::bytes(3, 4, 32, 64).unwrap();
    let (b, t) = (3usize, 40usize);
    let lora = LoraConfig::uniform(&[Target::Q, Target::V, Target::Fc], 4, 4.0);
    let ad = Adapters::zeros(lora, cfg.n_layer, cfg.n_embd).unwrap();
    let acts = Activations::new(&cfg, Some(&ad), b, t);
    let arch = Arch::from_model(&cfg);
    let q = MemoryQuery {
        method: Method::Lora,
        storage: Storage::FP32,
        dtype_bytes: 4,
        adapters: Some(AdapterSpec::uniform(&arch, "q,v,fc", 4).unwrap()),
        batch: b as u64,
        seq: t as u64,
        checkpointing: false,
    };
    assert_eq!(acts.saved_bytes(), accounting::memory(&arch, &q).unwrap().activations);
}

/// The dequantizer the CPU executor runs before each product with a stored weight (split into pieces over threads,
/// 4-bit levels looked up per block), and rounding in place, give every value as the format defines it: over three pieces of 16,384 values
/// and an odd tail, so a piece boundary, a partial last block and a lone last nibble are all crossed.
#[test]
fn dequantizing_gives_each_value_as_the_format_defines_it() {
    use qlora_playground::quant::{Scales, Stored};
    let w = weights(3 * 16384 + 64 * 2 + 7);
    for format in Format::ALL {
        for dq in [false, true] {
            let Ok(storage) = Storage::new(format, dq) else {
                continue;
            };
            let q = QuantizedTensor::quantize(&w, storage);
            let absmax = |s: &Scales| s.absmax();
            let want: Vec<f32> = match &q.stored {
                Stored::F32(v) => v.clone(),
                Stored::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
                Stored::Bf16(v) => v.iter().map(|h| h.to_f32()).collect(),
                Stored::Int8 { values, scales } => {
                    let a = absmax(scales);
                    values.iter().enumerate().map(|(i, v)| (*v as f32 / 127.0) * a[i / 64]).collect()
                }
                Stored::Packed4 { bytes, scales } => {
                    let (a, code) = (absmax(scales), QuantizedTensor::codebook4(format));
                    (0..w.len())
                        .map(|i| {
                            let nibble = if i % 2 == 0 { bytes[i / 2] >> 4 } else { bytes[i / 2] & 15 };
                            code[nibble as usize] * a[i / 64]
                        })
                        .collect()
                }
            };
            let mut got = vec![f32::NAN; w.len()];
            q.dequantize_into(&mut got);
            // Rounding in place (the embedding's way to 16 bits) gives the same values without the copies.
            let mut rounded = w.clone();
            round_in_place(&mut rounded, storage);
            for (i, ((g, r), x)) in got.iter().zip(&rounded).zip(&want).enumerate() {
                assert!(g.to_bits() == x.to_bits(), "{}: value {i} is {g}, defined as {x}", storage.label());
                assert!(r.to_bits() == x.to_bits(), "{}: value {i} rounds in place to {r}, not {x}", storage.label());
            }
        }
    }
}
