//! A model's weights on the GPU, shared by training and generation: fp32 parameters in one flat buffer (every tensor
//! starting on a 64-float boundary so it can be bound on its own), the frozen base's block linear weights in their
//! storage format for LoRA/QLoRA, and the adapters in a second flat buffer.

use super::matmul::GpuQuantWeight;
use super::{Category, Gpu, GpuBuffer, View};
use crate::lora::Adapters;
use crate::model::{Gpt2, Linear, ModelConfig, ParamLayout, TensorId};
use crate::quant::{QuantizedTensor, Storage};
use crate::{ensure, Result};
use std::collections::HashMap;

/// Floats between tensor starts: 256 bytes, the largest storage-offset alignment WebGPU allows.
pub(super) const ALIGN: usize = 64;

pub(super) fn padded(len: usize) -> usize {
    len.next_multiple_of(ALIGN)
}

pub struct GpuWeights {
    pub(super) cfg: ModelConfig,
    pub(super) layout: ParamLayout,
    /// Full fine-tuning: every weight fp32 in `params` and trainable. Otherwise the block linear weights are frozen
    /// in `qweights`.
    pub(super) full: bool,
    pub(super) param_offsets: HashMap<TensorId, usize>,
    pub(super) params: GpuBuffer,
    pub(super) qweights: Vec<GpuQuantWeight>,
    pub(super) adapters: Option<Adapters>,
    /// (A start, B start) of each adapter entry in `adapter_buf`.
    pub(super) adapter_offsets: Vec<(usize, usize)>,
    pub(super) adapter_buf: Option<GpuBuffer>,
}

impl GpuWeights {
    /// `full`: upload every weight in fp32. Otherwise store the block linear weights in `storage` (taken as Linear
    /// `[out, in]` weights, exactly as `cpu::quantize_base` and bitsandbytes do) and upload `adapters` if any.
    pub fn upload(gpu: &Gpu, model: &Gpt2, full: bool, storage: Storage, adapters: Option<Adapters>) -> Result<Self> {
        let cfg = model.config.clone();
        let layout = model.layout.clone();
        let c = cfg.n_embd;
        let mut param_offsets = HashMap::new();
        let mut flat = Vec::new();
        for (id, range) in layout.iter() {
            let is_linear_weight = matches!(id, TensorId::Block(_, t) if Linear::ALL.iter().any(|l| l.weight() == t));
            if !full && is_linear_weight {
                continue;
            }
            param_offsets.insert(id, flat.len());
            flat.extend_from_slice(&model.params[range.clone()]);
            flat.resize(padded(flat.len()), 0.0);
        }
        // One buffer: over the binding limit, the message names what is in it (GPT-2's embedding alone is 154 MB).
        let label =
            if full { "the model's parameters" } else { "the unquantized parameters (embeddings, LayerNorms, biases)" };
        let params = gpu.upload(label, &flat, Category::BaseWeights)?;
        let mut qweights = Vec::new();
        if !full {
            for l in 0..cfg.n_layer {
                for lin in Linear::ALL {
                    let (d_in, d_out) = lin.dims(c);
                    let id = TensorId::Block(l, lin.weight());
                    let w = &model.params[layout.range(id)];
                    let mut linear = vec![0.0f32; w.len()];
                    for i in 0..d_in {
                        for o in 0..d_out {
                            linear[o * d_in + i] = w[i * d_out + o];
                        }
                    }
                    let q = QuantizedTensor::quantize(&linear, storage);
                    qweights.push(GpuQuantWeight::upload(gpu, &layout.hf_name(id), &q, d_out, d_in)?);
                }
            }
        }
        let mut adapter_offsets = Vec::new();
        let adapter_buf = match &adapters {
            None => None,
            Some(ad) => {
                ensure!(ad.n_embd == c, "adapter width {} does not match the model's {c}", ad.n_embd);
                let mut flat = Vec::new();
                for e in &ad.entries {
                    let a = flat.len();
                    flat.extend_from_slice(&ad.params[e.a.clone()]);
                    flat.resize(padded(flat.len()), 0.0);
                    let b = flat.len();
                    flat.extend_from_slice(&ad.params[e.b.clone()]);
                    flat.resize(padded(flat.len()), 0.0);
                    adapter_offsets.push((a, b));
                }
                Some(gpu.upload("adapters", &flat, Category::Adapters)?)
            }
        };
        Ok(GpuWeights { cfg, layout, full, param_offsets, params, qweights, adapters, adapter_offsets, adapter_buf })
    }

    pub(super) fn param(&self, id: TensorId) -> View<'_> {
        let len: usize = self.layout.shape(id).iter().product();
        self.params.view(self.param_offsets[&id], len)
    }

    /// Indices of the adapter entries on one linear layer.
    pub(super) fn entries_on(&self, l: usize, lin: Linear) -> Vec<usize> {
        self.adapters
            .as_ref()
            .map(|a| {
                a.entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.layer == l && e.target.linear() == lin)
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The buffer AdamW updates: the adapters, or every parameter for full fine-tuning.
    pub(super) fn trainable(&self) -> &GpuBuffer {
        self.adapter_buf.as_ref().unwrap_or(&self.params)
    }

    pub(super) fn trainable_len(&self) -> usize {
        self.trainable().size() as usize / 4
    }

    /// Padded GPU order → the CPU trainer's order (adapter layout, or the model layout).
    pub(super) fn unpad(&self, padded: &[f32]) -> Vec<f32> {
        match &self.adapters {
            Some(ad) => {
                let mut out = vec![0.0; ad.params.len()];
                for (e, (a, b)) in ad.entries.iter().zip(&self.adapter_offsets) {
                    out[e.a.clone()].copy_from_slice(&padded[*a..*a + e.a.len()]);
                    out[e.b.clone()].copy_from_slice(&padded[*b..*b + e.b.len()]);
                }
                out
            }
            None => {
                let mut out = vec![0.0; self.layout.total()];
                for (id, range) in self.layout.iter() {
                    let off = self.param_offsets[&id];
                    out[range.clone()].copy_from_slice(&padded[off..off + range.len()]);
                }
                out
            }
        }
    }

    /// The CPU trainer's order → padded GPU order.
    pub(super) fn pad(&self, values: &[f32]) -> Result<Vec<f32>> {
        let mut padded = vec![0.0f32; self.trainable_len()];
        match &self.adapters {
            Some(ad) => {
                ensure!(values.len() == ad.params.len(), "expected {} adapter values", ad.params.len());
                for (e, (a, b)) in ad.entries.iter().zip(&self.adapter_offsets) {
                    padded[*a..*a + e.a.len()].copy_from_slice(&values[e.a.clone()]);
                    padded[*b..*b + e.b.len()].copy_from_slice(&values[e.b.clone()]);
                }
            }
            None => {
                ensure!(values.len() == self.layout.total(), "expected {} parameters", self.layout.total());
                for (id, range) in self.layout.iter() {
                    let off = self.param_offsets[&id];
                    padded[off..off + range.len()].copy_from_slice(&values[range]);
                }
            }
        }
        Ok(padded)
    }
}
