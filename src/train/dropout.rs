//! The adapter dropout's keep/drop decisions, regenerated from a seed instead of stored: both executors, and the
//! forward and backward pass of each, draw the same masks.

use crate::rng;
use rand::RngExt;

/// The seed of step `step`'s dropout masks (shared by both executors so their runs agree).
pub fn dropout_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(step as u64)
}

/// The keep/drop decisions of the adapter dropout on linear `li` of layer `l`: the same sequence in the forward and
/// the backward pass, regenerated from the step's seed instead of stored.
pub fn dropout_mask(seed: u64, l: usize, li: usize, p: f32) -> impl Iterator<Item = bool> {
    let mut r = rng::stream(seed, &format!("dropout-{l}-{li}"));
    std::iter::repeat_with(move || r.random::<f32>() >= p)
}
