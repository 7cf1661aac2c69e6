//! The page keeps one GPU step in flight (mapAsync of one step's loss pending while the next is queued), in a real
//! browser (headless Chromium with WebGPU on SwiftShader, or Firefox with its WebGPU on lavapipe). Run with the rest by
//! `wasm-pack test --headless --chrome` (or `--firefox`); the runner gives each test file 20 s, so each GPU scenario
//! has a file of its own.
#![cfg(target_arch = "wasm32")]

mod browser_util;

use browser_util::tiny;
use qlora_playground::gpu::Gpu;
use qlora_playground::run::{Run, Settings};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Steps kept in flight give the losses of steps awaited one by one, bit for bit, and the step left in flight is
/// handed over by drain.
#[wasm_bindgen_test]
async fn steps_in_flight_give_the_awaited_losses_in_the_browser() {
    let base = tiny();
    let s = Settings { steps: 20, batch: 1, seq: 16, r: 4, ..Default::default() };
    let Some(gpu) = browser_util::gpu().await else { return };
    let mut serial = Run::new(&base, s.clone(), None, Some(gpu)).unwrap();
    let mut piped = Run::new(&base, s, None, Some(Gpu::new().await.unwrap())).unwrap();
    let mut awaited = Vec::new();
    for _ in 0..3 {
        awaited.push(serial.step(false).await.unwrap().loss);
    }
    let mut kept = vec![piped.step(true).await.unwrap().loss, piped.step(true).await.unwrap().loss];
    assert!(piped.step_in_flight());
    kept.push(piped.drain().await.unwrap().expect("step 2 was in flight").loss);
    assert_eq!(kept, awaited);
}
