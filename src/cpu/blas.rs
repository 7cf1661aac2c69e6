//! The native multiply through OpenBLAS (feature `openblas`): the system's library (Debian: libopenblas-dev), called
//! through `cblas-sys`'s declarations.
//!
//! Why: it made a training step of GPT-2 124M's shape 5–7 % faster than the `gemm` crate on an AVX-512 AMD EPYC,
//! alternating the two builds (BENCHMARKS.md, issue 21). The `gemm` crate stays the default: it needs no system
//! library, and the page never has one.
//!
//! OpenBLAS is told to use one thread per call; a large product is split here with rayon into one piece per thread,
//! along the output's longer side. So `--threads`, and products already inside a parallel task (attention, per
//! sequence), mean what they mean with the `gemm` crate, and no second thread pool competes for the cores.

use super::matmul::Mat;
use cblas_sys::{cblas_sgemm, CBLAS_LAYOUT, CBLAS_TRANSPOSE};
use rayon::prelude::*;
use std::sync::Once;

// Links the system's libopenblas, which provides CBLAS too.
#[link(name = "openblas")]
extern "C" {
    /// OpenBLAS's own extension (not CBLAS): the threads each call may use.
    fn openblas_set_num_threads(n: std::os::raw::c_int);
}

static ONE_THREAD_PER_CALL: Once = Once::new();

/// A pointer into C that several threads write through, each into its own block of rows or columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pieces `gemm` hands to the threads write disjoint elements of C (see there).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

fn trans(t: bool) -> CBLAS_TRANSPOSE {
    if t {
        CBLAS_TRANSPOSE::CblasTrans
    } else {
        CBLAS_TRANSPOSE::CblasNoTrans
    }
}

/// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C` (the contract of `matmul::gemm`, which checked the bounds; m, k, n
/// are at least 1). `parallel`: split over rayon's threads.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
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
    // SAFETY: a C function of the library, taking a plain int.
    ONE_THREAD_PER_CALL.call_once(|| unsafe { openblas_set_num_threads(1) });
    let pieces = if parallel { rayon::current_num_threads().min(m.max(n)) } else { 1 };
    let out = OutPtr(c.as_mut_ptr());
    let split_rows = m >= n;
    let len = if split_rows { m } else { n };
    let piece = |i: usize| {
        let (start, end) = (len * i / pieces, len * (i + 1) / pieces);
        // Rows start..end of A and C, or columns start..end of B and C; element offsets into each slice.
        let (mm, nn, a_off, b_off, c_off) = if split_rows {
            (end - start, n, if a.trans { start } else { start * a.ld }, 0, start * ldc)
        } else {
            (m, end - start, 0, if b.trans { start * b.ld } else { start }, start)
        };
        // SAFETY: `matmul::gemm` checked that the logical A (m × k), B (k × n) and C (m rows of n, ldc apart) lie
        // inside their slices, so each piece's sub-matrices do; A and B are only read, and the pieces write disjoint
        // rows (or columns) of C. Leading dimensions are at least the stored rows' logical widths.
        unsafe {
            cblas_sgemm(
                CBLAS_LAYOUT::CblasRowMajor,
                trans(a.trans),
                trans(b.trans),
                mm as i32,
                nn as i32,
                k as i32,
                alpha,
                a.data.as_ptr().add(a_off),
                a.ld as i32,
                b.data.as_ptr().add(b_off),
                b.ld as i32,
                beta,
                { out }.0.add(c_off),
                ldc as i32,
            );
        }
    };
    if pieces <= 1 {
        piece(0);
    } else {
        (0..pieces).into_par_iter().for_each(piece);
    }
}
