//! The `qlora` subcommands' flags. Choices are typed (clap value enums over the engine's own [`Method`] and
//! [`Format`], whose names are the engine's), so a mistyped value is refused by the parser with the possible values
//! listed; flags that several commands share are one group each, documented once.

use crate::accounting::PRESETS;
use crate::model::HF_PRESET_NAMES;
use crate::quant::Format;
use crate::train::Method;
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

impl ValueEnum for Method {
    fn value_variants<'a>() -> &'a [Self] {
        &Method::ALL
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &Format::ALL
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

/// Where a command computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum BackendChoice {
    /// A GPU through wgpu; an error when there is none.
    Gpu,
    /// The CPU executor.
    Cpu,
    /// A real GPU when one is present (a CPU-emulated adapter such as lavapipe is slower than the CPU executor).
    Auto,
}

/// The training dtype of everything not quantized, for the memory accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Dtype {
    Fp32,
    Bf16,
    Fp16,
}

impl Dtype {
    pub(super) fn bytes(self) -> u64 {
        match self {
            Dtype::Fp32 => 4,
            Dtype::Bf16 | Dtype::Fp16 => 2,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Bf16 => "bf16",
            Dtype::Fp16 => "fp16",
        }
    }
}

/// The claim some write about QLoRA, that it quantizes the adapters: the formats A and B are rounded through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum AdapterStorage {
    /// The QLoRA paper's adapter dtype.
    Bf16,
    Fp16,
    Int4,
}

impl AdapterStorage {
    pub(super) fn name(self) -> &'static str {
        match self {
            AdapterStorage::Bf16 => "bf16",
            AdapterStorage::Fp16 => "fp16",
            AdapterStorage::Int4 => "int4",
        }
    }
}

/// How the frozen base is stored.
#[derive(Args, Clone, Debug)]
pub(super) struct StorageArgs {
    /// Store the frozen base in this format (default: nf4 for qlora, fp32 otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Double quantization: the 4-bit formats' absmax constants stored in 8 bits, in blocks of 256.
    #[arg(long)]
    pub double_quant: bool,
}

#[derive(Args, Clone, Debug)]
pub(super) struct BackendArgs {
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

#[derive(Args, Clone, Debug)]
pub(super) struct OutputArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which matrices get adapters, and their rank.
#[derive(Args, Clone, Debug)]
pub(super) struct AdapterArgs {
    /// Comma-separated targets (q,k,v,qkv,o,fc,proj for GPT-2; q,k,v,o,gate,up,down for LLaMA; or all).
    #[arg(long, default_value = "q,v")]
    pub targets: String,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
}

/// An architecture to count: a preset or a model directory.
#[derive(Args, Clone, Debug)]
pub(super) struct ArchArgs {
    #[arg(long, conflicts_with = "model", required_unless_present = "model", value_parser = PossibleValuesParser::new(PRESETS))]
    pub preset: Option<String>,
    /// A model directory (config.json).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct PretrainArgs {
    /// Training text (UTF-8).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out text for validation.
    #[arg(long)]
    pub val: PathBuf,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 192)]
    pub embd: usize,
    #[arg(long, default_value_t = 256)]
    pub ctx: usize,
    #[arg(long, default_value_t = 5000)]
    pub steps: usize,
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validate on the first this many bytes of --val every --eval-every steps (the whole file at the end).
    #[arg(long, default_value_t = 65536)]
    pub eval_bytes: usize,
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    #[arg(long, default_value_t = 250)]
    pub checkpoint_every: usize,
    /// Output model directory; the run's checkpoint goes to OUT/checkpoint and is continued from there when present.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct QuantArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// The format to store the base in.
    #[arg(long, value_enum, default_value_t = Format::Nf4)]
    pub format: Format,
    /// Double quantization: the 4-bit formats' absmax constants stored in 8 bits, in blocks of 256.
    #[arg(long)]
    pub double_quant: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct ParamsArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    #[command(flatten)]
    pub adapters: AdapterArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct MemoryArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    #[arg(long, value_enum, default_value_t = Method::Qlora)]
    pub method: Method,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub adapters: AdapterArgs,
    /// Training dtype of everything not quantized (fp32 in this engine; bf16 as in the QLoRA paper).
    #[arg(long, value_enum, default_value_t = Dtype::Fp32)]
    pub dtype: Dtype,
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    #[arg(long, default_value_t = 512)]
    pub seq: u64,
    #[arg(long)]
    pub checkpointing: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct InitArgs {
    /// A published GPT-2 shape with GPT-2's BPE tokenizer files (random weights): gpt2 (12 × 768, 12 heads),
    /// distilgpt2 (6 × 768), gpt2-medium (24 × 1024, 16 heads) or gpt2-large (36 × 1280, 20 heads); 1,024 positions
    /// unless overridden below. Without it, a byte-level model.
    #[arg(long, value_parser = PossibleValuesParser::new(HF_PRESET_NAMES))]
    pub preset: Option<String>,
    #[arg(long, required_unless_present = "preset")]
    pub layers: Option<usize>,
    #[arg(long, required_unless_present = "preset")]
    pub heads: Option<usize>,
    #[arg(long, required_unless_present = "preset")]
    pub embd: Option<usize>,
    #[arg(long, required_unless_present = "preset")]
    pub ctx: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

/// A model to run, with an optional adapter, its base stored in a format.
#[derive(Args, Clone)]
pub(super) struct BaseArgs {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Args)]
pub(super) struct TokenizeArgs {
    /// Model directory: its tokenizer files (vocab.json + merges.txt or tokenizer.json), else bytes.
    #[arg(long)]
    pub model: PathBuf,
    /// UTF-8 text to tokenize.
    #[arg(long)]
    pub text_file: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct EvalArgs {
    #[command(flatten)]
    pub base: BaseArgs,
    #[arg(long)]
    pub text_file: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct FinetuneArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// UTF-8 text to train on; its last 10% is held out for validation.
    #[arg(long, required_unless_present = "task", conflicts_with = "task")]
    pub data: Option<PathBuf>,
    /// A built-in task: add, reverse, even (exact-match accuracy) or hamlet (a held-out play).
    #[arg(long)]
    pub task: Option<String>,
    /// Validation examples scored for task accuracy.
    #[arg(long, default_value_t = 100)]
    pub eval_examples: usize,
    #[arg(long, value_enum, default_value_t = Method::Qlora)]
    pub method: Method,
    #[command(flatten)]
    pub adapters: AdapterArgs,
    /// LoRA alpha (default: the rank, so the scaling α/r is 1).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Scale by α/√r (rsLoRA) instead of α/r.
    #[arg(long)]
    pub rslora: bool,
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Round the trained A and B through this format before they are scored and written: bf16 is what the QLoRA paper
    /// keeps them in; int4 is the (incorrect) idea that QLoRA quantizes the adapters.
    #[arg(long, value_enum)]
    pub adapter_storage: Option<AdapterStorage>,
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Warmup steps (default: a tenth of the steps, at most 100).
    #[arg(long)]
    pub warmup: Option<usize>,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Largest gradient norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f32,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct GenerateArgs {
    #[command(flatten)]
    pub base: BaseArgs,
    #[arg(long, default_value = "")]
    pub prompt: String,
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    // On the GPU, generation decodes with a KV cache.
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub(super) struct MergeArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub adapter: PathBuf,
    // A format quantizes the base first (merge into deq(W0), as for a QLoRA run).
    #[command(flatten)]
    pub storage: StorageArgs,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub(super) struct BenchArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Measure the matrix multiplies (f32 and fused NF4) instead of a training step.
    #[arg(long)]
    pub matmul: bool,
    /// Measure text generation (tokens/s; the GPU decodes with its KV cache, the CPU recomputes the window).
    #[arg(long)]
    pub generate: bool,
    #[arg(long, conflicts_with = "preset")]
    pub model: Option<PathBuf>,
    /// A published GPT-2 shape, randomly initialised: gpt2 (12 × 768, vocabulary 50,257), distilgpt2 (6 × 768),
    /// gpt2-medium (24 × 1024) or gpt2-large (36 × 1280).
    #[arg(long, value_parser = PossibleValuesParser::new(HF_PRESET_NAMES))]
    pub preset: Option<String>,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 256)]
    pub embd: usize,
    #[arg(long, default_value_t = 256)]
    pub ctx: usize,
    #[arg(long, value_enum, default_value_t = Method::Qlora)]
    pub method: Method,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value = "all")]
    pub targets: String,
    /// Store the frozen base in this format (default: nf4 for qlora, fp32 otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Quantize the base's absmax constants too (QLoRA's double quantization).
    #[arg(long)]
    pub double_quant: bool,
    /// With --backend gpu: build the run and print the bytes the GPU allocates per category beside the accounting,
    /// without timing steps.
    #[arg(long)]
    pub memory: bool,
    /// With --backend gpu: build the run and print what each kernel of a training step costs on paper (dispatches,
    /// FLOPs, bytes) against the roofline of an integrated and a discrete GPU, without timing steps (see
    /// --time-kernels).
    #[arg(long, conflicts_with = "memory")]
    pub profile: bool,
    /// With --profile: also run each dispatch of the step alone on this adapter, --steps times after a warm-up, and
    /// print each kernel's median time beside its roofline (GPU timestamps where the adapter has them).
    #[arg(long, requires = "profile")]
    pub time_kernels: bool,
    /// With --backend gpu: request WebGPU's default limits (128 MiB per storage binding, 256 MiB per buffer), as a
    /// browser grants them, instead of the adapter's own.
    #[arg(long)]
    pub webgpu_limits: bool,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Measured steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}
