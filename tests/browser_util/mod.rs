//! Helpers shared by the browser test files (tests/browser*.rs).
#![allow(dead_code)]

use qlora_playground::gpu::Gpu;
use qlora_playground::model::{Gpt2, ModelConfig};
use wasm_bindgen::JsCast;

/// The browser's WebGPU device, or `None` where the browser's own build has no WebGPU: Firefox's release and ESR
/// builds before WebGPU shipped on Linux (Debian's firefox-esr 140) refuse every adapter request with "WebGPU is not
/// yet available in Release or late Beta builds", whatever the prefs. The test then logs why and checks nothing;
/// every other way of getting no adapter (a missing flag, a driver that fails) fails the test.
pub async fn gpu() -> Option<Gpu> {
    if let Some(why) = webgpu_left_out_of_this_build().await {
        wasm_bindgen_test::console_log!("skipped, this browser has no WebGPU: {why}");
        return None;
    }
    Some(Gpu::new().await.expect("a WebGPU adapter (webdriver.json enables it in Chromium and Firefox)"))
}

/// The browser's refusal, when it says WebGPU is left out of this build.
async fn webgpu_left_out_of_this_build() -> Option<String> {
    let get = |on: &wasm_bindgen::JsValue, key: &str| js_sys::Reflect::get(on, &key.into()).ok();
    let gpu = get(&get(&js_sys::global(), "navigator")?, "gpu")?;
    let request: js_sys::Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let refusal = wasm_bindgen_futures::JsFuture::from(promise).await.err()?;
    let message = get(&refusal, "message")?.as_string()?;
    message.contains("not yet available in Release").then_some(message)
}

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
