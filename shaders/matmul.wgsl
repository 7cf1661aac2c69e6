// Matrix multiply over f32: C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C.
// op(X) is X or Xᵀ (flags in `p.trans`): A is stored [M×K] (or [K×M] when transposed), B [K×N] (or [N×K]).
// Every operand has its own row stride and starting element, so a kernel can read or write one column slice of a
// wider matrix (the q, k or v slice of c_attn) or one tensor of a flat buffer. Out-of-range loads read 0, so any
// shape works. The tiling (entry points `small_tiles` and `large_tiles`) is matmul_tiles.wgsl, appended at build time.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans: u32,     // bit 0: A transposed, bit 1: B transposed
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

fn lhs(row: u32, col: u32) -> f32 {
    if (row >= p.m || col >= p.k) { return 0.0; }
    if ((p.trans & 1u) != 0u) { return a[p.a_offset + col * p.lda + row]; }
    return a[p.a_offset + row * p.lda + col];
}

fn rhs(row: u32, col: u32) -> f32 {
    if (row >= p.k || col >= p.n) { return 0.0; }
    if ((p.trans & 2u) != 0u) { return b[p.b_offset + col * p.ldb + row]; }
    return b[p.b_offset + row * p.ldb + col];
}

fn store(row: u32, col: u32, acc: f32) {
    if (row < p.m && col < p.n) {
        let idx = p.c_offset + row * p.ldc + col;
        var prev = 0.0;
        if (p.beta != 0.0) { prev = p.beta * c[idx]; }
        c[idx] = p.alpha * acc + prev;
    }
}
