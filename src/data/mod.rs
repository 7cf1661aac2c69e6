//! Token streams for training: train/validation splits, seeded batches and the evaluation windows (text becomes
//! tokens through the model's tokenizer, `crate::tokenizer`).

pub mod tasks;

use crate::{ensure, rng, Error, Result};
use rand::RngExt;

/// Reads a text file for training or evaluation: it must be UTF-8 and non-empty.
pub fn read_text_file(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::new(format!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    ensure!(!text.is_empty(), "{} is empty", path.display());
    Ok(text)
}

/// A token stream split into training and validation parts.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
}

/// The last `val_fraction` of the text (at least `min_len` tokens each side) is held out for validation.
pub fn split(tokens: &[u32], val_fraction: f64, min_len: usize) -> Result<Split> {
    ensure!(
        tokens.len() >= 2 * min_len,
        "the text has {} tokens; at least {} are needed for a training and a validation part of {} each",
        tokens.len(),
        2 * min_len,
        min_len
    );
    let n_val = ((tokens.len() as f64 * val_fraction) as usize).clamp(min_len, tokens.len() - min_len);
    let cut = tokens.len() - n_val;
    Ok(Split { train: tokens[..cut].to_vec(), val: tokens[cut..].to_vec() })
}

/// `batch` random windows of `seq + 1` tokens: inputs are the first `seq`, targets the last `seq`.
pub fn sample_batch(tokens: &[u32], batch: usize, seq: usize, rng: &mut rng::Rng) -> Result<(Vec<u32>, Vec<u32>)> {
    ensure!(
        tokens.len() > seq,
        "the training text has {} tokens; a sequence of {seq} needs at least {}",
        tokens.len(),
        seq + 1
    );
    let mut inputs = Vec::with_capacity(batch * seq);
    let mut targets = Vec::with_capacity(batch * seq);
    for _ in 0..batch {
        let start = rng.random_range(0..tokens.len() - seq);
        inputs.extend_from_slice(&tokens[start..start + seq]);
        targets.extend_from_slice(&tokens[start + 1..start + seq + 1]);
    }
    Ok((inputs, targets))
}

/// Consecutive non-overlapping windows of `window` tokens (the last may be shorter); each window predicts its own
/// positions 1..len−1, so windows of one token are dropped.
pub fn eval_windows(tokens: &[u32], window: usize) -> impl Iterator<Item = &[u32]> {
    tokens.chunks(window.max(2)).filter(|w| w.len() >= 2)
}
