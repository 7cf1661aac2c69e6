//! The `qlora` command line. Human-readable output by default, one JSON object per line with `--json` (every
//! command but `init`, `merge` and `evidence`). Every error a user can cause exits with status 2: past argument
//! parsing with one line naming the problem, clap's parse errors with the argument and the values it accepts.

mod args;
mod commands;
mod evidence;
mod pretrain;
mod profile;

use args::*;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "qlora",
    version,
    about = "Train GPT-2 fully, with LoRA, or with QLoRA over a 4-bit base; count parameters and memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trainable and total parameters for adapters on a preset or a model directory.
    Params(ParamsArgs),
    /// Memory by category (base weights, constants, adapters, gradients, optimizer, activations).
    Memory(MemoryArgs),
    /// Write a freshly initialised model directory: byte-level, or a published GPT-2 shape with GPT-2's tokenizer.
    Init(InitArgs),
    /// The token ids of a text under a model's tokenizer.
    Tokenize(TokenizeArgs),
    /// Mean next-token cross-entropy of a model (with an optional adapter) on a text file.
    Eval(EvalArgs),
    /// Fine-tune a model on a text file (full, LoRA or QLoRA) and write the adapter or model.
    Finetune(FinetuneArgs),
    /// Continue a prompt with a model (and optional adapter).
    Generate(GenerateArgs),
    /// Merge an adapter into its base model: W' = deq(W0) + s·B·A, written as a plain model directory.
    Merge(MergeArgs),
    /// Median training-step time on the chosen backend, or the step's matrix products (`--matmul`), generation speed
    /// (`--generate`), memory (`--memory`) or per-kernel cost (`--profile`).
    Bench(BenchArgs),
    /// Train a base model from scratch (or resume a checkpoint) on a text corpus, with periodic validation.
    Pretrain(PretrainArgs),
    /// Store a model's base in a format: bytes, bits per parameter and quantization error (RMSE, max) per tensor.
    Quant(QuantArgs),
    /// The evidence grid: each generated task × rank × base format × method, fine-tuned for a fixed number of steps;
    /// writes results.json, results.md (tables) and accuracy.svg (plot).
    Evidence(evidence::EvidenceArgs),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Params(a) => commands::params(a),
        Command::Memory(a) => commands::memory(a),
        Command::Init(a) => commands::init(a),
        Command::Tokenize(a) => commands::tokenize(a),
        Command::Eval(a) => commands::eval(a),
        Command::Finetune(a) => commands::finetune(a),
        Command::Generate(a) => commands::generate(a),
        Command::Merge(a) => commands::merge(a),
        Command::Bench(a) => commands::bench(a),
        Command::Quant(a) => commands::quant(a),
        Command::Pretrain(a) => pretrain::pretrain(a),
        Command::Evidence(a) => evidence::evidence(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qlora: error: {e}");
            ExitCode::from(2)
        }
    }
}
