//! What a training step asks of the GPU, counted on paper: every dispatch carries its kernel's name, the arithmetic it
//! does and the bytes of its operands it reads and writes (`qlora bench --backend gpu --profile`). Counting needs no
//! GPU and no timer, so the cost of the GPU path is visible on a machine without one, and it can be held against the
//! least a step needs on an integrated or a discrete GPU (its roofline).
//!
//! What is counted: FLOPs with a multiply-add as two; exp, tanh and a division count one each. Bytes are the
//! operands' own sizes, each element once per dispatch (what the kernel must move at the least; a tiled matmul's
//! tiles re-read A and B from caches, which this does not count), f32 unless the operand is a frozen base weight
//! in its storage format.

/// One dispatch's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// The kernel: its WGSL file and entry point.
    pub kernel: &'static str,
    pub flops: u64,
    /// Bytes read from storage buffers (an accumulating output is read too).
    pub read: u64,
    pub written: u64,
}

impl Cost {
    pub fn new(kernel: &'static str, flops: u64, read: u64, written: u64) -> Self {
        Cost { kernel, flops, read, written }
    }

    /// A kernel over `n` f32 elements that reads `inputs` arrays of n (an accumulated output counts as one), writes
    /// one, and does `ops` arithmetic per element.
    pub fn elementwise(kernel: &'static str, n: u32, inputs: u64, ops: u64) -> Self {
        let n = n as u64;
        Cost { kernel, flops: ops * n, read: 4 * inputs * n, written: 4 * n }
    }

    /// `C[m×n] = A[m×k]·B[k×n] (+ C)` in f32; `b_bytes` are B's bytes as stored (a frozen weight in its format).
    pub fn matmul(kernel: &'static str, m: u32, k: u32, n: u32, b_bytes: u64, accumulate: bool) -> Self {
        let (m, k, n) = (m as u64, k as u64, n as u64);
        let c = 4 * m * n;
        Cost { kernel, flops: 2 * m * k * n, read: 4 * m * k + b_bytes + if accumulate { c } else { 0 }, written: c }
    }
}

/// The dispatches of one kernel in a step, added up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelTotals {
    pub kernel: &'static str,
    pub dispatches: usize,
    pub flops: u64,
    pub read: u64,
    pub written: u64,
    /// Σ over these dispatches of each one's roofline time on each [`PAPER_GPUS`] entry, in seconds: a dispatch
    /// takes at least its FLOPs at the peak rate or its bytes at the peak bandwidth, whichever is longer.
    pub roofline_s: [f64; 2],
}

/// A GPU on paper: its fp32 peak and its memory bandwidth.
#[derive(Clone, Copy, Debug)]
pub struct PaperGpu {
    pub name: &'static str,
    pub flops_per_s: f64,
    pub bytes_per_s: f64,
}

/// The two GPUs the profile is held against: an integrated laptop GPU (a few hundred shader cores sharing the
/// laptop's DDR5/LPDDR5) and a mid-range discrete one (GDDR6).
pub const PAPER_GPUS: [PaperGpu; 2] = [
    PaperGpu { name: "integrated (2 TFLOP/s, 100 GB/s)", flops_per_s: 2e12, bytes_per_s: 100e9 },
    PaperGpu { name: "discrete (20 TFLOP/s, 500 GB/s)", flops_per_s: 20e12, bytes_per_s: 500e9 },
];

impl PaperGpu {
    /// The least time `flops` and `bytes` take here: one or the other bounds it.
    pub fn roofline_s(&self, flops: u64, bytes: u64) -> f64 {
        (flops as f64 / self.flops_per_s).max(bytes as f64 / self.bytes_per_s)
    }
}

/// `costs` grouped by kernel, in the order each kernel first appears.
pub fn by_kernel(costs: &[Cost]) -> Vec<KernelTotals> {
    let mut out: Vec<KernelTotals> = Vec::new();
    for c in costs {
        let i = match out.iter().position(|t| t.kernel == c.kernel) {
            Some(i) => i,
            None => {
                out.push(KernelTotals { kernel: c.kernel, ..Default::default() });
                out.len() - 1
            }
        };
        let t = &mut out[i];
        t.dispatches += 1;
        t.flops += c.flops;
        t.read += c.read;
        t.written += c.written;
        for (s, gpu) in t.roofline_s.iter_mut().zip(PAPER_GPUS) {
            *s += gpu.roofline_s(c.flops, c.read + c.written);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matmul_counts_its_multiply_adds_and_its_operands_once() {
        let c = Cost::matmul("matmul", 2, 3, 4, 6, true);
        assert_eq!(c.flops, 2 * 2 * 3 * 4);
        assert_eq!(c.read, 4 * 2 * 3 + 6 + 4 * 2 * 4);
        assert_eq!(c.written, 4 * 2 * 4);
    }

    #[test]
    fn totals_add_up_per_kernel_in_first_seen_order_with_each_dispatch_on_its_own_roofline() {
        let costs = [
            Cost::new("b", 2_000_000_000_000, 0, 0), // one second of arithmetic on the integrated GPU
            Cost::new("a", 0, 100_000_000_000, 0),   // one second of memory there
            Cost::new("b", 0, 50_000_000_000, 50_000_000_000),
        ];
        let t = by_kernel(&costs);
        assert_eq!(t.iter().map(|t| (t.kernel, t.dispatches)).collect::<Vec<_>>(), [("b", 2), ("a", 1)]);
        assert_eq!((t[0].flops, t[0].read, t[0].written), (2_000_000_000_000, 50_000_000_000, 50_000_000_000));
        // Two dispatches of b: one bound by arithmetic (1 s), one by memory (1 s); not max(total flops, total bytes).
        assert!((t[0].roofline_s[0] - 2.0).abs() < 1e-12);
        assert!((t[1].roofline_s[0] - 1.0).abs() < 1e-12);
        assert!((t[0].roofline_s[1] - (0.1 + 0.2)).abs() < 1e-12);
    }
}
