//! Evaluation and generation with the CPU executor.

use super::executor::{forward, Activations, Weights};
use crate::data::eval_windows;
use crate::lora::Adapters;
use crate::model::Gpt2;
use crate::rng;
use rand::RngExt;

/// Mean next-token cross-entropy (nats) over consecutive windows of `n_positions` tokens, each window predicting its
/// own positions 1..len−1; returns (loss, predicted tokens).
pub fn eval_loss(model: &Gpt2, adapters: Option<&Adapters>, tokens: &[u32]) -> (f64, usize) {
    let w = Weights { cfg: &model.config, layout: &model.layout, params: &model.params };
    let mut total = 0.0f64;
    let mut count = 0usize;
    let mut acts: Option<Activations> = None;
    for win in eval_windows(tokens, model.config.n_positions) {
        let t = win.len() - 1;
        if acts.as_ref().is_none_or(|a| a.seq != t) {
            acts = Some(Activations::new(&model.config, adapters, 1, t));
        }
        let a = acts.as_mut().expect("allocated");
        let loss = forward(&w, adapters, a, &win[..t], Some(&win[1..]), None).expect("targets given");
        total += loss * t as f64;
        count += t;
    }
    (if count == 0 { f64::NAN } else { total / count as f64 }, count)
}

/// Sampling settings: temperature 0 is greedy; top_k 0 keeps every token.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: usize,
    pub seed: u64,
}

/// Continues `prompt` by `n` tokens. The context slides when it exceeds n_positions.
pub fn generate(model: &Gpt2, adapters: Option<&Adapters>, prompt: &[u32], n: usize, s: Sampling) -> Vec<u32> {
    let w = Weights { cfg: &model.config, layout: &model.layout, params: &model.params };
    let v = model.config.vocab_size;
    let mut rng = rng::stream(s.seed, "generate");
    let mut tokens = prompt.to_vec();
    if tokens.is_empty() {
        tokens.push(b'\n' as u32);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = tokens.len().saturating_sub(model.config.n_positions);
        let ctx = &tokens[start..];
        let mut acts = Activations::new(&model.config, adapters, 1, ctx.len());
        forward(&w, adapters, &mut acts, ctx, None, None);
        let probs = &acts.probs()[(ctx.len() - 1) * v..ctx.len() * v];
        let next = sample(probs, s, &mut rng);
        tokens.push(next);
        out.push(next);
    }
    out
}

pub(crate) fn sample(probs: &[f32], s: Sampling, rng: &mut rng::Rng) -> u32 {
    // Only the byte range is sampled: larger vocabularies' extra ids have no text.
    let probs = &probs[..probs.len().min(256)];
    if s.temperature <= 0.0 {
        return probs.iter().enumerate().fold((0, f32::MIN), |b, (i, p)| if *p > b.1 { (i, *p) } else { b }).0 as u32;
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
