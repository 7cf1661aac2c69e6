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
}

impl StoredLinears {
    /// `tensors` layer by layer in [`Linear::ALL`] order, each of its linear's size in `cfg`.
    pub fn new(cfg: &ModelConfig, storage: Storage, tensors: Vec<QuantizedTensor>) -> Self {
        assert_eq!(tensors.len(), 4 * cfg.n_layer, "four linear weights per block");
        for (i, t) in tensors.iter().enumerate() {
            let (d_in, d_out) = Linear::ALL[i % 4].dims(cfg.n_embd);
            assert_eq!(t.len, d_in * d_out, "the stored weight of block {} {}", i / 4, Linear::ALL[i % 4].module());
            assert_eq!(t.storage, storage, "every stored weight is in the same format");
        }
        StoredLinears { storage, tensors }
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
