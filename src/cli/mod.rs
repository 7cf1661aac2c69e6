//! The `qlora` command line. Human-readable output by default, one JSON object per line with `--json`.
//! Every error a user can cause prints one line naming the problem and exits with status 2.

mod commands;
mod evidence;
mod pretrain;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
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
    /// Write a freshly initialised byte-level GPT-2 model directory.
    Init(InitArgs),
    /// Mean next-byte cross-entropy of a model (with an optional adapter) on a text file.
    Eval(EvalArgs),
    /// Fine-tune a model on a text file (full, LoRA or QLoRA) and write the adapter or model.
    Finetune(FinetuneArgs),
    /// Continue a prompt with a model (and optional adapter).
    Generate(GenerateArgs),
    /// Merge an adapter into its base model: W' = deq(W0) + s·B·A, written as a plain model directory.
    Merge(MergeArgs),
    /// Median training-step time on the CPU executor.
    Bench(BenchArgs),
    /// Train a base model from scratch (or resume a checkpoint) on a text corpus, with periodic validation.
    Pretrain(PretrainArgs),
    /// Store a model's base in a format: bytes, bits per parameter and quantization error (RMSE, max) per tensor.
    Quant(QuantArgs),
    /// The evidence grid: each generated task × rank × base format × method, fine-tuned for a fixed number of steps;
    /// writes results.json, results.md (tables) and accuracy.svg (plot).
    Evidence(evidence::EvidenceArgs),
}

#[derive(Args)]
struct PretrainArgs {
    /// Training text (UTF-8).
    #[arg(long)]
    data: PathBuf,
    /// Held-out text for validation.
    #[arg(long)]
    val: PathBuf,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 192)]
    embd: usize,
    #[arg(long, default_value_t = 256)]
    ctx: usize,
    #[arg(long, default_value_t = 5000)]
    steps: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 256)]
    seq: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validate on the first this many bytes of --val every --eval-every steps (the whole file at the end).
    #[arg(long, default_value_t = 65536)]
    eval_bytes: usize,
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Output model directory; checkpoints go to OUT/checkpoint and are resumed from there when present.
    #[arg(long)]
    out: PathBuf,
    /// gpu, cpu, or auto.
    #[arg(long, default_value = "auto")]
    backend: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct QuantArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "nf4")]
    format: String,
    #[arg(long)]
    double_quant: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ParamsArgs {
    /// Model preset: gpt2, gpt2-medium, gpt2-large, gpt3-175b, llama-7b, llama-13b, llama-33b, llama-65b.
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    preset: Option<String>,
    /// A model directory (config.json).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated targets (q,k,v,qkv,o,fc,proj for GPT-2; q,k,v,o,gate,up,down for LLaMA; or all).
    #[arg(long, default_value = "q,v")]
    targets: String,
    #[arg(long, default_value_t = 8)]
    rank: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MemoryArgs {
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    preset: Option<String>,
    #[arg(long)]
    model: Option<PathBuf>,
    /// full, lora or qlora.
    #[arg(long, default_value = "qlora")]
    method: String,
    /// Base storage: fp32, fp16, bf16, int8, int4, fp4, nf4 (default: nf4 for qlora, fp32 otherwise).
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    double_quant: bool,
    #[arg(long, default_value_t = 8)]
    rank: u64,
    #[arg(long, default_value = "q,v")]
    targets: String,
    /// Training dtype of everything not quantized (fp32 in this engine; bf16 as in the QLoRA paper).
    #[arg(long, default_value = "fp32")]
    dtype: String,
    #[arg(long, default_value_t = 1)]
    batch: u64,
    #[arg(long, default_value_t = 512)]
    seq: u64,
    #[arg(long)]
    checkpointing: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InitArgs {
    #[arg(long)]
    layers: usize,
    #[arg(long)]
    heads: usize,
    #[arg(long)]
    embd: usize,
    #[arg(long)]
    ctx: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Clone)]
struct BaseArgs {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Store the frozen base in this format (fp32, fp16, bf16, int8, int4, fp4, nf4) before running.
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    double_quant: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    base: BaseArgs,
    #[arg(long)]
    text_file: PathBuf,
    /// gpu, cpu, or auto.
    #[arg(long, default_value = "auto")]
    backend: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FinetuneArgs {
    #[arg(long)]
    model: PathBuf,
    /// UTF-8 text to train on; its last 10% is held out for validation.
    #[arg(long, required_unless_present = "task", conflicts_with = "task")]
    data: Option<PathBuf>,
    /// A built-in task: add, reverse, even (exact-match accuracy) or hamlet (a held-out play).
    #[arg(long)]
    task: Option<String>,
    /// Validation examples scored for task accuracy.
    #[arg(long, default_value_t = 100)]
    eval_examples: usize,
    #[arg(long, default_value = "qlora")]
    method: String,
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// LoRA alpha (default: the rank, so the scaling α/r is 1).
    #[arg(long)]
    alpha: Option<f32>,
    /// Scale by α/√r (rsLoRA) instead of α/r.
    #[arg(long)]
    rslora: bool,
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    #[arg(long, default_value = "q,v")]
    targets: String,
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    double_quant: bool,
    /// The seed article's (incorrect) idea of QLoRA: round the trained A and B through fp16 or int4 afterwards.
    #[arg(long)]
    adapter_storage: Option<String>,
    #[arg(long, default_value_t = 100)]
    steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    #[arg(long)]
    warmup: Option<usize>,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f32,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    seq: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// gpu, cpu, or auto (the GPU when one is present; a CPU-emulated one such as lavapipe does not count).
    #[arg(long, default_value = "auto")]
    backend: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    base: BaseArgs,
    #[arg(long, default_value = "")]
    prompt: String,
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// gpu (KV-cache decoding), cpu, or auto.
    #[arg(long, default_value = "auto")]
    backend: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MergeArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    adapter: PathBuf,
    /// Quantize the base first (merge into deq(W0), as for a QLoRA run).
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    double_quant: bool,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct BenchArgs {
    /// gpu, cpu, or auto.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Measure the matrix multiplies (f32 and fused NF4) instead of a training step.
    #[arg(long)]
    matmul: bool,
    /// Measure text generation (tokens/s; the GPU decodes with its KV cache, the CPU recomputes the window).
    #[arg(long)]
    generate: bool,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 256)]
    embd: usize,
    #[arg(long, default_value_t = 256)]
    ctx: usize,
    #[arg(long, default_value = "qlora")]
    method: String,
    #[arg(long, default_value_t = 8)]
    rank: usize,
    #[arg(long, default_value = "all")]
    targets: String,
    #[arg(long)]
    format: Option<String>,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Measured steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long)]
    json: bool,
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
