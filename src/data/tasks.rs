//! Built-in fine-tuning tasks with exact-match accuracy: generated examples (prompt → answer), one per line, split
//! into disjoint training and validation sets by a hash of the example, seeded so every run sees the same data.
//!
//! - `add`: two-digit addition, `23+58=81`
//! - `reverse`: reverse a lowercase word, `reverse kitab: batik`
//! - `even`: a fixed question/answer format, `Q: is 47 even? A: no`
//!
//! and one domain-shift text task without exact-match answers:
//! - `hamlet`: the text of Hamlet (held out from the base model's pretraining), its last tenth for validation.

use crate::tokenizer::Tokenizer;
use crate::{rng, Error, Result};

/// The three validation plays of the base model (data/shakespeare/val.txt, made by `cargo xtask corpus`).
const VALIDATION_PLAYS: &str = include_str!("../../data/shakespeare/val.txt");

/// A fine-tuning text task: train on one text, validate on another, no exact-match answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextTask {
    Hamlet,
}

impl TextTask {
    pub const ALL: [TextTask; 1] = [TextTask::Hamlet];

    pub fn name(self) -> &'static str {
        match self {
            TextTask::Hamlet => "hamlet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        TextTask::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The whole text of the task.
    pub fn text(self) -> &'static str {
        match self {
            // The play starts at its title line and runs to the end of the file.
            TextTask::Hamlet => {
                let start = VALIDATION_PLAYS.find("\nHamlet\n").map_or(0, |i| i + 1);
                &VALIDATION_PLAYS[start..]
            }
        }
    }
}

/// Every built-in task name, for messages.
pub fn all_names() -> String {
    Task::ALL.iter().map(|t| t.name()).chain(TextTask::ALL.iter().map(|t| t.name())).collect::<Vec<_>>().join(", ")
}
use rand::RngExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Add,
    Reverse,
    Even,
}

/// One example: the model sees `prompt` and must produce `answer` (the line ends with a newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub prompt: String,
    pub answer: String,
}

impl Example {
    pub fn line(&self) -> String {
        format!("{}{}\n", self.prompt, self.answer)
    }

    /// The same line, split where `tokenizer` puts a token boundary. GPT-2's BPE writes a space together with the
    /// word after it (" batik"), so a prompt ending in a space would ask the model to continue after a lone space
    /// token it never saw there in training; the space moves to the answer instead. Bytes split anywhere.
    pub fn on_token_boundary(self, tokenizer: &Tokenizer) -> Example {
        if matches!(tokenizer, Tokenizer::Bytes) {
            return self;
        }
        let prompt = self.prompt.trim_end_matches(' ');
        let spaces = &self.prompt[prompt.len()..];
        Example { prompt: prompt.to_string(), answer: format!("{spaces}{}", self.answer) }
    }
}

impl Task {
    pub const ALL: [Task; 3] = [Task::Add, Task::Reverse, Task::Even];

    pub fn name(self) -> &'static str {
        match self {
            Task::Add => "add",
            Task::Reverse => "reverse",
            Task::Even => "even",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| Error::new(format!("unknown task {s:?}; built-in tasks: {}", all_names())))
    }

    /// The longest answer, in bytes (generation stops there or at a newline).
    pub fn max_answer_len(self) -> usize {
        match self {
            Task::Add => 3,
            Task::Reverse => 8,
            Task::Even => 3,
        }
    }

    fn example(self, r: &mut rng::Rng) -> Example {
        match self {
            Task::Add => {
                let (a, b) = (r.random_range(10..100u32), r.random_range(10..100u32));
                Example { prompt: format!("{a}+{b}="), answer: (a + b).to_string() }
            }
            Task::Reverse => {
                let len = r.random_range(3..=8usize);
                let word: String = (0..len).map(|_| (b'a' + r.random_range(0..26u8)) as char).collect();
                Example { prompt: format!("reverse {word}: "), answer: word.chars().rev().collect() }
            }
            Task::Even => {
                let n = r.random_range(10..1000u32);
                Example { prompt: format!("Q: is {n} even? A: "), answer: if n % 2 == 0 { "yes" } else { "no" }.into() }
            }
        }
    }

    /// Whether an example belongs to the validation split (about 1 in 5), decided by its prompt alone so the two
    /// splits never share a question.
    fn is_validation(prompt: &str) -> bool {
        let mut h: u32 = 0x811c_9dc5;
        for b in prompt.bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        h % 5 == 0
    }

    /// `n` examples of one split, deterministic for `seed`.
    pub fn examples(self, seed: u64, validation: bool, n: usize) -> Vec<Example> {
        let mut r = rng::stream(seed, &format!("task-{}", self.name()));
        let mut out = Vec::with_capacity(n);
        let mut tries = 0usize;
        while out.len() < n && tries < 1000 * n.max(1) {
            tries += 1;
            let e = self.example(&mut r);
            if Self::is_validation(&e.prompt) == validation {
                out.push(e);
            }
        }
        out
    }

    /// Training text: `n` training examples, one per line.
    pub fn training_text(self, seed: u64, n: usize) -> String {
        self.examples(seed, false, n).iter().map(Example::line).collect()
    }
}

/// Exact-match accuracy of `answer_fn` (prompt → generated answer) on the validation examples.
pub fn accuracy(examples: &[Example], mut answer_fn: impl FnMut(&Example) -> String) -> f64 {
    if examples.is_empty() {
        return 0.0;
    }
    let right = examples.iter().filter(|e| answer_fn(e).trim_end_matches('\n') == e.answer).count();
    right as f64 / examples.len() as f64
}

/// Answer sets up to this size are closed (the model picks one of a few answers, as in "even"): chance is one in
/// their number, and the page shows what the model answers.
pub const CLOSED_ANSWER_SET: usize = 10;

/// What an accuracy on `examples` is worth: chance, for a closed answer set, and the score of always giving the most
/// common answer (for "even", 50 % either way: a model that says "no" to everything scores it).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Baseline {
    /// One in the number of distinct answers, when there are at most [`CLOSED_ANSWER_SET`]; else None (open answers,
    /// chance is about zero).
    pub chance: Option<f64>,
    pub majority_answer: String,
    pub majority: f64,
}

/// The [`Baseline`] of a validation set (None when it is empty).
pub fn baseline(examples: &[Example]) -> Option<Baseline> {
    let counts = answer_counts(examples.iter().map(|e| e.answer.clone()));
    let (majority_answer, top) = counts.first()?.clone();
    Some(Baseline {
        chance: (counts.len() <= CLOSED_ANSWER_SET).then(|| 1.0 / counts.len() as f64),
        majority_answer,
        majority: top as f64 / examples.len() as f64,
    })
}

/// How often each answer occurs, most frequent first (ties in alphabetical order).
pub fn answer_counts(answers: impl IntoIterator<Item = String>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for a in answers {
        match counts.iter_mut().find(|(x, _)| *x == a) {
            Some((_, n)) => *n += 1,
            None => counts.push((a, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpe_examples_split_where_the_line_has_a_token_boundary() {
        let gpt2 = Tokenizer::gpt2().unwrap();
        for task in Task::ALL {
            for e in task.examples(5, true, 40) {
                let line = gpt2.encode(&e.line());
                let split = e.clone().on_token_boundary(&gpt2);
                assert_eq!(split.line(), e.line(), "the text is unchanged");
                let parts = [gpt2.encode(&split.prompt), gpt2.encode(&format!("{}\n", split.answer))].concat();
                assert_eq!(parts, line, "{:?} | {:?}", split.prompt, split.answer);
            }
        }
        let bytes = Task::Reverse.examples(5, true, 1).remove(0);
        assert_eq!(bytes.clone().on_token_boundary(&Tokenizer::Bytes), bytes);
    }

    #[test]
    fn the_baseline_is_chance_and_the_majority_answer() {
        let even = Task::Even.examples(3, true, 50);
        let b = baseline(&even).unwrap();
        assert_eq!(b.chance, Some(0.5));
        let yes = even.iter().filter(|e| e.answer == "yes").count();
        let top = yes.max(50 - yes);
        assert_eq!(b.majority, top as f64 / 50.0);
        assert_eq!(accuracy(&even, |_| b.majority_answer.clone()), b.majority, "always the majority answer scores it");
        let add = baseline(&Task::Add.examples(3, true, 50)).unwrap();
        assert_eq!(add.chance, None, "add's answers are open");
        assert!(add.majority < 0.2);
        assert_eq!(baseline(&[]), None);
        assert_eq!(answer_counts(["b", "a", "b"].map(String::from)), [("b".to_string(), 2), ("a".to_string(), 1)]);
    }

    #[test]
    fn splits_are_disjoint_and_deterministic() {
        for t in Task::ALL {
            let train = t.examples(1, false, 300);
            let val = t.examples(1, true, 60);
            assert_eq!(train, t.examples(1, false, 300));
            assert!(val.iter().all(|v| train.iter().all(|x| x.prompt != v.prompt)), "{}", t.name());
            assert!(val.len() == 60 && train.len() == 300);
        }
    }

    #[test]
    fn hamlet_is_the_held_out_play() {
        let t = TextTask::Hamlet.text();
        assert!(t.starts_with("Hamlet\n"));
        assert!(t.len() > 100_000 && t.contains("HAMLET:"));
    }

    #[test]
    fn answers_are_right() {
        let add = Task::Add.examples(2, false, 50);
        for e in add {
            let (a, b) = e.prompt.trim_end_matches('=').split_once('+').unwrap();
            assert_eq!(a.parse::<u32>().unwrap() + b.parse::<u32>().unwrap(), e.answer.parse::<u32>().unwrap());
        }
        let acc = accuracy(&Task::Reverse.examples(3, true, 20), |e| {
            e.prompt.trim_start_matches("reverse ").trim_end_matches(": ").chars().rev().collect()
        });
        assert_eq!(acc, 1.0);
        assert_eq!(accuracy(&Task::Even.examples(3, true, 20), |_| "maybe".into()), 0.0);
    }
}

/// What a fine-tuning run trains on: a generated task, a built-in text, or the user's own text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    Task(Task),
    Text(TextTask),
    User(&'a str),
}

impl<'a> Source<'a> {
    /// A built-in task by name (generated or text).
    pub fn builtin(name: &str) -> Result<Source<'static>> {
        match TextTask::parse(name) {
            Some(t) => Ok(Source::Text(t)),
            None => Task::parse(name).map(Source::Task),
        }
    }
}

/// Training and validation tokens of a run, and the validation examples scored for accuracy (generated tasks only).
#[derive(Clone, Debug)]
pub struct FineTuneData {
    pub task: Option<Task>,
    pub split: super::Split,
    pub val_examples: Vec<Example>,
}

/// The data of a run, the same in the CLI and the page: a generated task trains on 20,000 training examples (so a run
/// never sees the same batch twice) and validates on 200 held-out ones; texts hold out their last tenth.
pub fn fine_tune_data(
    source: Source<'_>,
    tokenizer: &Tokenizer,
    seed: u64,
    seq: usize,
    eval_examples: usize,
) -> Result<FineTuneData> {
    use super::{split, Split};
    let encode = |text: &str| tokenizer.encode(text);
    Ok(match source {
        Source::Task(t) => {
            let train = encode(&t.training_text(seed, 20_000));
            let val: String = t.examples(seed, true, 200).iter().map(Example::line).collect();
            FineTuneData {
                task: Some(t),
                split: Split { train, val: encode(&val) },
                val_examples: t
                    .examples(seed, true, eval_examples)
                    .into_iter()
                    .map(|e| e.on_token_boundary(tokenizer))
                    .collect(),
            }
        }
        Source::Text(t) => {
            FineTuneData { task: None, split: split(&encode(t.text()), 0.1, seq + 1)?, val_examples: vec![] }
        }
        Source::User(text) => {
            crate::ensure!(!text.trim().is_empty(), "the text is empty");
            FineTuneData { task: None, split: split(&encode(text), 0.1, seq + 1)?, val_examples: vec![] }
        }
    })
}
