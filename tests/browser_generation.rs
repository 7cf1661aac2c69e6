//! Generation with the GPU's KV cache in a real browser (headless Chromium with WebGPU on SwiftShader, or Firefox with
//! its WebGPU on lavapipe): the same tokens as the CPU executor's generation, which recomputes. Run with the rest by
//! `wasm-pack test --headless --chrome` (or `--firefox`); the runner gives each test file 20 s, so each GPU scenario
//! has a file of its own.
#![cfg(target_arch = "wasm32")]

mod browser_util;

use browser_util::tiny;
use qlora_playground::cpu::{generate, quantize_base, Sampling};
use qlora_playground::gpu::GpuGenerator;
use qlora_playground::quant::{Format, Storage};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn kv_cache_generation_matches_cpu_in_the_browser() {
    let m = tiny();
    let storage = Storage::new(Format::Nf4, false).unwrap();
    let Some(gpu) = browser_util::gpu().await else { return };
    let gen = GpuGenerator::new(gpu, &m, storage, None).unwrap();
    let mut base = m.clone();
    quantize_base(&mut base, storage);
    let prompt: Vec<u32> = b"To be".iter().map(|c| *c as u32).collect();
    let s = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    assert_eq!(gen.generate(&prompt, 12, s).await.unwrap(), generate(&base, None, &prompt, 12, s));
}
