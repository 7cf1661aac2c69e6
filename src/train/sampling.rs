//! Turning a model's next-token probabilities into a token: the sampler both executors generate with (the GPU reads
//! its probabilities back and samples here), so the same model and seed give the same text on either.

use crate::rng;
use rand::RngExt;

/// Sampling settings: temperature 0 is greedy; top_k 0 keeps every token.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: usize,
    pub seed: u64,
}

/// The next token from `probs` under `s`, drawing from `rng` unless greedy. Only the first `with_text` ids are
/// candidates: an embedding larger than the tokenizer's vocabulary has rows that stand for no text.
pub fn sample(probs: &[f32], with_text: usize, s: Sampling, rng: &mut rng::Rng) -> u32 {
    let probs = &probs[..probs.len().min(with_text)];
    if s.temperature <= 0.0 {
        return argmax(probs);
    }
    let mut cand: Vec<(usize, f64)> =
        probs.iter().enumerate().map(|(i, p)| (i, (*p as f64).max(1e-30).ln() / s.temperature as f64)).collect();
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if s.top_k > 0 {
        cand.truncate(s.top_k);
    }
    let maxl = cand[0].1;
    let weights: Vec<f64> = cand.iter().map(|(_, l)| (l - maxl).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for ((i, _), wgt) in cand.iter().zip(&weights) {
        if r < *wgt {
            return *i as u32;
        }
        r -= wgt;
    }
    cand.last().expect("non-empty").0 as u32
}

/// The first index of the largest value (greedy sampling's tie rule, which greedy accuracy shares).
pub(crate) fn argmax(p: &[f32]) -> u32 {
    p.iter().enumerate().fold((0, f32::MIN), |b, (i, x)| if *x > b.1 { (i, *x) } else { b }).0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_without_text_are_never_drawn() {
        // An embedding of 8 rows for a tokenizer of 5 ids: the 3 extra rows hold most of the probability.
        let probs = [0.01, 0.02, 0.03, 0.02, 0.02, 0.3, 0.3, 0.3];
        assert_eq!(sample(&probs, 5, Sampling { temperature: 0.0, top_k: 0, seed: 0 }, &mut rng::stream(0, "t")), 2);
        let mut r = rng::stream(1, "t");
        for _ in 0..200 {
            assert!(sample(&probs, 5, Sampling { temperature: 1.0, top_k: 0, seed: 1 }, &mut r) < 5);
        }
    }
}
