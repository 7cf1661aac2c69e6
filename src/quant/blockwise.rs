//! Blockwise absmax quantization, bit for bit as bitsandbytes 0.50 computes it on the CPU.

use super::codebooks::DYNAMIC_SIGNED_8BIT;
use super::Scales;
use std::sync::OnceLock;

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

/// bitsandbytes 0.50's CPU `quantize_blockwise(A, code=dynamic signed map, blocksize)`, which double quantization
/// calls. It does not search the map: each value x/absmax in [−1, 1] indexes a 65,536-entry table at
/// `round((x/absmax + 1) / 2 · 65535)`, and table entry k holds the map entry nearest to the grid point 2k/65535 − 1.
/// So the code is the entry nearest to a point up to 1.5·10⁻⁵ away, a neighbour of the nearest entry near a midpoint
/// or among the crowded entries next to zero (the grid has no point at zero: values within 1.5·10⁻⁵ of it become
/// ±2.1·10⁻⁵).
/// We reproduce the table, float operation for float operation, not the exact nearest entry: its codes are what
/// bitsandbytes stores. (Its CUDA kernel uses a binary search instead, which can differ at near-ties.)
pub fn quantize_blockwise_8bit(values: &[f32], block: usize) -> (Vec<u8>, Vec<f32>) {
    let absmax = block_absmax(values, block);
    let table = dynamic_map_table();
    let codes = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = absmax[i / block];
            if a == 0.0 {
                // An all-zero block: bitsandbytes writes code 0, which dequantizes to 0 · absmax = 0.
                return 0;
            }
            // Multiplied by the reciprocal, not divided, and the grid index through one fused multiply-add, as the
            // library is compiled; the cast truncates (the argument is ≥ 0.5).
            let x = (v * (1.0 / a)).clamp(-1.0, 1.0);
            let half = (x + 1.0) * 0.5;
            let k = half.mul_add(GRID as f32, 0.5) as usize & 0xFFFF;
            table[k]
        })
        .collect();
    (codes, absmax)
}

/// Steps of bitsandbytes' grid over [−1, 1]: 65,536 points, 2/65535 apart.
const GRID: u32 = 65535;

/// Entry k: the index of the dynamic-map entry nearest to 2k/65535 − 1 (on a midpoint the lower one), from the f32
/// midpoints of neighbouring entries, as bitsandbytes builds it.
fn dynamic_map_table() -> &'static [u8; GRID as usize + 1] {
    static TABLE: OnceLock<Box<[u8; GRID as usize + 1]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let code = &DYNAMIC_SIGNED_8BIT;
        let mids: Vec<f32> = code.windows(2).map(|w| (w[0] + w[1]) * 0.5).collect();
        let mut table = Box::new([0u8; GRID as usize + 1]);
        let mut entry = 0usize;
        for (k, slot) in table.iter_mut().enumerate() {
            let point = (k as f32 + k as f32) / GRID as f32 - 1.0;
            while entry < mids.len() && point > mids[entry] {
                entry += 1;
            }
            *slot = entry as u8;
        }
        table
    })
}

pub fn dequantize_blockwise_8bit(codes: &[u8], absmax: &[f32], block: usize) -> Vec<f32> {
    codes.iter().enumerate().map(|(i, c)| DYNAMIC_SIGNED_8BIT[*c as usize] * absmax[i / block]).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes bitsandbytes 0.50.2 gives (its CPU library, `quantize_blockwise` of the block `[1.0, x]` with the
    /// dynamic map), several of them not the nearest entry.
    #[test]
    fn the_dynamic_map_codes_are_bitsandbytes_table_lookups() {
        let cases: [(u32, u8, u8); 11] = [
            // (x as f32 bits, bitsandbytes' code, the nearest entry)
            (0x3a90_b316, 143, 142), // 0.00110397: below the 142/143 midpoint, the table says 143
            (0xb118_b7c4, 131, 127), // −2.2e-9: everything near zero becomes +2.1e-5
            (0xbf1b_32c8, 27, 28),   // −0.6062436: above the 27/28 midpoint, the table says 27
            (0x3d98_f033, 181, 181),
            (0x3e82_668e, 202, 202),
            (0x37ff_9c8b, 132, 131),
            (0xb960_0700, 119, 118),
            (0x0da2_4260, 131, 127),
            (0xbf80_0000, 0, 0),
            (0x3f80_0000, 255, 255),
            (0x3f00_0000, 219, 219),
        ];
        let mut block = vec![1.0f32];
        block.extend(cases.iter().map(|(bits, _, _)| f32::from_bits(*bits)));
        let (codes, absmax) = quantize_blockwise_8bit(&block, NESTED_BLOCK);
        assert_eq!(absmax, [1.0]);
        for ((bits, theirs, nearest), ours) in cases.iter().zip(&codes[1..]) {
            assert_eq!(ours, theirs, "x = {}", f32::from_bits(*bits));
            let x = f32::from_bits(*bits) as f64;
            let distance = |i: &usize| (DYNAMIC_SIGNED_8BIT[*i] as f64 - x).abs();
            let exact = (0..256).min_by(|a, b| distance(a).total_cmp(&distance(b))).unwrap();
            assert_eq!(exact as u8, *nearest, "the nearest entry of {x}");
        }
        // An all-zero block stores code 0 (and absmax 0).
        assert_eq!(quantize_blockwise_8bit(&[0.0; 4], NESTED_BLOCK), (vec![0; 4], vec![0.0]));
    }
}
