//! Helpers shared by the browser test files (tests/browser*.rs).
#![allow(dead_code)]

use qlora_playground::model::{Gpt2, ModelConfig};

/// Deterministic values in [-1, 1) without pulling an RNG crate into the wasm test build.
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// The largest difference relative to the largest magnitude of `want`.
pub fn rel(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1e-8f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale
}

/// A two-layer model small enough that pipeline compilation dominates on SwiftShader.
pub fn tiny() -> Gpt2 {
    Gpt2::init(ModelConfig::bytes(2, 2, 32, 16).unwrap(), 3)
}
