//! QLoRA training steps on WebGPU in a real browser (headless Chromium with WebGPU on SwiftShader, or Firefox with its
//! WebGPU on lavapipe) against the CPU executor. Run with the rest by `wasm-pack test --headless --chrome` (or
//! `--firefox`); the runner gives each test file 20 s, so each GPU scenario has a file of its own.
#![cfg(target_arch = "wasm32")]

mod browser_util;

use browser_util::tiny;
use qlora_playground::cpu::{Method, OptimConfig, Trainer};
use qlora_playground::gpu::GpuTrainer;
use qlora_playground::lora::{LoraConfig, Target};
use qlora_playground::quant::{Format, Storage};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn qlora_training_steps_match_cpu_in_the_browser() {
    let m = tiny();
    let lora = LoraConfig {
        targets: [Target::Q, Target::V, Target::O, Target::Fc, Target::Proj].iter().map(|t| (*t, 4)).collect(),
        alpha: 8.0,
        rslora: false,
        dropout: 0.0,
    };
    let optim = OptimConfig { lr: 5e-3, min_lr: 5e-4, warmup: 1, steps: 5, weight_decay: 0.0, grad_clip: 1.0 };
    let storage = Storage::new(Format::Nf4, true).unwrap();
    let (b, t) = (2, 9);
    let Some(gpu) = browser_util::gpu().await else { return };
    let mut gt = GpuTrainer::new(gpu, &m, Method::Qlora, storage, Some(lora.clone()), optim.clone(), 1, b, t).unwrap();
    let mut cpu = Trainer::new(&m, Method::Qlora, storage, Some(lora), optim, 1).unwrap();
    let text = b"Now is the winter of our discontent made glorious summer";
    for step in 0..5 {
        let s = step * 3;
        let x: Vec<u32> = (0..b * t).map(|i| text[s + i % t + 5 * (i / t)] as u32).collect();
        let y: Vec<u32> = (0..b * t).map(|i| text[s + 1 + i % t + 5 * (i / t)] as u32).collect();
        let c = cpu.step(&x, &y, b, t);
        let g = gt.step(&x, &y).await.unwrap();
        assert!((c.loss - g.loss).abs() <= 1e-3, "step {step}: cpu {} gpu {}", c.loss, g.loss);
        // Adam's update is blind to a gradient's scale (a lost 1/(B·T), a scale applied twice): the norm is not.
        let gn = (c.grad_norm - g.grad_norm).abs();
        assert!(gn <= 1e-3 * c.grad_norm.max(1.0), "step {step}: grad norm cpu {} gpu {}", c.grad_norm, g.grad_norm);
    }
}
