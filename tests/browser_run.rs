//! The page's `Run` on WebGPU in a real browser (headless Chromium with WebGPU on SwiftShader, or Firefox with its
//! WebGPU on lavapipe) against the CPU executor, on a model whose attention is as sharp as a trained one's. Run with
//! the rest by `wasm-pack test --headless --chrome` (or `--firefox`); the runner gives each test file 20 s, so each
//! GPU scenario has a file of its own.
#![cfg(target_arch = "wasm32")]

mod browser_util;

use qlora_playground::model::{BlockTensor, Gpt2, ModelConfig, TensorId};
use qlora_playground::run::{Run, Settings};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A small model whose attention is as sharp as a trained one's: the query and key weights scaled up until softmax
/// arguments reach far below −87, where SwiftShader returned garbage for exp() until the arguments were floored. (The
/// shipped model exposed that first, but its run outlasts the test runner's timeout on SwiftShader.)
fn sharp() -> Gpt2 {
    let mut m = Gpt2::init(ModelConfig::bytes(2, 2, 64, 64).unwrap(), 11);
    for layer in 0..2 {
        // c_attn's weight is [in, 3·out] (Conv1D): scale the q and k columns of every row.
        let w = m.tensor_mut(TensorId::Block(layer, BlockTensor::AttnW));
        for row in w.chunks_mut(3 * 64) {
            for x in &mut row[..2 * 64] {
                *x *= 40.0;
            }
        }
    }
    m
}

#[wasm_bindgen_test]
async fn sharp_attention_run_matches_cpu_in_the_browser() {
    let base = sharp();
    let s = Settings { steps: 20, batch: 1, seq: 32, ..Default::default() };
    let Some(gpu) = browser_util::gpu().await else { return };
    let mut on_gpu = Run::new(&base, s.clone(), None, Some(gpu)).unwrap();
    let mut on_cpu = Run::new(&base, s, None, None).unwrap();
    assert_eq!(on_gpu.backend(), "webgpu");
    for _ in 0..3 {
        let (c, g) = (on_cpu.step(false).await.unwrap(), on_gpu.step(false).await.unwrap());
        assert!(
            c.loss.is_finite() && (c.loss - g.loss).abs() <= 1e-3,
            "step {}: cpu {} gpu {}",
            c.step,
            c.loss,
            g.loss
        );
        // Adam's update is blind to a gradient's scale; the norm is not.
        let gn = (c.grad_norm - g.grad_norm).abs();
        assert!(
            gn <= 1e-3 * c.grad_norm.max(1.0),
            "step {}: grad norm cpu {} gpu {}",
            c.step,
            c.grad_norm,
            g.grad_norm
        );
    }
    let (vc, vg) = (on_cpu.validate().await.unwrap(), on_gpu.validate().await.unwrap());
    assert!((vc.val_loss - vg.val_loss).abs() <= 1e-3, "validation: cpu {} gpu {}", vc.val_loss, vg.val_loss);
    assert_eq!(vc.accuracy, vg.accuracy);
}
