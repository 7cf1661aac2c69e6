//! A model's weights on the GPU, shared by training and generation: the fp32 parameters in shards (buffers no larger
//! than one storage binding, every tensor starting on a 64-float boundary so it can be bound on its own), the frozen
//! base's block linear weights in their storage format for LoRA/QLoRA, and the adapters in one more buffer.
//!
//! WebGPU binds at most `maxStorageBufferBindingSize` bytes at once (128 MiB by default) and allocates at most
//! `maxBufferSize` (256 MiB): GPT-2's token embedding alone is 154 MB and its fp32 parameters 498 MB. So tensors are
//! packed into shards under both limits, and the embedding, the one tensor larger than a binding, is split by
//! vocabulary rows into parts; the kernels that read it (the gather, the tied head) run once per part.

use super::matmul::GpuQuantWeight;
use super::{Category, Gpu, GpuBuffer, View};
use crate::lora::Adapters;
use crate::model::{Gpt2, Linear, ModelConfig, ParamLayout, TensorId};
use crate::quant::{QuantizedTensor, Storage};
use crate::{ensure, Error, Result};
use std::collections::HashMap;
use std::ops::Range;

/// Floats between tensor starts: 256 bytes, the largest storage-offset alignment WebGPU allows.
pub(super) const ALIGN: usize = 64;

pub(super) fn padded(len: usize) -> usize {
    len.next_multiple_of(ALIGN)
}

/// Where a tensor (or a part of the embedding) starts: its shard and its first float there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub shard: usize,
    pub offset: usize,
}

/// A part of the token embedding: vocabulary rows `rows`, stored at `place`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WtePart {
    pub rows: Range<usize>,
    pub place: Place,
}

/// One part of the token embedding as the kernels read it.
pub(super) struct WteRef<'a> {
    pub rows: Range<usize>,
    pub store: WteStore<'a>,
}

/// Where an embedding part's values are: fp32 in a parameter shard, or fp16 as a frozen weight `[rows, C]`.
pub(super) enum WteStore<'a> {
    F32(Place),
    F16(&'a GpuQuantWeight),
}

/// How parameters are laid out over shards of at most `cap` floats each.
#[derive(Clone, Debug, Default)]
pub struct ShardPlan {
    pub places: HashMap<TensorId, Place>,
    pub wte: Vec<WtePart>,
    /// Floats per shard (padded).
    pub sizes: Vec<usize>,
}

impl ShardPlan {
    /// Packs the tensors `keep` selects, in layout order, into shards of at most `cap` floats: a tensor goes into the
    /// current shard if it fits, else starts a new one; the embedding is cut into parts of as many whole vocabulary
    /// rows as fit a shard. `cap` must hold one embedding row and every other tensor whole.
    pub fn new(layout: &ParamLayout, c: usize, cap: usize, keep: impl Fn(TensorId) -> bool) -> Result<ShardPlan> {
        let cap = cap / ALIGN * ALIGN;
        ensure!(cap >= padded(c), "a storage binding of {} bytes cannot hold one embedding row", 4 * cap);
        let mut plan = ShardPlan::default();
        let place = |plan: &mut ShardPlan, len: usize| -> Place {
            let need = padded(len);
            let shard = plan.sizes.len().wrapping_sub(1);
            match plan.sizes.last_mut() {
                Some(used) if *used + need <= cap => {
                    let p = Place { shard, offset: *used };
                    *used += need;
                    p
                }
                _ => {
                    plan.sizes.push(need);
                    Place { shard: plan.sizes.len() - 1, offset: 0 }
                }
            }
        };
        for (id, range) in layout.iter().filter(|(id, _)| keep(*id)) {
            if id == TensorId::Wte {
                let vocab = range.len() / c;
                let per_part = (cap / c).min(vocab).max(1);
                for start in (0..vocab).step_by(per_part) {
                    let rows = start..(start + per_part).min(vocab);
                    let p = place(&mut plan, rows.len() * c);
                    plan.wte.push(WtePart { rows, place: p });
                }
                continue;
            }
            if padded(range.len()) > cap {
                return Err(Error::new(format!(
                    "{}: {} bytes, but this GPU binds at most {} bytes per storage buffer",
                    layout.hf_name(id),
                    4 * range.len(),
                    4 * cap
                )));
            }
            let p = place(&mut plan, range.len());
            plan.places.insert(id, p);
        }
        Ok(plan)
    }
}

/// Floats one shard may hold on `gpu`: the smaller of its binding and buffer limits.
pub(super) fn shard_cap(gpu: &Gpu) -> usize {
    let bytes = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    (bytes / 4).min(u32::MAX as u64) as usize
}

pub struct GpuWeights {
    pub(super) cfg: ModelConfig,
    pub(super) layout: ParamLayout,
    /// Full fine-tuning: every weight fp32 in `params` and trainable. Otherwise the block linear weights are frozen
    /// in `qweights`, and the embedding too, in `wte16` below an fp32 base.
    pub(super) full: bool,
    pub(super) plan: ShardPlan,
    pub(super) params: Vec<GpuBuffer>,
    /// The tied embedding in fp16 beside a base stored below 32 bits (`Storage::embedding`), in parts of vocabulary
    /// rows as one binding holds; empty when it is fp32 in `params` (`plan.wte`).
    pub(super) wte16: Vec<(Range<usize>, GpuQuantWeight)>,
    pub(super) qweights: Vec<GpuQuantWeight>,
    pub(super) adapters: Option<Adapters>,
    /// (A start, B start) of each adapter entry in `adapter_buf`.
    pub(super) adapter_offsets: Vec<(usize, usize)>,
    /// The adapters (one shard: adapters are small), when there are any.
    pub(super) adapter_buf: Vec<GpuBuffer>,
}

impl GpuWeights {
    /// `full`: upload every weight in fp32. Otherwise store the block linear weights in `storage` (taken as Linear
    /// `[out, in]` weights, exactly as `cpu::quantize_base` and bitsandbytes do; a model that keeps them stored in
    /// `storage` already is uploaded as it is) and upload `adapters` if any.
    pub fn upload(gpu: &Gpu, model: &Gpt2, full: bool, storage: Storage, adapters: Option<Adapters>) -> Result<Self> {
        if let Some(stored) = model.linears.as_deref() {
            ensure!(
                !full && stored.storage == storage,
                "the model keeps its linear weights in {}; the GPU cannot store them {}",
                stored.storage.label(),
                if full { "in fp32 for full fine-tuning".to_string() } else { format!("in {}", storage.label()) }
            );
        }
        let cfg = model.config.clone();
        let layout = model.layout.clone();
        let c = cfg.n_embd;
        let half = !full && storage.embedding() != Storage::FP32;
        let keep = |id: TensorId| (full || !id.is_block_linear_weight()) && !(half && id == TensorId::Wte);
        let plan = ShardPlan::new(&layout, c, shard_cap(gpu), keep)?;
        let mut flat: Vec<Vec<f32>> = plan.sizes.iter().map(|n| vec![0.0; *n]).collect();
        for (id, place) in &plan.places {
            let src = &model.params[layout.range(*id)];
            flat[place.shard][place.offset..place.offset + src.len()].copy_from_slice(src);
        }
        let wte = model.tensor(TensorId::Wte);
        for part in &plan.wte {
            let src = &wte[part.rows.start * c..part.rows.end * c];
            flat[part.place.shard][part.place.offset..part.place.offset + src.len()].copy_from_slice(src);
        }
        let mut wte16 = Vec::new();
        if half {
            let vocab = cfg.vocab_size;
            let per_part = (2 * shard_cap(gpu) / c).clamp(1, vocab);
            for start in (0..vocab).step_by(per_part) {
                let rows = start..(start + per_part).min(vocab);
                let q = QuantizedTensor::quantize(&wte[rows.start * c..rows.end * c], storage.embedding());
                wte16.push((
                    rows.clone(),
                    GpuQuantWeight::upload(gpu, &layout.hf_name(TensorId::Wte), &q, rows.len(), c)?,
                ));
            }
        }
        let label = if full { "the model's parameters" } else { "the unquantized parameters" };
        let params =
            flat.iter().map(|values| gpu.upload(label, values, Category::BaseWeights)).collect::<Result<Vec<_>>>()?;
        drop(flat);
        let mut qweights = Vec::new();
        if !full {
            for l in 0..cfg.n_layer {
                for lin in Linear::ALL {
                    let (d_in, d_out) = lin.dims(c);
                    let id = TensorId::Block(l, lin.weight());
                    let name = layout.hf_name(id);
                    let upload = |q: &QuantizedTensor| GpuQuantWeight::upload(gpu, &name, q, d_out, d_in);
                    qweights.push(match model.linears.as_deref() {
                        // A model that keeps its linear weights stored already holds them as the GPU stores them.
                        Some(stored) => upload(stored.get(l, lin))?,
                        None => {
                            let linear = Linear::transpose(&model.params[layout.range(id)], d_in, d_out);
                            upload(&QuantizedTensor::quantize(&linear, storage))?
                        }
                    });
                }
            }
        }
        let mut adapter_offsets = Vec::new();
        let mut adapter_buf = Vec::new();
        if let Some(ad) = &adapters {
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
            adapter_buf.push(gpu.upload("adapters", &flat, Category::Adapters)?);
        }
        Ok(GpuWeights { cfg, layout, full, plan, params, wte16, qweights, adapters, adapter_offsets, adapter_buf })
    }

    /// Where a parameter tensor lives (any but the embedding, which is in parts: [`GpuWeights::wte_parts`]).
    pub(super) fn place(&self, id: TensorId) -> Place {
        *self
            .plan
            .places
            .get(&id)
            .unwrap_or_else(|| panic!("{} is not stored whole on the GPU", self.layout.hf_name(id)))
    }

    /// A parameter tensor as a binding.
    pub(super) fn param(&self, id: TensorId) -> View<'_> {
        let len: usize = self.layout.shape(id).iter().product();
        let p = self.place(id);
        self.params[p.shard].view(p.offset, len)
    }

    /// A parameter's shard and its first float there (matmuls bind the shard and offset into it).
    pub(super) fn param_at(&self, id: TensorId) -> (&GpuBuffer, u32) {
        let p = self.place(id);
        (&self.params[p.shard], p.offset as u32)
    }

    /// The embedding's parts in vocabulary order, fp32 or fp16.
    pub(super) fn wte_parts(&self) -> Vec<WteRef<'_>> {
        let f32_parts = self.plan.wte.iter().map(|p| WteRef { rows: p.rows.clone(), store: WteStore::F32(p.place) });
        let f16_parts = self.wte16.iter().map(|(rows, w)| WteRef { rows: rows.clone(), store: WteStore::F16(w) });
        f32_parts.chain(f16_parts).collect()
    }

    /// A part's values as the gather binds them, and whether they are fp16.
    pub(super) fn wte_values<'a>(&'a self, part: &WteRef<'a>) -> (View<'a>, bool) {
        match part.store {
            WteStore::F32(p) => (self.params[p.shard].view(p.offset, part.rows.len() * self.cfg.n_embd), false),
            WteStore::F16(w) => (w.values(), true),
        }
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

    /// The buffers AdamW updates: the adapters, or every parameter shard for full fine-tuning. Gradients and
    /// AdamW's moments are laid out alike, shard for shard.
    pub(super) fn trainable(&self) -> &[GpuBuffer] {
        if self.adapters.is_some() {
            &self.adapter_buf
        } else {
            &self.params
        }
    }

    /// Floats per trainable shard.
    pub(super) fn trainable_lens(&self) -> Vec<usize> {
        self.trainable().iter().map(|b| b.size() as usize / 4).collect()
    }

    /// Shards in GPU order → the CPU trainer's order (adapter layout, or the model layout).
    pub(super) fn unpad(&self, shards: &[Vec<f32>]) -> Vec<f32> {
        match &self.adapters {
            Some(ad) => {
                let mut out = vec![0.0; ad.params.len()];
                for (e, (a, b)) in ad.entries.iter().zip(&self.adapter_offsets) {
                    out[e.a.clone()].copy_from_slice(&shards[0][*a..*a + e.a.len()]);
                    out[e.b.clone()].copy_from_slice(&shards[0][*b..*b + e.b.len()]);
                }
                out
            }
            None => {
                let mut out = vec![0.0; self.layout.total()];
                for (range, p) in self.full_places() {
                    out[range.clone()].copy_from_slice(&shards[p.shard][p.offset..p.offset + range.len()]);
                }
                out
            }
        }
    }

    /// The CPU trainer's order → shards in GPU order.
    pub(super) fn pad(&self, values: &[f32]) -> Result<Vec<Vec<f32>>> {
        let mut shards: Vec<Vec<f32>> = self.trainable_lens().into_iter().map(|n| vec![0.0; n]).collect();
        match &self.adapters {
            Some(ad) => {
                ensure!(values.len() == ad.params.len(), "expected {} adapter values", ad.params.len());
                for (e, (a, b)) in ad.entries.iter().zip(&self.adapter_offsets) {
                    shards[0][*a..*a + e.a.len()].copy_from_slice(&values[e.a.clone()]);
                    shards[0][*b..*b + e.b.len()].copy_from_slice(&values[e.b.clone()]);
                }
            }
            None => {
                ensure!(values.len() == self.layout.total(), "expected {} parameters", self.layout.total());
                for (range, p) in self.full_places() {
                    shards[p.shard][p.offset..p.offset + range.len()].copy_from_slice(&values[range]);
                }
            }
        }
        Ok(shards)
    }

    /// Full fine-tuning: each stored piece as (its range in the model layout, its place on the GPU).
    fn full_places(&self) -> Vec<(Range<usize>, Place)> {
        let c = self.cfg.n_embd;
        let wte0 = self.layout.range(TensorId::Wte).start;
        let mut out: Vec<(Range<usize>, Place)> =
            self.plan.places.iter().map(|(id, p)| (self.layout.range(*id), *p)).collect();
        out.extend(self.plan.wte.iter().map(|part| (wte0 + part.rows.start * c..wte0 + part.rows.end * c, part.place)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_fits_webgpu_default_limits_in_shards_with_the_embedding_in_parts() {
        let cfg = ModelConfig::hf_preset("gpt2", None).unwrap();
        let layout = ParamLayout::new(&cfg);
        let cap = (128 << 20) / 4; // 128 MiB per binding
        let plan = ShardPlan::new(&layout, cfg.n_embd, cap, |_| true).unwrap();
        assert!(plan.sizes.iter().all(|n| *n <= cap));
        assert_eq!(plan.wte.len(), 2, "154 MB of embedding in two parts");
        assert_eq!(plan.wte[0].rows.start, 0);
        assert_eq!(plan.wte.last().unwrap().rows.end, 50257);
        assert!(plan.wte.windows(2).all(|w| w[0].rows.end == w[1].rows.start));
        // Every stored piece is disjoint from the others in its shard, aligned, and every tensor but wte is placed.
        let mut pieces: Vec<(usize, usize, usize)> =
            plan.places.iter().map(|(id, p)| (p.shard, p.offset, padded(layout.range(*id).len()))).collect();
        pieces.extend(plan.wte.iter().map(|w| (w.place.shard, w.place.offset, padded(w.rows.len() * cfg.n_embd))));
        pieces.sort();
        for w in pieces.windows(2) {
            assert!(w[0].0 != w[1].0 || w[0].1 + w[0].2 <= w[1].1, "overlap {w:?}");
        }
        assert!(pieces.iter().all(|(s, o, n)| o % ALIGN == 0 && o + n <= plan.sizes[*s]));
        assert_eq!(plan.places.len(), layout.iter().count() - 1);
        let stored: usize = pieces.iter().map(|p| p.2).sum();
        assert!(stored >= layout.total() && stored < layout.total() + ALIGN * pieces.len());
    }

    #[test]
    fn a_binding_smaller_than_one_embedding_row_or_a_tensor_is_refused_by_name() {
        let cfg = ModelConfig::bytes(2, 2, 64, 16).unwrap();
        let layout = ParamLayout::new(&cfg);
        assert!(ShardPlan::new(&layout, 64, 32, |_| true).unwrap_err().to_string().contains("one embedding row"));
        let e = ShardPlan::new(&layout, 64, 1024, |_| true).unwrap_err().to_string();
        assert!(e.contains("attn.c_attn.weight"), "{e}");
    }
}
