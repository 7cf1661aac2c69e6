//! The frozen base's block linear weights kept in a storage format (fp16, int8, nf4, …), as a LoRA/QLoRA run holds
//! them: the executor multiplies by them through a dequantized copy of one weight at a time, so the base takes the
//! bytes the format promises and not those of fp32.

use super::{Linear, ModelConfig};
use crate::quant::{QuantizedTensor, Storage};

/// Every block's four linear weights in one storage format, each as a Linear `[out, in]` weight (GPT-2's Conv1D
/// `[in, out]` transposed, exactly as bitsandbytes quantizes it).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLinears {
    pub storage: Storage,
    /// Layer by layer, in [`Linear::ALL`] order.
    tensors: Vec<QuantizedTensor>,
    /// The fp32 weights these were stored from (the whole model's, not only these), which they no longer give back.
    pub source: WeightsDigest,
}

/// CRC-32 and length of a model's fp32 parameters in layout order, as bytes: what identifies a base (a saved run
/// continues only on the base it trained on) once its linear weights are kept in a storage format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightsDigest {
    pub crc: u32,
    pub bytes: u64,
}

impl WeightsDigest {
    /// The digest of `params` (a whole fp32 buffer in layout order).
    pub fn of(params: &[f32]) -> Self {
        let mut h = WeightsHasher::default();
        h.update(params);
        h.finish()
    }
}

/// A [`WeightsDigest`] computed tensor by tensor, in layout order (as a streamed model is read).
#[derive(Default)]
pub struct WeightsHasher(crc32fast::Hasher);

impl WeightsHasher {
    pub fn update(&mut self, values: &[f32]) {
        self.0.update(bytemuck::cast_slice(values));
    }

    pub fn finish(self) -> WeightsDigest {
        let bytes = self.0.total_len();
        WeightsDigest { crc: self.0.finalize(), bytes }
    }
}

impl StoredLinears {
    /// `tensors` layer by layer in [`Linear::ALL`] order, each of its linear's size in `cfg`, stored from the fp32
    /// model of digest `source`.
    pub fn new(cfg: &ModelConfig, storage: Storage, tensors: Vec<QuantizedTensor>, source: WeightsDigest) -> Self {
        assert_eq!(tensors.len(), 4 * cfg.n_layer, "four linear weights per block");
        for (i, t) in tensors.iter().enumerate() {
            let (d_in, d_out) = Linear::ALL[i % 4].dims(cfg.n_embd);
            assert_eq!(t.len, d_in * d_out, "the stored weight of block {} {}", i / 4, Linear::ALL[i % 4].module());
            assert_eq!(t.storage, storage, "every stored weight is in the same format");
        }
        StoredLinears { storage, tensors, source }
    }

    /// Block `layer`'s weight of `lin`, `[out, in]`.
    pub fn get(&self, layer: usize, lin: Linear) -> &QuantizedTensor {
        &self.tensors[4 * layer + lin.index()]
    }

    /// Bytes of stored values and constants over every weight.
    pub fn bytes(&self) -> u64 {
        let (values, constants) = self.value_and_constant_bytes();
        values + constants
    }

    /// Bytes of stored values, and of quantization constants, over every weight.
    pub fn value_and_constant_bytes(&self) -> (u64, u64) {
        self.tensors.iter().map(|t| t.bytes()).fold((0, 0), |(v, c), (tv, tc)| (v + tv, c + tc))
    }
}
