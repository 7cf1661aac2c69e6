//! The reference executor: plain Rust over flat f32 buffers, multi-threaded with rayon where it pays.
//! Its functions pair one to one with the WGSL kernels of the GPU executor.

#[cfg(all(feature = "openblas", not(target_arch = "wasm32")))]
mod blas;
pub mod eval;
pub mod executor;
pub mod layers;
mod matmul;
pub mod optim;
/// The page's matrix multiply (natively only for its tests).
#[cfg(any(target_arch = "wasm32", test))]
mod packed;
pub mod products;
pub mod train;

/// The recipe's names where they were before [`crate::train`] held them (tests and older callers import them here).
pub use crate::train::{dropout_seed, Method, OptimConfig, Sampling, StepStats};
pub use eval::{eval_loss, generate, Generation};
pub use executor::{forward, forward_backward, next_token_probs, Activations, GradTarget, Weights};
pub use matmul::{gemm, Mat};
pub use train::{base_in, quantize_base, stored_base, QuantReport, Trainer};
