//! qlora-playground: a GPT-2-architecture transformer that trains fully, with LoRA, or with QLoRA (a frozen base
//! stored in bitsandbytes-exact 4-bit formats), built natively for the `qlora` CLI and for wasm32 for the page.
//!
//! Modules, one job each:
//! - [`model`]: the GPT-2 configuration, the flat parameter layout and Hugging Face model directories.
//! - [`lora`]: adapter configuration, initialisation, PEFT import/export and merging.
//! - [`quant`]: storage formats of the frozen base (fp16, bf16, int8, int4, fp4, nf4, double quantization).
//! - [`accounting`]: parameter and memory counts computed from a configuration, for any preset.
//! - [`tokenizer`]: text as tokens and back — bytes, or GPT-2's byte-level BPE (Hugging Face's `tokenizers`) — and
//!   decoding that streams whole characters.
//! - [`data`]: train/validation splits, text windows, seeded batch sampling and the built-in tasks.
//! - [`train`]: the training recipe both executors follow — method, optimisation settings and their defaults, the
//!   learning-rate schedule, AdamW's constants, dropout masks, sampling.
//! - [`cpu`]: the reference executor — forward and backward of every layer over flat buffers, AdamW, training.
//! - [`gpu`]: the WebGPU executor (wgpu natively, WebGPU in the browser) — the same step with the kernels in
//!   `shaders/`, each held against its CPU twin by parity tests.
//! - [`run`]: one training run on either executor, the same for the page and the CLI — settings and their limits,
//!   data, stepping with one step in flight, validation cadence, divergence recovery, the move to the CPU when a GPU
//!   is lost, and the one checkpoint format.
//! - [`web`]: the page's side — links, the numbers shown before training, exported runs, what the page shows about
//!   adapters and weights, and on wasm32 the wasm-bindgen API the page's Web Worker calls.
//! - [`figures`]: numbers as messages print them (thousands separated), for the CLI and the page alike.
//! - [`rng`]: seeded ChaCha8 streams, one per purpose, so runs are reproducible bit for bit.
//! - `cli` (feature `cli`, native only): the `qlora` command line.

// Numeric kernels index several buffers with one loop variable, mirroring the WGSL kernels they pair with.
#![allow(clippy::needless_range_loop)]

pub mod accounting;
pub mod cpu;
pub mod data;
mod error;
pub mod figures;
pub mod gpu;
pub mod lora;
pub mod model;
pub mod quant;
pub mod rng;
pub mod run;
pub mod tokenizer;
pub mod train;
pub mod web;

#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod cli;

pub use error::{Error, Result};
