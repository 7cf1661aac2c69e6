//! Evaluation and generation with the CPU executor.

use super::executor::{forward, next_token_probs, Activations, Weights};
use crate::data::eval_windows;
use crate::data::tasks::{self, Example};
use crate::lora::Adapters;
use crate::model::Gpt2;
use crate::rng;
use crate::tokenizer::Tokenizer;
use crate::train::sampling::{argmax, sample, Sampling};

/// Mean next-token cross-entropy (nats) over consecutive windows of `n_positions` tokens, each window predicting its
/// own positions 1..len−1; returns (loss, predicted tokens).
pub fn eval_loss(model: &Gpt2, adapters: Option<&Adapters>, tokens: &[u32]) -> (f64, usize) {
    let w = Weights::of(model);
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

/// Continues `prompt` by `n` tokens. The context slides when it exceeds n_positions.
pub fn generate(model: &Gpt2, adapters: Option<&Adapters>, prompt: &[u32], n: usize, s: Sampling) -> Vec<u32> {
    let mut g = Generation::new(prompt, s);
    for _ in 0..n {
        g.step(model, adapters);
    }
    g.generated
}

/// A generation in progress, one token per [`Generation::step`], so that a caller can show the text as it grows and
/// stop early; stepping it n times gives exactly [`generate`]'s n tokens.
pub struct Generation {
    tokens: Vec<u32>,
    generated: Vec<u32>,
    sampling: Sampling,
    rng: rng::Rng,
}

impl Generation {
    pub fn new(prompt: &[u32], sampling: Sampling) -> Self {
        // An empty prompt starts from a newline (a byte the model has seen start lines).
        let tokens = if prompt.is_empty() { vec![b'\n' as u32] } else { prompt.to_vec() };
        Generation { tokens, generated: Vec::new(), sampling, rng: rng::stream(sampling.seed, "generate") }
    }

    /// Samples the next token from `model` (+ `adapters`) on the last n_positions tokens.
    pub fn step(&mut self, model: &Gpt2, adapters: Option<&Adapters>) -> u32 {
        let w = Weights::of(model);
        let start = self.tokens.len().saturating_sub(model.config.n_positions);
        let ctx = &self.tokens[start..];
        let mut acts = Activations::new(&model.config, adapters, 1, ctx.len());
        let probs = next_token_probs(&w, adapters, &mut acts, ctx);
        let next = sample(probs, model.tokenizer.vocab_size(), self.sampling, &mut self.rng);
        self.tokens.push(next);
        self.generated.push(next);
        next
    }

    /// The tokens generated so far (the prompt not included).
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }
}

/// Exact-match accuracy of greedy answers, computed in one batched forward pass instead of by generation.
///
/// Greedy decoding reproduces `answer` followed by a newline exactly when, with the true prefix as context, the
/// arg-max at every answer position is the next answer byte and the arg-max after the answer is `\n`: as long as every
/// earlier choice was right, the context the generator sees *is* the true prefix. So teacher forcing gives the same
/// verdict as `generate` with temperature 0 (same arg-max tie rule: the lowest token id), at a fraction of the cost.
pub fn greedy_accuracy(model: &Gpt2, adapters: Option<&Adapters>, examples: &[Example]) -> f64 {
    if !matches!(model.tokenizer, Tokenizer::Bytes) {
        // With BPE the same answer has several spellings in tokens (greedy may choose another split of the same
        // text), so only generating and comparing the decoded text gives the exact-match verdict.
        return generation_accuracy(model, adapters, examples);
    }
    let encode = |text: &str| model.tokenizer.encode(text);
    let ctx = model.config.n_positions;
    let lines: Vec<(Vec<u32>, usize)> = examples
        .iter()
        .map(|e| (encode(&e.line()), e.prompt.len()))
        .filter(|(t, _)| t.len() >= 2 && t.len() <= ctx + 1)
        .collect();
    if lines.is_empty() || lines.len() != examples.len() {
        // Examples too long for one window: fall back to generation, which slides the context.
        return generation_accuracy(model, adapters, examples);
    }
    let seq = lines.iter().map(|(t, _)| t.len() - 1).max().expect("non-empty");
    let w = Weights::of(model);
    let v = model.config.vocab_size;
    let mut right = 0usize;
    // Chunks bound the activation memory; causal attention makes the right-padding invisible to real positions.
    for chunk in lines.chunks(64) {
        let b = chunk.len();
        let mut inputs = vec![b'\n' as u32; b * seq];
        for (i, (t, _)) in chunk.iter().enumerate() {
            inputs[i * seq..i * seq + t.len() - 1].copy_from_slice(&t[..t.len() - 1]);
        }
        let mut acts = Activations::new(&model.config, adapters, b, seq);
        forward(&w, adapters, &mut acts, &inputs, None, None);
        let probs = acts.probs();
        for (i, (t, prompt_len)) in chunk.iter().enumerate() {
            let ok = (*prompt_len..t.len()).all(|pos| {
                let row = &probs[(i * seq + pos - 1) * v..(i * seq + pos) * v];
                argmax(&row[..v.min(model.tokenizer.vocab_size())]) == t[pos]
            });
            right += ok as usize;
        }
    }
    right as f64 / examples.len() as f64
}

/// The reference: exact-match accuracy by greedy generation, one example at a time.
pub fn generation_accuracy(model: &Gpt2, adapters: Option<&Adapters>, examples: &[Example]) -> f64 {
    let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    tasks::accuracy(examples, |e| {
        let out = generate(model, adapters, &model.tokenizer.encode(&e.prompt), e.answer.len() + 1, greedy);
        model.tokenizer.decode(&out).split('\n').next().unwrap_or("").to_string()
    })
}

/// The greedy answers to `examples`, counted (most frequent first): what a model answers, beside its accuracy.
pub fn greedy_answers(model: &Gpt2, adapters: Option<&Adapters>, examples: &[Example]) -> Vec<(String, usize)> {
    tasks::answer_counts(each_greedy_answer(model, adapters, examples))
}

/// [`greedy_answers`] and the exact-match accuracy from the same generations, for a model whose accuracy needs
/// generation anyway (BPE: [`greedy_accuracy`]): half the work of asking for each. The verdicts are
/// [`generation_accuracy`]'s: a continuation longer than the answer before its newline is wrong either way.
pub fn greedy_answers_and_accuracy(
    model: &Gpt2,
    adapters: Option<&Adapters>,
    examples: &[Example],
) -> (Vec<(String, usize)>, f64) {
    let answers = each_greedy_answer(model, adapters, examples);
    let mut given = answers.iter();
    let accuracy = tasks::accuracy(examples, |_| given.next().expect("one answer per example").clone());
    (tasks::answer_counts(answers), accuracy)
}

/// The first line of each example's greedy continuation (as long as the longest answer, plus its newline).
fn each_greedy_answer(model: &Gpt2, adapters: Option<&Adapters>, examples: &[Example]) -> Vec<String> {
    let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    let longest = examples.iter().map(|e| e.answer.len()).max().unwrap_or(0);
    examples
        .iter()
        .map(|e| {
            let out = generate(model, adapters, &model.tokenizer.encode(&e.prompt), longest + 1, greedy);
            model.tokenizer.decode(&out).split('\n').next().unwrap_or("").to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tasks::Task;
    use crate::model::{ModelConfig, TensorId};

    /// One generation per example gives what answering and scoring separately give, on a BPE model (where the
    /// accuracy cannot be found by teacher forcing).
    #[test]
    fn shared_generations_give_the_same_answers_and_accuracy() {
        let mut config = ModelConfig::hf_preset("gpt2", Some(1)).unwrap();
        (config.n_embd, config.n_head, config.n_positions) = (16, 2, 64);
        let model = Gpt2::init(config, 5).with_tokenizer(Tokenizer::gpt2().unwrap()).unwrap();
        let examples = Task::parse("even").unwrap().examples(3, true, 6);
        let (counts, accuracy) = greedy_answers_and_accuracy(&model, None, &examples);
        assert_eq!(counts, greedy_answers(&model, None, &examples));
        assert_eq!(accuracy, generation_accuracy(&model, None, &examples));
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<usize>(), examples.len());

        // A random model answers nothing right, so equal accuracies above could both be a constant 0. A model whose
        // greedy token is always a newline answers "" everywhere: right for exactly the examples whose answer is "".
        let mut newline = model.clone();
        newline.tensor_mut(TensorId::LnFW).fill(0.0);
        let lnf_b = newline.tensor_mut(TensorId::LnFB);
        lnf_b.fill(0.0);
        lnf_b[0] = 1.0;
        let d = newline.config.n_embd;
        let nl = newline.tokenizer.encode("\n");
        assert_eq!(nl.len(), 1, "a newline is one token");
        newline.tensor_mut(TensorId::Wte)[nl[0] as usize * d] = 10.0;
        let mut half = examples.clone();
        for e in half.iter_mut().step_by(2) {
            e.answer.clear();
        }
        let (_, accuracy) = greedy_answers_and_accuracy(&newline, None, &half);
        assert_eq!(accuracy, half.iter().filter(|e| e.answer.is_empty()).count() as f64 / half.len() as f64);
        assert_eq!(accuracy, generation_accuracy(&newline, None, &half));
        assert_eq!(greedy_answers_and_accuracy(&newline, None, &examples).1, 0.0);
    }
}
