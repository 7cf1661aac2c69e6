//! The one matrix multiply of the CPU executor: `matrixmultiply`'s blocked SIMD sgemm, split over rows of the output
//! with rayon (on wasm32 without threads rayon runs the pieces in turn).

use rayon::prelude::*;

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

    /// (row stride, column stride) of the logical matrix.
    fn strides(&self) -> (isize, isize) {
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

/// Rows of the output computed per rayon task: big enough to amortise task overhead and keep sgemm's packing useful.
const ROWS_PER_TASK: usize = 64;

/// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C`, with C row-major with leading dimension `ldc`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k);
    b.check(k, n);
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "output out of bounds");
    let c = &mut c[..(m - 1) * ldc + n];
    let (ars, acs) = a.strides();
    let (brs, bcs) = b.strides();
    let work = m * n * k.max(1);
    let rows_per_task = if work < 1 << 16 { m } else { ROWS_PER_TASK.min(m) };
    c.par_chunks_mut(rows_per_task * ldc).enumerate().for_each(|(chunk, c_rows)| {
        let row0 = chunk * rows_per_task;
        let rows = (m - row0).min(rows_per_task);
        let a_off = row0 as isize * ars;
        // SAFETY: `check` proved every element of the logical A (rows row0..row0+rows), B and this chunk of C lies
        // inside its slice; chunks of C are disjoint, A and B are only read.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                alpha,
                a.data.as_ptr().offset(a_off),
                ars,
                acs,
                b.data.as_ptr(),
                brs,
                bcs,
                beta,
                c_rows.as_mut_ptr(),
                ldc as isize,
                1,
            );
        }
    });
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

    #[test]
    fn matches_naive_in_every_orientation() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (130, 33, 65), (200, 64, 3)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            for ta in [false, true] {
                for tb in [false, true] {
                    let am = if ta { Mat::t(&a, m) } else { Mat::new(&a, k) };
                    let bm = if tb { Mat::t(&b, k) } else { Mat::new(&b, n) };
                    let mut c = vec![0.0; m * n];
                    gemm(m, k, n, 1.0, am, bm, 0.0, &mut c, n);
                    let want = naive(m, k, n, &a, ta, &b, tb);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{k}x{n} ta={ta} tb={tb}: {x} vs {y}");
                    }
                }
            }
        }
    }
}
