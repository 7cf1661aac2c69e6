//! Optimisation settings and their defaults, the warmup + cosine learning-rate schedule, and AdamW's constants: what
//! a step does to the trainable parameters, whichever executor takes it.

use crate::{ensure, Result};

/// AdamW's first-moment decay (PyTorch's default).
pub const ADAMW_BETA1: f32 = 0.9;
/// AdamW's second-moment decay (PyTorch's default).
pub const ADAMW_BETA2: f32 = 0.999;
/// AdamW's denominator guard (PyTorch's default).
pub const ADAMW_EPS: f32 = 1e-8;

/// Optimisation settings shared by every method.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimConfig {
    pub lr: f32,
    pub min_lr: f32,
    pub warmup: usize,
    pub steps: usize,
    pub weight_decay: f32,
    pub grad_clip: f32,
}

impl OptimConfig {
    /// The defaults around a learning rate and a step count: decay to a tenth of `lr`, warm up over a tenth of the
    /// steps (at most 100), no weight decay, gradients clipped to norm 1.
    pub fn with_defaults(lr: f32, steps: usize) -> Self {
        OptimConfig { lr, min_lr: lr / 10.0, warmup: (steps / 10).min(100), steps, weight_decay: 0.0, grad_clip: 1.0 }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0,
            "learning rate must be a number in (0, 10] (got {})",
            self.lr
        );
        ensure!(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr, "min_lr must be in [0, lr]");
        ensure!(
            self.steps >= 1 && self.steps <= 10_000_000,
            "steps must be between 1 and 10,000,000 (got {})",
            self.steps
        );
        ensure!(
            self.weight_decay.is_finite() && (0.0..1.0).contains(&self.weight_decay),
            "weight decay must be in [0, 1)"
        );
        ensure!(self.grad_clip.is_finite() && self.grad_clip >= 0.0, "gradient clip must be ≥ 0 (0 disables it)");
        Ok(())
    }
}

/// Statistics of one optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub step: usize,
    pub loss: f64,
    pub lr: f32,
    pub grad_norm: f32,
}

/// Learning rate at `step` (0-based): linear warmup to `lr` over `warmup` steps (the first step already uses
/// lr/warmup), then cosine decay to `min_lr` at the last step.
pub fn lr_at(step: usize, total: usize, warmup: usize, lr: f32, min_lr: f32) -> f32 {
    if step < warmup {
        return lr * (step + 1) as f32 / warmup as f32;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f32 / decay_steps as f32).min(1.0);
    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f32::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((lr_at(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-6);
        assert!((lr_at(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-6);
        assert!((lr_at(10, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-6);
        assert!(lr_at(99, 100, 10, 1.0, 0.0) < 0.01);
    }
}
