//! The one matrix multiply of the CPU executor. Natively it is the `gemm` crate (faer's and candle's; AVX2/AVX-512
//! kernels, rayon inside, and it measured 2× matrixmultiply on a training step's skinny shapes). In the page (wasm32)
//! it is our packed multiply with a wasm-SIMD micro-kernel (`packed`; the `gemm` crate has no simd128 kernel), split
//! over blocks of output rows with rayon (which, without threads in wasm, runs the pieces in turn).

/// A row-major matrix operand: `rows × cols` logical shape after the optional transpose, stored with leading
/// dimension `ld` (elements between consecutive stored rows).
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub trans: bool,
}

impl<'a> Mat<'a> {
    /// A plain row-major matrix with `ld` columns per stored row.
    pub fn new(data: &'a [f32], ld: usize) -> Self {
        Mat { data, ld, trans: false }
    }

    /// The transpose of a row-major matrix stored with `ld` columns per row.
    pub fn t(data: &'a [f32], ld: usize) -> Self {
        Mat { data, ld, trans: true }
    }

    /// The same storage read as the transposed matrix.
    pub fn transposed(self) -> Self {
        Mat { trans: !self.trans, ..self }
    }

    /// (row stride, column stride) of the logical matrix.
    pub(super) fn strides(&self) -> (isize, isize) {
        if self.trans {
            (1, self.ld as isize)
        } else {
            (self.ld as isize, 1)
        }
    }

    /// Checks that the logical `rows × cols` matrix lies inside `data`.
    fn check(&self, rows: usize, cols: usize) {
        if rows == 0 || cols == 0 {
            return;
        }
        let (rs, cs) = self.strides();
        let last = (rows - 1) as isize * rs + (cols - 1) as isize * cs;
        assert!((last as usize) < self.data.len(), "matrix operand out of bounds");
    }
}

/// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C`, with C row-major with leading dimension `ldc`. `beta = 0` ignores
/// what C held (NaN included), as in BLAS.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k);
    b.check(k, n);
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "output out of bounds");
    let c = &mut c[..(m - 1) * ldc + n];
    if k == 0 {
        // An empty sum: C = beta · C.
        for row in c.chunks_mut(ldc) {
            for x in &mut row[..n] {
                *x = if beta == 0.0 { 0.0 } else { beta * *x };
            }
        }
        return;
    }
    kernel(m, k, n, alpha, a, b, beta, c, ldc);
}

/// Products below this many multiply-adds run on one thread: splitting them costs more than it saves.
const PARALLEL_WORK: usize = 1 << 16;

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
fn kernel(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    // Small products, and products already inside a parallel task (attention, per sequence), stay on one thread.
    let parallel = rayon::current_thread_index().is_none() && m * n * k >= PARALLEL_WORK;
    #[cfg(feature = "openblas")]
    super::blas::gemm(m, k, n, alpha, a, b, beta, c, ldc, parallel);
    #[cfg(not(feature = "openblas"))]
    gemm_crate(m, k, n, alpha, a, b, beta, c, ldc, parallel);
}

/// The `gemm` crate's multiply (the default natively).
#[cfg(all(not(target_arch = "wasm32"), not(feature = "openblas")))]
#[allow(clippy::too_many_arguments)]
fn gemm_crate(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat,
    b: Mat,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    let (ars, acs) = a.strides();
    let (brs, bcs) = b.strides();
    let parallelism = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: `check` proved every element of the logical A and B lies inside its slice and the assertion in `gemm`
    // that C's m rows of n (leading dimension ldc) do; A and B are only read. The crate computes
    // dst := alpha·dst + beta·lhs·rhs, so our alpha and beta trade places, and dst is read only when beta ≠ 0.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            beta != 0.0,
            a.data.as_ptr(),
            acs,
            ars,
            b.data.as_ptr(),
            bcs,
            brs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(clippy::too_many_arguments)]
fn kernel(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    super::packed::gemm(m, k, n, alpha, a, b, beta, c, ldc, m * n * k >= PARALLEL_WORK);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    type Gemm<'f> = &'f dyn Fn(usize, usize, usize, f32, Mat, Mat, f32, &mut [f32], usize);

    /// Every orientation and both kinds of beta, into an output whose leading dimension is wider than its rows (the
    /// gap must stay untouched), on shapes that take each edge of the packed multiply: partial micro-tiles (m % 4,
    /// n % 8), partial and several row blocks (m > 64), two depth blocks (k > 256), two column blocks (n > 4096), A
    /// read in place (n ≤ 16) and packed.
    fn check_against_naive(gemm: Gemm) {
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (130, 33, 65),
            (200, 64, 3),
            (67, 300, 29),
            (67, 300, 13),
            (5, 2, 4100),
            (512, 192, 576),
            (300, 64, 130),
            (4, 0, 3),
        ];
        for (m, k, n) in shapes {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let ldc = n + 3;
            for ta in [false, true] {
                for tb in [false, true] {
                    let am = if ta { Mat::t(&a, m) } else { Mat::new(&a, k) };
                    let bm = if tb { Mat::t(&b, k) } else { Mat::new(&b, n) };
                    let want = naive(m, k, n, &a, ta, &b, tb);
                    // beta = 0 ignores C, even NaN; beta ≠ 0 accumulates, scaled by alpha.
                    for (alpha, beta, before) in [(1.0, 0.0, f32::NAN), (0.5, 2.0, 1.0)] {
                        let mut c = vec![before; (m - 1) * ldc + n];
                        gemm(m, k, n, alpha, am, bm, beta, &mut c, ldc);
                        for (i, row) in c.chunks(ldc).enumerate() {
                            for (j, &x) in row.iter().enumerate() {
                                let at = format!("{m}x{k}x{n} ta={ta} tb={tb} beta={beta} at ({i}, {j})");
                                if j >= n {
                                    assert!(x.is_nan() == before.is_nan() && (x.is_nan() || x == before), "{at}");
                                    continue;
                                }
                                let y = beta * if beta == 0.0 { 0.0 } else { before } + alpha * want[i * n + j];
                                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{at}: {x} vs {y}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matches_naive_in_every_orientation() {
        check_against_naive(&|m, k, n, alpha, a, b, beta, c, ldc| gemm(m, k, n, alpha, a, b, beta, c, ldc));
    }

    #[test]
    fn the_pages_packed_multiply_matches_naive_serial_and_parallel() {
        // Four threads whatever the machine has, so that the large shapes split into several row tasks (512 × 192 ×
        // 576 into four of 128 rows, 300 × 64 × 130 into two of 152 and 148).
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        for parallel in [false, true] {
            pool.install(|| {
                check_against_naive(&|m, k, n, alpha, a, b, beta, c, ldc| {
                    if k == 0 {
                        // The front (`gemm`) answers empty sums itself; the packed multiply never sees them.
                        return gemm(m, k, n, alpha, a, b, beta, c, ldc);
                    }
                    a.check(m, k);
                    b.check(k, n);
                    super::super::packed::gemm(m, k, n, alpha, a, b, beta, c, ldc, parallel);
                })
            });
        }
    }
}
