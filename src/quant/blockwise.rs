//! Blockwise absmax quantization, bit for bit as bitsandbytes 0.50 computes it on the CPU.

use super::codebooks::DYNAMIC_SIGNED_8BIT;
use super::Scales;

/// Values per absmax constant (bitsandbytes' default `blocksize=64`).
pub const BLOCK: usize = 64;
/// Absmax constants per second-level constant under double quantization (QLoRA §3).
pub const NESTED_BLOCK: usize = 256;

/// fp32 max |x| of each block; a trailing partial block gets its own.
pub fn block_absmax(values: &[f32], block: usize) -> Vec<f32> {
    values.chunks(block).map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs()))).collect()
}

/// Symmetric integer quantization `round(x / absmax · levels)` (ties away from zero), in [−levels, levels].
pub fn quantize_int(values: &[f32], absmax: &[f32], levels: i32) -> Vec<i8> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = absmax[i / BLOCK];
            if a == 0.0 {
                0
            } else {
                ((v / a) * levels as f32).round().clamp(-(levels as f32), levels as f32) as i8
            }
        })
        .collect()
}

/// Nearest entry of a 16-value codebook for `x / absmax`, as bitsandbytes' `torch.bucketize` over the midpoints of
/// the sorted codebook: a value exactly on a midpoint goes to the lower value.
pub fn quantize_codebook(values: &[f32], absmax: &[f32], code: &[f32; 16]) -> Vec<u8> {
    let (sorted_codes, midpoints) = midpoints(code);
    let zero_code = code.iter().position(|c| *c == 0.0).expect("codebooks contain zero") as u8;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = absmax[i / BLOCK];
            if a == 0.0 {
                return zero_code;
            }
            let x = (v / a).clamp(-1.0, 1.0);
            // number of midpoints strictly below x = index into the sorted codebook
            let idx = midpoints.partition_point(|m| *m < x);
            sorted_codes[idx]
        })
        .collect()
}

/// Codebook indices sorted by value (ties keep the lower index) and the f32 midpoints between neighbours.
fn midpoints(code: &[f32; 16]) -> ([u8; 16], [f32; 15]) {
    let mut order: [u8; 16] = std::array::from_fn(|i| i as u8);
    // -0 and +0 (fp4 codes 8 and 0) compare equal, so the lower index comes first, as in bitsandbytes' sorted table.
    order.sort_by(|a, b| code[*a as usize].partial_cmp(&code[*b as usize]).expect("finite codes").then(a.cmp(b)));
    let mids = std::array::from_fn(|i| (code[order[i] as usize] + code[order[i + 1] as usize]) / 2.0);
    (order, mids)
}

/// Packs 4-bit codes two per byte, the first in the high nibble; an odd count leaves the last low nibble 0.
pub fn pack_nibbles(codes: &[u8]) -> Vec<u8> {
    codes.chunks(2).map(|p| (p[0] << 4) | p.get(1).copied().unwrap_or(0)).collect()
}

/// bitsandbytes' `quantize_blockwise(A, code=dynamic signed map, blocksize)`: per block, absmax and the index of the
/// nearest map entry for `x / absmax` (on an exact tie the lower entry).
pub fn quantize_blockwise_8bit(values: &[f32], block: usize) -> (Vec<u8>, Vec<f32>) {
    let absmax = block_absmax(values, block);
    let codes = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = absmax[i / block];
            let x = if a == 0.0 { 0.0 } else { (v / a).clamp(-1.0, 1.0) };
            nearest_sorted(&DYNAMIC_SIGNED_8BIT, x) as u8
        })
        .collect();
    (codes, absmax)
}

pub fn dequantize_blockwise_8bit(codes: &[u8], absmax: &[f32], block: usize) -> Vec<f32> {
    codes.iter().enumerate().map(|(i, c)| DYNAMIC_SIGNED_8BIT[*c as usize] * absmax[i / block]).collect()
}

/// Index of the entry of an ascending table nearest to x; on a tie the lower one.
fn nearest_sorted(table: &[f32], x: f32) -> usize {
    let hi = table.partition_point(|t| *t < x);
    if hi == 0 {
        return 0;
    }
    if hi == table.len() {
        return table.len() - 1;
    }
    if (table[hi] - x) < (x - table[hi - 1]) {
        hi
    } else {
        hi - 1
    }
}

/// Double quantization: subtract the mean of the absmax constants, then 8-bit blockwise-quantize them in blocks of 256.
pub fn double_quantize(absmax: &[f32]) -> Scales {
    let mean = torch_sum_f32(absmax) / absmax.len().max(1) as f32;
    let centred: Vec<f32> = absmax.iter().map(|a| a - mean).collect();
    let (codes, nested_absmax) = quantize_blockwise_8bit(&centred, super::NESTED_BLOCK);
    Scales::Double { codes, nested_absmax, offset: mean }
}

/// Lanes of PyTorch's CPU float reduction (its AVX2 `Vectorized<float>`), and its independent accumulators.
const LANES: usize = 8;
const ILP: usize = 4;

/// The float32 sum of a contiguous array in PyTorch's CPU summation order (`SumKernel.cpp`, AVX2 build): bitsandbytes
/// takes the double-quantization offset as `absmax.mean()` in torch, and float addition is not associative, so
/// reproducing its offset bit for bit means adding in the same order. Vectors of 8 lanes go round-robin into 4
/// accumulators, which are combined through a 4-level cascade of chunks; then the scalar tail, then the lanes.
pub(crate) fn torch_sum_f32(values: &[f32]) -> f32 {
    type Lanes = [f32; LANES];
    let add = |a: &mut Lanes, b: &Lanes| a.iter_mut().zip(b).for_each(|(x, y)| *x += *y);
    let n_vec = values.len() / LANES;
    let vector = |i: usize| -> Lanes { values[i * LANES..(i + 1) * LANES].try_into().expect("full vector") };

    // multi_row_sum over rows of ILP vectors, with a cascade of LEVELS accumulators.
    const LEVELS: usize = 4;
    let rows = n_vec / ILP;
    let ceil_log2 = |x: usize| {
        if x <= 2 {
            1
        } else {
            (usize::BITS - (x - 1).leading_zeros()) as usize
        }
    };
    let level_power = (ceil_log2(rows) / LEVELS).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0.0f32; LANES]; ILP]; LEVELS];
    let mut i = 0;
    while i + level_step <= rows {
        for _ in 0..level_step {
            for k in 0..ILP {
                add(&mut acc[0][k], &vector(i * ILP + k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..ILP {
                let lower = acc[j - 1][k];
                add(&mut acc[j][k], &lower);
                acc[j - 1][k] = [0.0; LANES];
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    for row in i..rows {
        for k in 0..ILP {
            add(&mut acc[0][k], &vector(row * ILP + k));
        }
    }
    for j in 1..LEVELS {
        for k in 0..ILP {
            let upper = acc[j][k];
            add(&mut acc[0][k], &upper);
        }
    }
    let mut partial = acc[0];
    for v in rows * ILP..n_vec {
        add(&mut partial[0], &vector(v));
    }
    for k in 1..ILP {
        let other = partial[k];
        add(&mut partial[0], &other);
    }
    let mut total = 0.0f32;
    for x in &values[n_vec * LANES..] {
        total += x;
    }
    for x in partial[0] {
        total += x;
    }
    total
}
