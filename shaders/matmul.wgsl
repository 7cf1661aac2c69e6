// Matrix multiply over f32: C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C.
// op(X) is X or Xᵀ (flags in `p.trans`): A is stored [M×K] (or [K×M] when transposed), B [K×N] (or [N×K]).
// Every operand has its own row stride and starting element, so a kernel can read or write one column slice of a
// wider matrix (the q, k or v slice of c_attn) or one tensor of a flat buffer. Out-of-range loads read 0, so any
// shape works. A product of many rows and a few columns (n ≤ 16: LoRA's rank-r factors) is computed as
// Cᵀ = op(B)ᵀ · op(A)ᵀ, a few rows on the column-per-invocation tiling, and stored transposed (src/gpu/matmul.rs).
// The tiling (entry points `thin_rows`, `small_tiles` and `large_tiles`) is matmul_tiles.wgsl, appended at build
// time.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans: u32,     // bit 0: A transposed, bit 1: B transposed, bit 2: C stored transposed (the kernel computes Cᵀ)
    lda: u32,
    ldb: u32,
    ldc: u32,
    c_offset: u32,
    alpha: f32,
    beta: f32,
    a_offset: u32,
    b_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn depth() -> u32 { return p.k; }
fn height() -> u32 { return p.m; }
fn width() -> u32 { return p.n; }

// The loads are branch-free (an index chosen by `select`, element 0 read in place of one outside the matrix, then
// zeroed): CPU emulators of a GPU (SwiftShader, lavapipe) run a branch per invocation as masked code, which made
// these two functions most of a small product's time.
fn lhs(row: u32, col: u32) -> f32 {
    let inside = row < p.m && col < p.k;
    let idx = p.a_offset + select(row * p.lda + col, col * p.lda + row, (p.trans & 1u) != 0u);
    return select(0.0, a[select(0u, idx, inside)], inside);
}

fn rhs(row: u32, col: u32) -> f32 {
    let inside = row < p.k && col < p.n;
    let idx = p.b_offset + select(row * p.ldb + col, col * p.ldb + row, (p.trans & 2u) != 0u);
    return select(0.0, b[select(0u, idx, inside)], inside);
}

fn store(row: u32, col: u32, acc: f32) {
    if (row < p.m && col < p.n) {
        let idx = p.c_offset + select(row * p.ldc + col, col * p.ldc + row, (p.trans & 4u) != 0u);
        var prev = 0.0;
        if (p.beta != 0.0) { prev = p.beta * c[idx]; }
        c[idx] = p.alpha * acc + prev;
    }
}
