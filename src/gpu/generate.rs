//! Text generation on the GPU with a KV cache: each new token runs the model for one position, appending its keys
//! and values to per-layer caches, so a token costs O(context) instead of a full forward pass over the window.
//! Sampling (temperature, top-k) happens on the CPU from the read-back probabilities, with the recipe's sampler
//! ([`crate::train::sampling`]) and the CPU executor's seed stream, so both executors generate the same text for the
//! same model and seed.

use super::kernels::{DecodeParams, EmbeddingParams, Kernels};
use super::matmul::{submit_in_pass, Dispatch, Matmul, MatmulDequant, MatmulShape};
use super::train::Builder;
use super::weights::GpuWeights;
use super::{Category, Gpu, GpuBuffer};
use crate::lora::Adapters;
use crate::model::{BlockTensor, Gpt2, Linear, TensorId};
use crate::quant::Storage;
use crate::train::{sample, Sampling};
use crate::{rng, Result};

pub struct GpuGenerator {
    pub gpu: Gpu,
    weights: GpuWeights,
    token: GpuBuffer,
    logits: GpuBuffer,
    _buffers: Vec<GpuBuffer>,
    program: Vec<Dispatch>,
    /// Indices in `program` of the dispatches whose uniform carries the position.
    embedding_at: usize,
    attention_at: Vec<usize>,
    readback: wgpu::Buffer,
}

impl GpuGenerator {
    /// The base model with its block linear weights stored in `storage`, plus optional adapters.
    pub fn new(gpu: Gpu, model: &Gpt2, storage: Storage, adapters: Option<Adapters>) -> Result<Self> {
        let full = storage == Storage::FP32 && adapters.is_none();
        let weights = GpuWeights::upload(&gpu, model, full, storage, adapters)?;
        let cfg = model.config.clone();
        let (c, nh, v, max_t) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_positions);
        let buf =
            |label: &str, n: usize| gpu.buffer(label, 4 * n as u64, Category::Activations, wgpu::BufferUsages::empty());
        let token = buf("token", 1)?;
        let logits = buf("logits", v)?;
        let lora_u: Vec<GpuBuffer> = match &weights.adapters {
            Some(ad) => ad.entries.iter().map(|e| buf("lora u", e.rank)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let kernels = Kernels::new(&gpu);
        let mm = Matmul::new(&gpu);
        let mmq = MatmulDequant::new(&gpu);
        let b =
            Builder { gpu: &gpu, k: &kernels, mm: &mm, mmq: &mmq, w: &weights, bt: 1, grads: None, lora_u: &lora_u };
        let (c32, nh32, v32, t32) = (c as u32, nh as u32, v as u32, max_t as u32);
        let eps = cfg.layer_norm_epsilon as f32;
        let mut owned = Vec::new();
        let mut program = Vec::new();
        let x = buf("x", c)?;
        program.push(kernels.embedding_forward(
            &gpu,
            1,
            1,
            c32,
            x.all(),
            token.all(),
            b.w.param(TensorId::Wte),
            b.w.param(TensorId::Wpe),
        ));
        let embedding_at = 0;
        let mut attention_at = Vec::new();
        let no_dropout: [Option<(GpuBuffer, GpuBuffer)>; 4] = Default::default();
        let att = buf("attention scratch", nh * max_t)?;
        let mut res = x;
        let mut layer_bufs = Vec::new();
        for l in 0..cfg.n_layer {
            let bp = |t: BlockTensor| b.w.param(TensorId::Block(l, t));
            let (ln1, stats1, qkv, atty, attproj, res2) = (
                buf("ln1", c)?,
                buf("stats", 2)?,
                buf("qkv", 3 * c)?,
                buf("atty", c)?,
                buf("attproj", c)?,
                buf("res2", c)?,
            );
            let (ln2, stats2, fch, fch_gelu, fcproj, res3) = (
                buf("ln2", c)?,
                buf("stats", 2)?,
                buf("fch", 4 * c)?,
                buf("fch gelu", 4 * c)?,
                buf("fcproj", c)?,
                buf("res3", c)?,
            );
            let kcache =
                gpu.buffer("k cache", 4 * (max_t * c) as u64, Category::Activations, wgpu::BufferUsages::empty())?;
            let vcache =
                gpu.buffer("v cache", 4 * (max_t * c) as u64, Category::Activations, wgpu::BufferUsages::empty())?;
            program.push(kernels.layernorm_forward(
                &gpu,
                1,
                c32,
                eps,
                ln1.all(),
                stats1.all(),
                res.all(),
                bp(BlockTensor::Ln1W),
                bp(BlockTensor::Ln1B),
            ));
            b.linear_forward(&mut program, l, Linear::Attn, &ln1, &qkv, &no_dropout);
            attention_at.push(program.len());
            program.push(kernels.attention_decode(
                &gpu,
                c32,
                nh32,
                t32,
                atty.all(),
                qkv.all(),
                kcache.all(),
                vcache.all(),
                att.all(),
            ));
            b.linear_forward(&mut program, l, Linear::AttnProj, &atty, &attproj, &no_dropout);
            program.push(kernels.residual_forward(&gpu, c32, res2.all(), res.all(), attproj.all()));
            program.push(kernels.layernorm_forward(
                &gpu,
                1,
                c32,
                eps,
                ln2.all(),
                stats2.all(),
                res2.all(),
                bp(BlockTensor::Ln2W),
                bp(BlockTensor::Ln2B),
            ));
            b.linear_forward(&mut program, l, Linear::Fc, &ln2, &fch, &no_dropout);
            program.push(kernels.gelu_forward(&gpu, 4 * c32, fch.all(), fch_gelu.all()));
            b.linear_forward(&mut program, l, Linear::MlpProj, &fch_gelu, &fcproj, &no_dropout);
            program.push(kernels.residual_forward(&gpu, c32, res3.all(), res2.all(), fcproj.all()));
            owned.push(res);
            res = res3;
            layer_bufs
                .extend([ln1, stats1, qkv, atty, attproj, res2, ln2, stats2, fch, fch_gelu, fcproj, kcache, vcache]);
        }
        let (lnf, statsf) = (buf("lnf", c)?, buf("stats", 2)?);
        program.push(kernels.layernorm_forward(
            &gpu,
            1,
            c32,
            eps,
            lnf.all(),
            statsf.all(),
            res.all(),
            b.w.param(TensorId::LnFW),
            b.w.param(TensorId::LnFB),
        ));
        let wte_off = weights.param_offsets[&TensorId::Wte] as u32;
        let head = MatmulShape { b_offset: wte_off, ..MatmulShape::new(1, c32, v32, false, true) };
        program.push(mm.prepare(&gpu, head, lnf.all(), weights.params.all(), logits.all()));
        owned.extend([res, lnf, statsf, att]);
        owned.extend(layer_bufs);
        owned.extend(lora_u);
        let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: 4 * v as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(GpuGenerator { gpu, weights, token, logits, _buffers: owned, program, embedding_at, attention_at, readback })
    }

    /// Runs one position: `token` at `pos` (0-based), returning the next-token probabilities.
    pub async fn step(&self, token: u32, pos: usize) -> Result<Vec<f32>> {
        let cfg = &self.weights.cfg;
        crate::ensure!(pos < cfg.n_positions, "position {pos} is beyond the context of {}", cfg.n_positions);
        crate::ensure!((token as usize) < cfg.vocab_size, "token {token} is outside the vocabulary");
        self.gpu.queue.write_buffer(self.token.raw(), 0, bytemuck::bytes_of(&token));
        let (c, nh, t) = (cfg.n_embd as u32, cfg.n_head as u32, cfg.n_positions as u32);
        self.program[self.embedding_at].write_uniform(
            &self.gpu,
            &EmbeddingParams { rows: 1, t: 1, c, groups_x: c.div_ceil(256), pos0: pos as u32, _pad: [0; 3] },
        );
        for i in &self.attention_at {
            self.program[*i].write_uniform(&self.gpu, &DecodeParams { pos: pos as u32, c, nh, max_t: t });
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let all: Vec<&Dispatch> = self.program.iter().collect();
        submit_in_pass(&mut enc, &all);
        enc.copy_buffer_to_buffer(self.logits.raw(), 0, &self.readback, 0, 4 * cfg.vocab_size as u64);
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
            tokens.push(b'\n' as u32);
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
            let next = sample(&probs, s, &mut rng);
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
