//! Finite-difference gradient checks of the CPU executor: every full-fine-tuning gradient tensor and every adapter
//! gradient (all targets, fp32 and nf4 base, with and without dropout) against central differences of the loss.
//!
//! Each tensor is checked along three kinds of direction u, the finite difference of the loss along u against g·u:
//! - ĝ, its analytic gradient's own direction (where g·u = |g|): a wrong scale or a wrong part of g shows here;
//! - random signs on the entries where g is exactly zero (where g·u = 0): an entry the backward never wrote (a
//!   skipped row or position) is zero in g and orthogonal to it, so only a direction of its own sees it;
//! - two seeded random directions, for an error orthogonal to g elsewhere.
//!
//! Central differences at ε and ε/2 are combined by Richardson extrapolation (error O(ε⁴)); the error, relative to
//! |g|, must be ≤ 1e-3.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::{Method, OptimConfig, Trainer};
use qlora_playground::lora::{LoraConfig, Target};
use qlora_playground::model::{Gpt2, ModelConfig};
use qlora_playground::quant::{Format, Storage};
use rand::{RngExt, SeedableRng};
use std::ops::Range;

const B: usize = 2;
const T: usize = 7;
/// Target change of the loss per finite-difference step.
const EPS_LOSS: f64 = 3e-3;

fn batch() -> (Vec<u32>, Vec<u32>) {
    let text = b"to be or not to be, that is the q";
    let inputs: Vec<u32> = (0..B * T).map(|i| text[i % 16 + i / T] as u32).collect();
    let targets: Vec<u32> = (0..B * T).map(|i| text[i % 16 + i / T + 1] as u32).collect();
    (inputs, targets)
}

fn optim() -> OptimConfig {
    OptimConfig { lr: 1e-3, min_lr: 0.0, warmup: 0, steps: 1, weight_decay: 0.0, grad_clip: 0.0 }
}

fn model() -> Gpt2 {
    // Width 24 with 3 heads (hs = 8), 2 layers; larger-than-default init so gradients are not tiny.
    let mut m = Gpt2::init(ModelConfig::bytes(2, 3, 24, 16).unwrap(), 7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for v in m.params_mut().iter_mut() {
        *v += rng.random_range(-0.05f32..0.05);
    }
    m
}

/// Checks one tensor (a range of the trainable buffer) along each direction of the module docs; returns the largest
/// error relative to |g|.
fn check_range(tr: &mut Trainer, range: Range<usize>, dropout_seed: Option<u64>) -> f64 {
    let (x, y) = batch();
    tr.compute_gradients(&x, &y, B, T, dropout_seed);
    let g: Vec<f64> = tr.grads()[range.clone()].iter().map(|v| *v as f64).collect();
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(norm > 1e-7, "gradient of {range:?} is zero; the check would prove nothing");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(range.start as u64);
    let mut sign = || if rng.random_range(0..2) == 0 { -1.0 } else { 1.0 };
    let mut directions: Vec<Vec<f64>> = vec![g.clone()];
    let unwritten: Vec<f64> = g.iter().map(|v| if *v == 0.0 { sign() } else { 0.0 }).collect();
    if unwritten.iter().any(|v| *v != 0.0) {
        directions.push(unwritten);
    }
    for _ in 0..2 {
        directions.push(g.iter().map(|_| sign()).collect());
    }
    let base: Vec<f32> = tr.trainable_params_mut()[range.clone()].to_vec();
    let mut worst = 0.0f64;
    for mut u in directions {
        let u_norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
        u.iter_mut().for_each(|v| *v /= u_norm);
        let want = g.iter().zip(&u).map(|(a, b)| a * b).sum::<f64>();
        let mut loss_at = |eps: f64| -> f64 {
            let p = &mut tr.trainable_params_mut()[range.clone()];
            for ((p, b), d) in p.iter_mut().zip(&base).zip(&u) {
                *p = (*b as f64 + eps * d) as f32;
            }
            tr.compute_gradients(&x, &y, B, T, dropout_seed)
        };
        // Step so that the loss would move by about 3e-3 along ĝ (well above f32 rounding of the loss, ~1e-6).
        let eps = (EPS_LOSS / norm).clamp(1e-3, 2e-1);
        let d1 = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps);
        let d2 = (loss_at(eps / 2.0) - loss_at(-eps / 2.0)) / eps;
        let fd = (4.0 * d2 - d1) / 3.0;
        worst = worst.max((fd - want).abs() / norm.max(fd.abs()));
    }
    tr.trainable_params_mut()[range].copy_from_slice(&base);
    worst
}

#[test]
fn full_fine_tuning_gradients() {
    let m = model();
    let ids: Vec<_> = m.layout.iter().collect();
    let names: Vec<String> = ids.iter().map(|(id, _)| m.layout.hf_name(*id)).collect();
    let mut tr = Trainer::new(&m, Method::Full, Storage::FP32, None, optim(), 1).unwrap();
    let mut worst = (0.0, String::new());
    for ((_, range), name) in ids.into_iter().zip(names) {
        let err = check_range(&mut tr, range, None);
        assert!(err <= 1e-3, "{name}: relative error {err:.2e}");
        if err > worst.0 {
            worst = (err, name);
        }
    }
    eprintln!("full: worst relative error {:.2e} ({})", worst.0, worst.1);
}

fn check_adapters(targets: &[Target], storage: Storage, dropout: f32) {
    let lora = LoraConfig { targets: targets.iter().map(|t| (*t, 3)).collect(), alpha: 6.0, rslora: false, dropout };
    let mut tr = Trainer::new(model(), Method::Qlora, storage, Some(lora), optim(), 5).unwrap();
    // B starts at zero (so training starts at the base model) which makes dA zero; give B values for the check.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let entries = tr.adapters.as_ref().unwrap().entries.clone();
    for e in &entries {
        for v in &mut tr.trainable_params_mut()[e.b.clone()] {
            *v = rng.random_range(-0.3f32..0.3);
        }
    }
    let seed = if dropout > 0.0 { Some(42) } else { None };
    let mut worst = 0.0f64;
    for e in &entries {
        for (which, range) in [("A", e.a.clone()), ("B", e.b.clone())] {
            let err = check_range(&mut tr, range, seed);
            assert!(
                err <= 1e-3,
                "layer {} {} {which} ({}): relative error {err:.2e}",
                e.layer,
                e.target,
                storage.label()
            );
            worst = worst.max(err);
        }
    }
    eprintln!("{targets:?} {} dropout {dropout}: worst relative error {worst:.2e}", storage.label());
}

#[test]
fn adapter_gradients_all_targets_fp32_base() {
    check_adapters(&[Target::Q, Target::K, Target::V, Target::O, Target::Fc, Target::Proj], Storage::FP32, 0.0);
}

#[test]
fn adapter_gradients_all_targets_nf4_base() {
    check_adapters(
        &[Target::Q, Target::K, Target::V, Target::O, Target::Fc, Target::Proj],
        Storage::new(Format::Nf4, true).unwrap(),
        0.0,
    );
}

#[test]
fn adapter_gradients_fused_qkv_nf4_base() {
    check_adapters(&[Target::Qkv, Target::O], Storage::new(Format::Nf4, false).unwrap(), 0.0);
}

#[test]
fn adapter_gradients_with_dropout() {
    check_adapters(&[Target::Q, Target::V, Target::Fc], Storage::new(Format::Nf4, false).unwrap(), 0.25);
}
