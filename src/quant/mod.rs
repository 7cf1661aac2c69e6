//! Storage formats of the frozen base — the "Q" of QLoRA.
//!
//! A weight is quantized as bitsandbytes does for a `Linear4bit`: taken as a Linear weight `[out, in]` row-major
//! (for GPT-2's Conv1D `[in, out]` storage that is the transpose), flattened, and cut into blocks of 64 values
//! (the last block may be shorter and gets its own constant).
//!
//! | format | stored per value | constants | bits/param |
//! |---|---|---|---|
//! | fp32 | IEEE binary32 | — | 32 |
//! | fp16 | IEEE binary16, round to nearest even | — | 16 |
//! | bf16 | bfloat16, round to nearest even | — | 16 |
//! | int8 | `round(x/absmax·127)` as i8 (ties away from zero) | fp32 absmax per 64 | 8.5 |
//! | int4 | `round(x/absmax·7)` ∈ [−7, 7], stored as nibble q+8 | fp32 absmax per 64 | 4.5 |
//! | fp4, nf4 | nearest bitsandbytes code (ties to the lower value) | fp32 absmax per 64 | 4.5 |
//! | fp4, nf4 + double quant | as above | absmax − mean as u8 codes of the 8-bit dynamic map per block of 256 (bitsandbytes' table lookup, see `blockwise`), fp32 scale per 256 blocks, fp32 mean | ≈ 4.127 |
//!
//! 4-bit values pack two per byte with the first (even-index) value in the high nibble, as bitsandbytes does.
//! A block whose absmax is 0 stores codes for 0 and dequantizes to exact zeros.

mod blockwise;
pub mod codebooks;

pub use blockwise::{dequantize_blockwise_8bit, quantize_blockwise_8bit, BLOCK, NESTED_BLOCK};

use crate::{bail, Error, Result};
use half::{bf16, f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;

/// How the frozen base's linear weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Fp32,
    Fp16,
    Bf16,
    Int8,
    Int4,
    Fp4,
    Nf4,
}

impl Format {
    pub const ALL: [Format; 7] =
        [Format::Fp32, Format::Fp16, Format::Bf16, Format::Int8, Format::Int4, Format::Fp4, Format::Nf4];

    pub fn name(self) -> &'static str {
        match self {
            Format::Fp32 => "fp32",
            Format::Fp16 => "fp16",
            Format::Bf16 => "bf16",
            Format::Int8 => "int8",
            Format::Int4 => "int4",
            Format::Fp4 => "fp4",
            Format::Nf4 => "nf4",
        }
    }

    /// Bits per stored value, without constants.
    pub fn value_bits(self) -> u32 {
        match self {
            Format::Fp32 => 32,
            Format::Fp16 | Format::Bf16 => 16,
            Format::Int8 => 8,
            Format::Int4 | Format::Fp4 | Format::Nf4 => 4,
        }
    }

    /// Whether the format keeps one absmax constant per block.
    pub fn is_blockwise(self) -> bool {
        matches!(self, Format::Int8 | Format::Int4 | Format::Fp4 | Format::Nf4)
    }

    /// Whether double quantization of the constants applies (bitsandbytes offers it for its 4-bit types).
    pub fn supports_double_quant(self) -> bool {
        matches!(self, Format::Fp4 | Format::Nf4)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Format::ALL.into_iter().find(|f| f.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            Error::new(format!("unknown format {s:?}; expected one of fp32, fp16, bf16, int8, int4, fp4, nf4"))
        })
    }
}

/// A storage format plus the double-quantization switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Storage {
    pub format: Format,
    pub double_quant: bool,
}

impl Storage {
    pub fn new(format: Format, double_quant: bool) -> Result<Self> {
        if double_quant && !format.supports_double_quant() {
            bail!("double quantization applies to the 4-bit formats fp4 and nf4, not {format}");
        }
        Ok(Storage { format, double_quant })
    }

    pub const FP32: Storage = Storage { format: Format::Fp32, double_quant: false };

    /// How the tied token embedding (GPT-2's `wte`, which is also the head) is stored beside block linears stored in
    /// `self`: it is never quantized (its rows are looked up one token at a time and it is the whole head), but a
    /// base kept below 32 bits keeps it in 16 bits, as QLoRA does (bitsandbytes leaves it in the 16-bit dtype the
    /// model is loaded in, fp16 or bf16; we take fp16, whichever the base's format, as the closer of the two to the
    /// fp32 values); an fp32 base keeps it in fp32.
    pub fn embedding(&self) -> Storage {
        if self.format == Format::Fp32 {
            Storage::FP32
        } else {
            Storage { format: Format::Fp16, double_quant: false }
        }
    }

    pub fn label(&self) -> String {
        if self.double_quant {
            format!("{}+dq", self.format)
        } else {
            self.format.to_string()
        }
    }

    /// The storage a [`Storage::label`] names ("nf4+dq", "fp32").
    pub fn from_label(label: &str) -> Result<Storage> {
        match label.strip_suffix("+dq") {
            Some(format) => Storage::new(format.parse()?, true),
            None => Storage::new(label.parse()?, false),
        }
    }

    /// Bytes to store `n` values (without constants).
    pub fn value_bytes(&self, n: u64) -> u64 {
        (n * self.format.value_bits() as u64).div_ceil(8)
    }

    /// Bytes of quantization constants for one tensor of `n` values.
    pub fn constant_bytes(&self, n: u64) -> u64 {
        if !self.format.is_blockwise() {
            return 0;
        }
        let blocks = n.div_ceil(BLOCK as u64);
        if self.double_quant {
            // one u8 code per block, one fp32 scale per 256 blocks, one fp32 mean per tensor
            blocks + 4 * blocks.div_ceil(NESTED_BLOCK as u64) + 4
        } else {
            4 * blocks
        }
    }

    /// Bits per parameter including constants, for a tensor of `n` values.
    pub fn bits_per_param(&self, n: u64) -> f64 {
        8.0 * (self.value_bytes(n) + self.constant_bytes(n)) as f64 / n as f64
    }
}

/// Rounds `values` in place to what `storage` stores of them: what [`QuantizedTensor::quantize`] and
/// [`QuantizedTensor::dequantize`] give, without their two copies for the 16- and 32-bit formats.
pub fn round_in_place(values: &mut [f32], storage: Storage) {
    match storage.format {
        Format::Fp32 => {}
        Format::Fp16 => values.par_iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32()),
        Format::Bf16 => values.par_iter_mut().for_each(|v| *v = bf16::from_f32(*v).to_f32()),
        _ => {
            let back = QuantizedTensor::quantize(values, storage).dequantize();
            values.copy_from_slice(&back);
        }
    }
}

/// Absmax constants of a blockwise format: plain fp32, or double-quantized.
#[derive(Clone, Debug, PartialEq)]
pub enum Scales {
    F32(Vec<f32>),
    /// bitsandbytes' `compress_statistics=True`: `absmax − offset` stored as u8 codes of the dynamic map in blocks of 256.
    Double {
        codes: Vec<u8>,
        nested_absmax: Vec<f32>,
        offset: f32,
    },
}

impl Scales {
    /// The absmax constants the dequantization multiplies by.
    pub fn absmax(&self) -> Vec<f32> {
        match self {
            Scales::F32(a) => a.clone(),
            Scales::Double { codes, nested_absmax, offset } => {
                let mut a = dequantize_blockwise_8bit(codes, nested_absmax, NESTED_BLOCK);
                for v in &mut a {
                    *v += offset;
                }
                a
            }
        }
    }
}

/// The stored values of a quantized tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    Int8 {
        values: Vec<i8>,
        scales: Scales,
    },
    /// int4, fp4 or nf4: two codes per byte, first value in the high nibble.
    Packed4 {
        bytes: Vec<u8>,
        scales: Scales,
    },
}

/// One tensor in a storage format. `values` is in the order given to [`QuantizedTensor::quantize`]
/// (for the base model: the Linear `[out, in]` weight flattened).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedTensor {
    pub storage: Storage,
    pub len: usize,
    pub stored: Stored,
}

/// Quantization error of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantError {
    pub rmse: f64,
    pub max_abs: f64,
}

impl QuantizedTensor {
    pub fn quantize(values: &[f32], storage: Storage) -> Self {
        let stored = match storage.format {
            Format::Fp32 => Stored::F32(values.to_vec()),
            Format::Fp16 => Stored::F16(values.iter().map(|v| f16::from_f32(*v)).collect()),
            Format::Bf16 => Stored::Bf16(values.iter().map(|v| bf16::from_f32(*v)).collect()),
            Format::Int8 => {
                let absmax = blockwise::block_absmax(values, BLOCK);
                let q = blockwise::quantize_int(values, &absmax, 127);
                Stored::Int8 { values: q, scales: Scales::F32(absmax) }
            }
            Format::Int4 | Format::Fp4 | Format::Nf4 => {
                let absmax = blockwise::block_absmax(values, BLOCK);
                let codes: Vec<u8> = match storage.format {
                    Format::Int4 => blockwise::quantize_int(values, &absmax, 7).iter().map(|q| (q + 8) as u8).collect(),
                    Format::Fp4 => blockwise::quantize_codebook(values, &absmax, &codebooks::FP4),
                    _ => blockwise::quantize_codebook(values, &absmax, &codebooks::NF4),
                };
                let scales =
                    if storage.double_quant { blockwise::double_quantize(&absmax) } else { Scales::F32(absmax) };
                Stored::Packed4 { bytes: blockwise::pack_nibbles(&codes), scales }
            }
        };
        QuantizedTensor { storage, len: values.len(), stored }
    }

    /// The 16 values a 4-bit code stands for (before multiplying by absmax).
    pub fn codebook4(format: Format) -> [f32; 16] {
        match format {
            Format::Fp4 => codebooks::FP4,
            Format::Nf4 => codebooks::NF4,
            // int4: nibble q+8 stands for q/7; nibble 0 (−8/7) is never produced.
            _ => std::array::from_fn(|i| (i as f32 - 8.0) / 7.0),
        }
    }

    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len];
        self.dequantize_into(&mut out);
        out
    }

    /// Writes the values into `out` (`len` of them): what the CPU executor does before each product with a stored
    /// weight, so it is split over rayon's threads in pieces of whole blocks, and a 4-bit block looks its two
    /// values per byte up in the block's 16 scaled levels.
    pub fn dequantize_into(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.len, "dequantizing {} values into {}", self.len, out.len());
        // Whole blocks of 64, so that every piece starts on a block and on a byte of 4-bit codes.
        const PIECE: usize = 256 * BLOCK;
        match &self.stored {
            Stored::F32(v) => out.copy_from_slice(v),
            Stored::F16(v) => out.par_chunks_mut(PIECE).zip(v.par_chunks(PIECE)).for_each(|(o, v)| {
                v.convert_to_f32_slice(o);
            }),
            Stored::Bf16(v) => out.par_chunks_mut(PIECE).zip(v.par_chunks(PIECE)).for_each(|(o, v)| {
                v.convert_to_f32_slice(o);
            }),
            Stored::Int8 { values, scales } => {
                let absmax = scales.absmax();
                out.par_chunks_mut(PIECE).zip(values.par_chunks(PIECE)).enumerate().for_each(|(p, (o, q))| {
                    for (b, (o, q)) in o.chunks_mut(BLOCK).zip(q.chunks(BLOCK)).enumerate() {
                        let a = absmax[p * (PIECE / BLOCK) + b];
                        for (o, q) in o.iter_mut().zip(q) {
                            *o = (*q as f32 / 127.0) * a;
                        }
                    }
                });
            }
            Stored::Packed4 { bytes, scales } => {
                let absmax = scales.absmax();
                let code = Self::codebook4(self.storage.format);
                out.par_chunks_mut(PIECE).zip(bytes.par_chunks(PIECE / 2)).enumerate().for_each(|(p, (o, bytes))| {
                    for (b, (o, bytes)) in o.chunks_mut(BLOCK).zip(bytes.chunks(BLOCK / 2)).enumerate() {
                        let a = absmax[p * (PIECE / BLOCK) + b];
                        let level: [f32; 16] = std::array::from_fn(|i| code[i] * a);
                        let mut pairs = o.chunks_exact_mut(2);
                        for (pair, byte) in (&mut pairs).zip(bytes) {
                            pair[0] = level[(byte >> 4) as usize];
                            pair[1] = level[(byte & 0x0f) as usize];
                        }
                        // An odd-length tensor's last value is the high nibble of its last byte.
                        if let [last] = pairs.into_remainder() {
                            *last = level[(bytes[bytes.len() - 1] >> 4) as usize];
                        }
                    }
                });
            }
        }
    }

    /// Bytes of stored values and of constants.
    pub fn bytes(&self) -> (u64, u64) {
        (self.storage.value_bytes(self.len as u64), self.storage.constant_bytes(self.len as u64))
    }

    pub fn error(&self, original: &[f32]) -> QuantError {
        let deq = self.dequantize();
        let mut sq = 0.0f64;
        let mut max_abs = 0.0f64;
        for (a, b) in original.iter().zip(&deq) {
            let d = (*a as f64 - *b as f64).abs();
            sq += d * d;
            max_abs = max_abs.max(d);
        }
        QuantError { rmse: (sq / original.len().max(1) as f64).sqrt(), max_abs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_label_reads_back_as_that_storage() {
        for format in Format::ALL {
            for dq in [false, true].into_iter().filter(|&d| !d || format.supports_double_quant()) {
                let storage = Storage::new(format, dq).unwrap();
                assert_eq!(Storage::from_label(&storage.label()).unwrap(), storage);
            }
        }
        assert!(Storage::from_label("int8+dq").is_err());
        assert!(Storage::from_label("fp64").is_err());
    }
}
