//! AdamW (PyTorch semantics: decoupled weight decay, bias-corrected moments) and global-norm gradient clipping on the
//! CPU; the learning-rate schedule and AdamW's constants are the recipe's ([`crate::train`]).

use crate::train::{ADAMW_BETA1, ADAMW_BETA2, ADAMW_EPS};

/// AdamW state over one flat parameter buffer.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u32,
}

impl AdamW {
    pub fn new(n: usize, weight_decay: f32) -> Self {
        AdamW {
            beta1: ADAMW_BETA1,
            beta2: ADAMW_BETA2,
            eps: ADAMW_EPS,
            weight_decay,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            *p -= lr * self.weight_decay * *p;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let mhat = *m / bc1;
            let vhat = *v / bc2;
            *p -= lr * mhat / (vhat.sqrt() + self.eps);
        }
    }
}

/// The global L2 norm of the gradients (before clipping).
pub fn grad_norm(grads: &[f32]) -> f32 {
    grads.iter().map(|g| (*g as f64) * (*g as f64)).sum::<f64>().sqrt() as f32
}

/// Scales gradients so their global norm is at most `max_norm` (as `torch.nn.utils.clip_grad_norm_`); returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad_norm(grads);
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g *= scale;
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_first_step_moves_by_lr() {
        // With bias correction the first Adam step is lr·sign(g) (up to eps), whatever the gradient's size.
        let mut p = vec![1.0f32, -2.0];
        let mut opt = AdamW::new(2, 0.0);
        opt.step(&mut p, &[0.5, -3.0], 0.1);
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] + 1.9).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn clipping_caps_the_norm() {
        let mut g = vec![3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((grad_norm(&g) - 1.0).abs() < 1e-5);
    }
}
