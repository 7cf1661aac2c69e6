//! The page's matrix multiply (wasm32): GotoBLAS/BLIS blocking around a 4 × 8 wasm-SIMD micro-kernel.
//!
//! Why our own: matrixmultiply's wasm kernel is 8 × 8, whose 16 accumulators plus operands outnumber the 16 vector
//! registers V8 gives wasm SIMD on x86-64, so it spills in its inner loop, and it broadcasts A with shuffles, which
//! all queue for one execution port. A 4 × 8 tile keeps its 8 accumulators, two B vectors and the broadcast in
//! registers and broadcasts with `v128.load32_splat`, which runs on the load ports. In V8 on this project's AVX-512
//! Xeon (relaxed SIMD, one thread) the kernel alone ran at ~40 GFLOP/s against matrixmultiply's ~27, and the shipped
//! model's large products at 36–38 against 30–31 GFLOP/s — a scratch benchmark while writing this; `bench.html`
//! measures ours in any browser, next to the ceiling it works under (`madd_peak`). With the crate's `relaxed-simd`
//! feature (the page's `*-relaxed` builds) each multiply-add is one `f32x4.relaxed_madd`, fused where the CPU has FMA:
//! the micro-kernel and `madd_peak` enable the `relaxed-simd` target feature for themselves.
//! What V8 makes of the inner loop (Chromium 156 on x86-64, read from `--js-flags=--perf-prof`'s jitdump): per depth
//! step four `vbroadcastss` and two loads, eight `vfmadd231ps`, three address additions and the loop counter —
//! bound by the two FMA ports, as it should be. (LLVM's loop strength reduction leaves the constant offsets as
//! additions instead of load offsets; `-C llvm-args=-disable-lsr` folds them, but neither that nor a 5 × 8 tile it
//! makes room for gained anything measurable on the page.)
//!
//! Natively the blocking runs on a portable scalar tile, so that the native tests check the packing and the edges; the
//! browser tests check the SIMD tile.

use super::matmul::Mat;
#[cfg(target_arch = "wasm32")]
use core::arch::wasm32::*;
use rayon::prelude::*;
use std::cell::Cell;
use std::thread::LocalKey;

/// Rows of a micro-tile (the A panel's width).
const MR: usize = 4;
/// Columns of a micro-tile (the B panel's width: two f32x4 vectors).
const NR: usize = 8;
/// Depth of one packed block: a B panel (KC × NR, 8 KiB) stays in L1 while the A block streams past it.
const KC: usize = 256;
/// Rows of one packed A block (MC × KC, 64 KiB, in L2); also the unit of parallel work.
const MC: usize = 64;
/// Columns of one packed B block (bounds its buffer at KC × NC floats, 4 MiB).
const NC: usize = 4096;
/// Outputs this narrow (a rank-r adapter's x·Aᵀ, r ≤ 16) read A where it lies: each A value then serves at most two
/// micro-tiles, fewer than it would take to repay copying it into panels.
const DIRECT_A_COLUMNS: usize = 2 * NR;

/// The A side of one block of output rows: packed into MR-row panels, or read in place with its strides.
#[derive(Clone, Copy)]
enum ABlock<'a> {
    Packed(&'a [f32]),
    Direct { data: &'a [f32], rs: usize, cs: usize },
}

/// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C` (C row-major, leading dimension `ldc`; `beta = 0` ignores what C
/// held). The caller (`matmul::gemm`) has checked the operands' bounds and that m, n and k are non-zero. `parallel`
/// splits the work over rayon's pool (blocks of MC output rows; B's panels while packing).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
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
    let tasks = if parallel { row_tasks(m, k, n, rayon::current_num_threads()) } else { 1 };
    // With one task, packing B in parallel too would only add the pool's overhead (on a 64 × 48 × 64 attention
    // product, most of the time).
    let parallel = tasks > 1;
    let rows = m.div_ceil(tasks).next_multiple_of(MR);
    let mut packed_b = Scratch::take(&PACKED_B, KC.min(k) * NC.min(n).div_ceil(NR) * NR);
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let panels = &mut packed_b[..kc * nc.div_ceil(NR) * NR];
            pack_b(b, pc, kc, jc, nc, panels, parallel);
            let panels = &*panels;
            // Later depth blocks add to what the first one stored.
            let beta = if pc == 0 { beta } else { 1.0 };
            let multiply_rows = |(task, c_rows): (usize, &mut [f32])| {
                let mut packed_a = Scratch::take(&PACKED_A, MC * kc);
                let row0 = task * rows;
                let task_rows = rows.min(m - row0);
                for ic in (0..task_rows).step_by(MC) {
                    let mc = MC.min(task_rows - ic);
                    let block = if nc <= DIRECT_A_COLUMNS {
                        let (rs, cs) = a.strides();
                        let (rs, cs) = (rs as usize, cs as usize);
                        ABlock::Direct { data: &a.data[(row0 + ic) * rs + pc * cs..], rs, cs }
                    } else {
                        let block = &mut packed_a[..mc.div_ceil(MR) * MR * kc];
                        pack_a(a, row0 + ic, mc, pc, kc, block);
                        ABlock::Packed(block)
                    };
                    multiply_block(mc, kc, nc, alpha, block, panels, beta, &mut c_rows[ic * ldc..], ldc, jc);
                }
                packed_a.give_back(&PACKED_A);
            };
            // One task runs here, without the pool's bookkeeping (which, called from outside the pool, hands even a
            // single task to one of its threads and waits).
            if parallel {
                c.par_chunks_mut(rows * ldc).enumerate().for_each(multiply_rows);
            } else {
                multiply_rows((0, &mut *c));
            }
        }
    }
    packed_b.give_back(&PACKED_B);
}

/// Multiply-adds that one parallel task must have at least: handing work to another thread of the page's pool
/// wakes a Web Worker through an atomic wait, which costs tens of microseconds — as long as a rank-8 adapter's
/// x·Aᵀ on 512 rows takes whole (which ran at 25 GFLOP/s split in eight, 34 on one thread).
const MIN_TASK_WORK: usize = 1 << 20;

/// How many tasks of consecutive output rows to split a product into: one per thread at most (each is a fork the pool
/// pays for), each at least one row block and `MIN_TASK_WORK` multiply-adds.
fn row_tasks(m: usize, k: usize, n: usize, threads: usize) -> usize {
    threads.min(m.div_ceil(MC)).min(m * k * n / MIN_TASK_WORK).max(1)
}

thread_local! {
    /// Each thread's packing buffers, kept between calls: a training step multiplies hundreds of times, and fresh
    /// zeroed allocations cost more than small products do.
    static PACKED_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PACKED_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// A packing buffer taken out of its thread-local slot, so that a multiply that runs inside another on the same
/// thread (rayon runs stolen work while it waits) finds the slot empty and allocates its own instead of sharing.
struct Scratch(Vec<f32>);

impl Scratch {
    /// At least `len` floats, contents unspecified (packing writes every one it uses).
    fn take(slot: &'static LocalKey<Cell<Vec<f32>>>, len: usize) -> Self {
        let mut buf = slot.with(Cell::take);
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Scratch(buf)
    }

    fn give_back(self, slot: &'static LocalKey<Cell<Vec<f32>>>) {
        slot.with(|s| s.set(self.0));
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// Packs rows `r0..r0+mc`, depths `p0..p0+kc` of A into MR-row panels, each stored depth-major (`kc × MR`), the last
/// one zero-padded.
fn pack_a(a: Mat, r0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
    let (rs, cs) = a.strides();
    let (rs, cs) = (rs as usize, cs as usize);
    for (panel, dst) in out.chunks_exact_mut(kc * MR).enumerate() {
        let rows = MR.min(mc - panel * MR);
        if rows < MR {
            dst.fill(0.0);
        }
        if rs == 1 && rows == MR {
            // Transposed A: each depth's four rows are contiguous.
            for (p, column) in dst.chunks_exact_mut(MR).enumerate() {
                let at = (p0 + p) * cs + r0 + panel * MR;
                column.copy_from_slice(&a.data[at..at + MR]);
            }
        } else {
            for i in 0..rows {
                pack_line(a.data, (r0 + panel * MR + i) * rs + p0 * cs, cs, kc, &mut dst[i..], MR);
            }
        }
    }
}

/// Packs depths `p0..p0+kc`, columns `c0..c0+nc` of B into NR-column panels, each stored depth-major (`kc × NR`),
/// the last one zero-padded.
fn pack_b(b: Mat, p0: usize, kc: usize, c0: usize, nc: usize, out: &mut [f32], parallel: bool) {
    let (rs, cs) = b.strides();
    let (rs, cs) = (rs as usize, cs as usize);
    let pack_panel = |(panel, dst): (usize, &mut [f32])| {
        let cols = NR.min(nc - panel * NR);
        if cols < NR {
            dst.fill(0.0);
        }
        if cs == 1 && cols == NR {
            // Row-major B: each depth's eight columns are contiguous.
            for (p, row) in dst.chunks_exact_mut(NR).enumerate() {
                let at = (p0 + p) * rs + c0 + panel * NR;
                row.copy_from_slice(&b.data[at..at + NR]);
            }
        } else {
            for j in 0..cols {
                pack_line(b.data, p0 * rs + (c0 + panel * NR + j) * cs, rs, kc, &mut dst[j..], NR);
            }
        }
    };
    if parallel {
        out.par_chunks_exact_mut(kc * NR).enumerate().for_each(pack_panel);
    } else {
        out.chunks_exact_mut(kc * NR).enumerate().for_each(pack_panel);
    }
}

/// Copies `len` values of `src` from `start` on, `step` apart, to every `width`-th place of `dst`: one row of A or
/// one column of B into its panel. A unit step (the common case: A row-major, B transposed) reads contiguously.
fn pack_line(src: &[f32], start: usize, step: usize, len: usize, dst: &mut [f32], width: usize) {
    let dst = dst.iter_mut().step_by(width).take(len);
    if step == 1 {
        for (d, &v) in dst.zip(&src[start..start + len]) {
            *d = v;
        }
    } else {
        for (d, &v) in dst.zip(src[start..].iter().step_by(step)) {
            *d = v;
        }
    }
}

/// One packed A block against every packed B panel: the output rows start at `c` (leading dimension `ldc`), the
/// output columns at `c0`.
#[allow(clippy::too_many_arguments)]
fn multiply_block(
    mc: usize,
    kc: usize,
    nc: usize,
    alpha: f32,
    a: ABlock,
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    c0: usize,
) {
    for (jp, b_panel) in b.chunks_exact(kc * NR).enumerate() {
        let cols = NR.min(nc - jp * NR);
        for ip in 0..mc.div_ceil(MR) {
            let rows = MR.min(mc - ip * MR);
            let at = ip * MR * ldc + c0 + jp * NR;
            // The tile's last row ends `cols` after its start; the slice must hold it.
            let tile_c = &mut c[at..at + (rows - 1) * ldc + cols];
            match a {
                ABlock::Packed(panels) => {
                    let panel = &panels[ip * kc * MR..(ip + 1) * kc * MR];
                    tile::<true>(kc, panel, 1, MR, b_panel, alpha, beta, tile_c, ldc, rows, cols)
                }
                ABlock::Direct { data, rs, cs } => {
                    tile::<false>(kc, &data[ip * MR * rs..], rs, cs, b_panel, alpha, beta, tile_c, ldc, rows, cols)
                }
            }
        }
    }
}

/// `a · b + c`: one fused instruction in the relaxed-SIMD builds where the CPU has FMA, else a multiply and an add.
/// (Its callers enable the target feature too, so that it inlines into them.)
#[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
#[target_feature(enable = "relaxed-simd")]
#[inline]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    f32x4_relaxed_madd(a, b, c)
}

#[cfg(all(target_arch = "wasm32", not(feature = "relaxed-simd")))]
#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    f32x4_add(f32x4_mul(a, b), c)
}

/// Independent chains in `madd_peak`: more than the multiply-adds in flight on current x86 and Arm cores (two or
/// four per cycle, four cycles each), few enough to stay in V8's vector registers with both operands.
#[cfg(target_arch = "wasm32")]
pub const PEAK_CHAINS: usize = 12;

/// The ceiling the micro-kernel works under: `rounds` rounds of `PEAK_CHAINS` independent `madd`s on f32x4
/// values held in registers, no memory traffic. The benchmark page times it (8 · PEAK_CHAINS flops per round) and
/// prints the multiply's GFLOP/s against it. Returns a sum of the chains, so that the work is observable.
#[cfg(target_arch = "wasm32")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
pub fn madd_peak(rounds: usize) -> f32 {
    // Multiplying by a value just below one and adding a small one keeps every chain finite however long it runs.
    let (x, y) = (f32x4_splat(0.999_999), f32x4_splat(1e-6));
    let mut acc: [v128; PEAK_CHAINS] = std::array::from_fn(|i| f32x4_splat(i as f32));
    for _ in 0..rounds {
        for a in &mut acc {
            *a = madd(*a, x, y);
        }
    }
    acc.iter().map(|&a| f32x4_extract_lane::<0>(a) + f32x4_extract_lane::<3>(a)).sum()
}

/// `C[rows×cols] = alpha · (A rows · B panel) + beta · C` for one micro-tile (`rows ≤ MR`, `cols ≤ NR`). A's value
/// (i, p) is `a[i·a_rs + p·a_cs]`: a packed panel (`PACKED`: strides 1 and MR, known when compiling, so the loads take
/// constant offsets) or A in place. Rows past `rows` repeat the last one; their sums are never stored.
#[cfg(target_arch = "wasm32")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[allow(clippy::too_many_arguments)]
fn tile<const PACKED: bool>(
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    alpha: f32,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    let (a_rs, a_cs, last) = if PACKED { (1, MR, MR - 1) } else { (a_rs, a_cs, rows - 1) };
    let row_offsets: [usize; MR] = std::array::from_fn(|i| i.min(last) * a_rs);
    assert!(k > 0 && a.len() > last * a_rs + (k - 1) * a_cs && b.len() >= k * NR);
    let mut acc = [[f32x4_splat(0.0); 2]; MR];
    // SAFETY: the assertion above: step p reads a[row_offsets[i] + p·a_cs] (each ≤ last·a_rs + (k-1)·a_cs) and
    // b[p·NR .. p·NR + NR], p < k.
    unsafe {
        let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
        for _ in 0..k {
            let b0 = v128_load(pb as *const v128);
            let b1 = v128_load(pb.add(4) as *const v128);
            for (row, &offset) in acc.iter_mut().zip(&row_offsets) {
                let ai = v128_load32_splat(pa.add(offset) as *const u32);
                row[0] = madd(ai, b0, row[0]);
                row[1] = madd(ai, b1, row[1]);
            }
            pa = pa.add(a_cs);
            pb = pb.add(NR);
        }
    }
    let alpha_v = f32x4_splat(alpha);
    if rows == MR && cols == NR {
        let beta_v = f32x4_splat(beta);
        for (i, row) in acc.iter().enumerate() {
            let out = &mut c[i * ldc..i * ldc + NR];
            for (half, &sum) in row.iter().enumerate() {
                let out = &mut out[4 * half..4 * half + 4];
                let scaled = f32x4_mul(alpha_v, sum);
                // SAFETY: `out` holds exactly four floats.
                unsafe {
                    let ptr = out.as_mut_ptr() as *mut v128;
                    // beta = 0 never reads C, which may hold NaN (as in BLAS).
                    let value = if beta == 0.0 { scaled } else { madd(beta_v, v128_load(ptr), scaled) };
                    v128_store(ptr, value);
                }
            }
        }
    } else {
        let mut sums = [0.0f32; MR * NR];
        for (i, row) in acc.iter().enumerate() {
            for (half, &sum) in row.iter().enumerate() {
                // SAFETY: four floats, inside `sums`.
                unsafe { v128_store(sums[i * NR + 4 * half..].as_mut_ptr() as *mut v128, f32x4_mul(alpha_v, sum)) };
            }
        }
        store_edge(&sums, beta, c, ldc, rows, cols);
    }
}

/// The portable tile: natively, the packed multiply exists for the tests of its blocking and edges.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
fn tile<const PACKED: bool>(
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    alpha: f32,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    let mut sums = [0.0f32; MR * NR];
    for (p, b_p) in b[..k * NR].chunks_exact(NR).enumerate() {
        for i in 0..rows {
            let ai = a[i * a_rs + p * a_cs];
            for (j, &bj) in b_p.iter().enumerate() {
                sums[i * NR + j] += ai * bj;
            }
        }
    }
    for s in &mut sums {
        *s *= alpha;
    }
    store_edge(&sums, beta, c, ldc, rows, cols);
}

/// Stores the `rows × cols` corner of an alpha-scaled tile: `C = sums + beta · C` (`beta = 0` never reads C).
fn store_edge(sums: &[f32; MR * NR], beta: f32, c: &mut [f32], ldc: usize, rows: usize, cols: usize) {
    for i in 0..rows {
        for j in 0..cols {
            let out = &mut c[i * ldc + j];
            *out = if beta == 0.0 { sums[i * NR + j] } else { sums[i * NR + j] + beta * *out };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_split_into_one_task_per_thread_only_when_each_has_the_work_to_repay_it() {
        // The shipped model's qkv product (512 × 192 × 576) on two threads: two halves.
        assert_eq!(row_tasks(512, 192, 576, 2), 2);
        // No more tasks than row blocks of MC, than threads, or than MIN_TASK_WORK allows.
        assert_eq!(row_tasks(512, 192, 576, 16), 512 / MC);
        assert_eq!(row_tasks(512, 192, 8, 2), 1, "a rank-8 adapter's x·Aᵀ stays whole");
        assert_eq!(row_tasks(512, 8, 576, 4), 2, "(x·Aᵀ)·Bᵀ: 2.4 M multiply-adds make two tasks");
        assert_eq!(row_tasks(64, 48, 64, 2), 1, "one row block is one task");
        assert_eq!(row_tasks(512, 192, 576, 1), 1);
    }
}
