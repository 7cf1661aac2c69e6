//! Checks shared by the native GPU test files.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::accounting::{self, AdapterSpec, Arch, MemoryQuery};
use qlora_playground::cpu::Method;
use qlora_playground::gpu::{Category, GpuTrainer};
use qlora_playground::model::Gpt2;
use qlora_playground::quant::Storage;

/// The bytes the GPU allocated per category (every buffer is tagged) within 5 % of the accounting for the same run:
/// `method` over a base in `storage`, adapters of rank `rank` on every target, batch × seq tokens, fp32 training.
pub fn assert_memory_agrees(gt: &GpuTrainer, model: &Gpt2, storage: Storage, rank: u64, batch: usize, seq: usize) {
    let arch = Arch::from_model(&model.config);
    let method = gt.method;
    let q = MemoryQuery {
        method,
        storage,
        dtype_bytes: 4,
        adapters: (method != Method::Full).then(|| AdapterSpec::uniform(&arch, "all", rank).unwrap()),
        batch: batch as u64,
        seq: seq as u64,
        checkpointing: false,
    };
    let want = accounting::memory(&arch, &q).unwrap();
    let measured = gt.measured_memory();
    let got = |c: Category| measured.iter().find(|(x, _)| *x == c).unwrap().1;
    for (cat, expected) in [
        (Category::BaseWeights, want.base_weights),
        (Category::QuantConstants, want.quant_constants),
        (Category::Adapters, want.adapters),
        (Category::Gradients, want.gradients),
        (Category::Optimizer, want.optimizer),
        (Category::Activations, want.activations),
    ] {
        let g = got(cat);
        let ok = if expected == 0 { g == 0 } else { (g as f64 - expected as f64).abs() <= 0.05 * expected as f64 };
        assert!(ok, "{method} {}: {} measured {g} vs accounting {expected}", storage.label(), cat.name());
    }
}
