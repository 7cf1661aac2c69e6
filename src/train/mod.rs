//! The training recipe both executors follow, so that a run on the CPU and on the GPU is the same run: the method,
//! the optimisation settings with their defaults, the learning-rate schedule and AdamW's constants, the dropout masks'
//! seeds, and the sampler that turns a model's probabilities into text. Nothing here computes a layer; `cpu` and
//! `gpu` each run this recipe their own way.

pub mod dropout;
pub mod method;
pub mod optim;
pub mod sampling;

pub use dropout::{dropout_mask, dropout_seed};
pub use method::{Method, FULL_KEEPS_FP32};
pub use optim::{lr_at, OptimConfig, StepStats, ADAMW_BETA1, ADAMW_BETA2, ADAMW_EPS};
pub use sampling::{sample, Sampling};
