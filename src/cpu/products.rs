//! The shipped model's matrix products in one training step, as a benchmark of the CPU executor's multiply. Native
//! (`qlora bench --matmul --backend cpu`) and the page (bench.html, through the wasm API) time the same list with the
//! same operands, so their GFLOP/s compare product by product.

use super::{gemm, Mat};
use serde::Serialize;

#[cfg(target_arch = "wasm32")]
pub use super::packed::{madd_peak, PEAK_CHAINS};

/// One product C[m×n] = A[m×k]·B, with B given transposed (`B = Wᵀ` for a row-major weight W) when `transpose_b`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Product {
    pub name: &'static str,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    #[serde(rename = "transposeB")]
    pub transpose_b: bool,
}

impl Product {
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// Batch 8 × 64 = 512 rows through the 192-wide shipped model: x·Wᵀ of the attention's qkv and of the MLP, the MLP's
/// input gradient dY·W, one head's attention scores (64 positions × 48), and a rank-8 adapter on the qkv matrix:
/// x·Aᵀ, then (x·Aᵀ)·Bᵀ.
pub const STEP_PRODUCTS: [Product; 6] = [
    Product { name: "qkv x·Wᵀ", m: 512, k: 192, n: 576, transpose_b: true },
    Product { name: "mlp x·Wᵀ", m: 512, k: 192, n: 768, transpose_b: true },
    Product { name: "mlp dY·W", m: 512, k: 768, n: 192, transpose_b: false },
    Product { name: "attention Q·Kᵀ", m: 64, k: 48, n: 64, transpose_b: true },
    Product { name: "LoRA x·Aᵀ (r 8)", m: 512, k: 192, n: 8, transpose_b: true },
    Product { name: "LoRA (x·Aᵀ)·Bᵀ (r 8)", m: 512, k: 8, n: 576, transpose_b: true },
];

/// Batch 4 × 128 = 512 rows through GPT-2 124M (768 wide, 50,257 tokens): the block's three weight shapes forward,
/// c_attn's input gradient, and the tied head's logits and input gradient over the batch's rows (the fused head
/// multiplies them in chunks of rows; see `model::head_chunk_rows`).
pub const GPT2_STEP_PRODUCTS: [Product; 6] = [
    Product { name: "c_attn x·Wᵀ", m: 512, k: 768, n: 2304, transpose_b: true },
    Product { name: "mlp c_fc x·Wᵀ", m: 512, k: 768, n: 3072, transpose_b: true },
    Product { name: "mlp c_proj x·Wᵀ", m: 512, k: 3072, n: 768, transpose_b: true },
    Product { name: "c_attn dY·W", m: 512, k: 2304, n: 768, transpose_b: false },
    Product { name: "head x·wteᵀ", m: 512, k: 768, n: 50257, transpose_b: true },
    Product { name: "head dlogits·wte", m: 512, k: 50257, n: 768, transpose_b: false },
];

/// Fixed operands of one product and its output, made once so that timing covers only the multiplies.
pub struct Operands {
    m: usize,
    k: usize,
    n: usize,
    transpose_b: bool,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Operands {
    pub fn new(m: usize, k: usize, n: usize, transpose_b: bool) -> Self {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
        Operands { m, k, n, transpose_b, a, b, c: vec![0.0; m * n] }
    }

    /// Computes the product `reps` times and returns the sum of C, so that the work is observable.
    pub fn multiply(&mut self, reps: usize) -> f32 {
        let (m, k, n) = (self.m, self.k, self.n);
        let b = if self.transpose_b { Mat::t(&self.b, k) } else { Mat::new(&self.b, n) };
        for _ in 0..reps {
            gemm(m, k, n, 1.0, Mat::new(&self.a, k), b, 0.0, &mut self.c, n);
        }
        self.c.iter().sum()
    }
}

/// [`Operands::multiply`] on fresh operands (the page times this call: its products are small enough, and repeated
/// often enough, that making the operands is a small part of it).
pub fn multiply_repeatedly(m: usize, k: usize, n: usize, transpose_b: bool, reps: usize) -> f32 {
    Operands::new(m, k, n, transpose_b).multiply(reps)
}

/// Repetitions that make one timed call about `target_flops` (at least one).
pub fn reps_for(p: &Product, target_flops: f64) -> usize {
    ((target_flops / p.flops()).round() as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repeated_product_sums_what_a_plain_loop_sums() {
        // 3 × 4 × 2 with B transposed, against the definition; the sum does not depend on the repetitions.
        let (m, k, n) = (3, 4, 2);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64 - 6.0) / 7.0).collect();
        let w: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 11) as f64 - 5.0) / 5.0).collect();
        let mut want = 0.0;
        for i in 0..m {
            for j in 0..n {
                want += (0..k).map(|p| a[i * k + p] * w[j * k + p]).sum::<f64>();
            }
        }
        for reps in [1, 3] {
            assert!((multiply_repeatedly(m, k, n, true, reps) as f64 - want).abs() < 1e-5);
        }
    }
}
