//! Text generation on the GPU with a KV cache: each new token runs the model for one position, appending its keys
//! and values to per-layer caches, so a token costs O(context) instead of a full forward pass over the window.
//! Sampling (temperature, top-k) happens on the CPU from the read-back probabilities, with the recipe's sampler
//! ([`crate::train::sampling`]) and the CPU executor's seed stream, so both executors generate the same text for the
//! same model and seed.

use super::activations::Activations;
use super::forward::{Attention, ForwardProgram, Recorder};
use super::kernels::{DecodeParams, EmbeddingParams, Kernels};
use super::matmul::{submit_in_pass, Dispatch, Matmul, MatmulDequant};
use super::weights::GpuWeights;
use super::{Category, Gpu, GpuBuffer};
use crate::lora::Adapters;
use crate::model::Gpt2;
use crate::quant::Storage;
use crate::train::{sample, Sampling};
use crate::{rng, Result};

pub struct GpuGenerator {
    pub gpu: Gpu,
    weights: GpuWeights,
    token: GpuBuffer,
    acts: Activations,
    /// Each block's key and value caches, `n_positions × C` floats each.
    _caches: Vec<(GpuBuffer, GpuBuffer)>,
    program: ForwardProgram,
    readback: wgpu::Buffer,
    /// Ids the tokenizer has text for: the only candidates when sampling.
    with_text: usize,
}

impl GpuGenerator {
    /// The base model with its block linear weights stored in `storage`, plus optional adapters: the training
    /// step's forward pass (`Recorder::forward`) over one position, attending through the KV caches.
    pub fn new(gpu: Gpu, model: &Gpt2, storage: Storage, adapters: Option<Adapters>) -> Result<Self> {
        let full = storage == Storage::FP32 && adapters.is_none();
        let weights = GpuWeights::upload(&gpu, model, full, storage, adapters)?;
        let cfg = model.config.clone();
        let (c, nh, v, max_t) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_positions);
        let buf =
            |label: &str, n: usize, cat: Category| gpu.buffer(label, 4 * n as u64, cat, wgpu::BufferUsages::empty());
        let token = buf("token", 1, Category::Activations)?;
        let acts = Activations::new(&gpu, &cfg, weights.adapters.as_ref(), 1, nh * max_t, 1, false)?;
        let caches = (0..cfg.n_layer)
            .map(|_| {
                Ok((
                    buf("k cache", max_t * c, Category::Activations)?,
                    buf("v cache", max_t * c, Category::Activations)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let (kernels, mm, mmq) = (Kernels::new(&gpu), Matmul::new(&gpu), MatmulDequant::new(&gpu));
        let rec = Recorder { gpu: &gpu, k: &kernels, mm: &mm, mmq: &mmq, w: &weights, acts: &acts, grads: None };
        let mut program = rec.forward(&token, 1, Attention::Decode { caches: &caches, max_t: max_t as u32 });
        rec.head_logits(&mut program.dispatches, 0, 1);
        let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: 4 * v as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let with_text = model.tokenizer.vocab_size();
        Ok(GpuGenerator { gpu, weights, token, acts, _caches: caches, program, readback, with_text })
    }

    /// Runs one position: `token` at `pos` (0-based), returning the next-token probabilities.
    pub async fn step(&self, token: u32, pos: usize) -> Result<Vec<f32>> {
        let cfg = &self.weights.cfg;
        crate::ensure!(pos < cfg.n_positions, "position {pos} is beyond the context of {}", cfg.n_positions);
        crate::ensure!((token as usize) < cfg.vocab_size, "token {token} is outside the vocabulary");
        self.gpu.queue.write_buffer(self.token.raw(), 0, bytemuck::bytes_of(&token));
        let (c, nh, t) = (cfg.n_embd as u32, cfg.n_head as u32, cfg.n_positions as u32);
        for (i, p) in &self.program.embedding_at {
            self.program.dispatches[*i].write_uniform(&self.gpu, &EmbeddingParams { pos0: pos as u32, ..*p });
        }
        for i in &self.program.attention_at {
            self.program.dispatches[*i].write_uniform(&self.gpu, &DecodeParams { pos: pos as u32, c, nh, max_t: t });
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let all: Vec<&Dispatch> = self.program.dispatches.iter().collect();
        submit_in_pass(&mut enc, &all);
        enc.copy_buffer_to_buffer(self.acts.logits.raw(), 0, &self.readback, 0, 4 * cfg.vocab_size as u64);
        self.gpu.queue.submit([enc.finish()]);
        let logits = self.gpu.map_read(&self.readback).await?;
        let maxv = logits.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
        let mut probs: Vec<f32> = logits.iter().map(|x| (x - maxv).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        Ok(probs)
    }

    /// Continues `prompt` by `n` tokens, exactly as `cpu::generate` does (the same sampler and seed stream; past the
    /// context the window slides, which re-encodes the last n_positions tokens).
    pub async fn generate(&self, prompt: &[u32], n: usize, s: Sampling) -> Result<Vec<u32>> {
        let ctx_len = self.weights.cfg.n_positions;
        let mut rng = rng::stream(s.seed, "generate");
        let mut tokens = prompt.to_vec();
        if tokens.is_empty() {
            tokens.push(b'\n' as u32); // callers pass Tokenizer::encode_prompt's ids; this only guards an empty slice
        }
        let mut out = Vec::with_capacity(n);
        let mut cached = 0usize; // tokens[..cached] sit in the KV cache at positions 0..cached
        let mut probs = Vec::new();
        for _ in 0..n {
            if tokens.len() > ctx_len {
                // Past the context the window slides: its last ctx_len tokens are re-encoded from position 0.
                for (pos, t) in tokens[tokens.len() - ctx_len..].iter().enumerate() {
                    probs = self.step(*t, pos).await?;
                }
            } else {
                for pos in cached..tokens.len() {
                    probs = self.step(tokens[pos], pos).await?;
                }
                cached = tokens.len();
            }
            let next = sample(&probs, self.with_text, s, &mut rng);
            tokens.push(next);
            out.push(next);
        }
        Ok(out)
    }

    /// Mean next-token cross-entropy over consecutive windows of n_positions tokens (each window predicting its own
    /// positions 1..len−1), decoded position by position: the same quantity as `cpu::eval_loss`.
    pub async fn eval_loss(&self, tokens: &[u32]) -> Result<(f64, usize)> {
        let mut total = 0.0f64;
        let mut count = 0usize;
        for win in crate::data::eval_windows(tokens, self.weights.cfg.n_positions) {
            for pos in 0..win.len() - 1 {
                let probs = self.step(win[pos], pos).await?;
                total -= (probs[win[pos + 1] as usize].max(f32::MIN_POSITIVE) as f64).ln();
                count += 1;
            }
        }
        Ok((if count == 0 { f64::NAN } else { total / count as f64 }, count))
    }
}
