// Matmul against a frozen base weight stored in any format (decoded by dequant.wgsl, prepended at build time).
// W is the Linear [out × in] matrix. Forward (TRANSPOSE_W):   y[M×out] = x[M×in] · Wᵀ (+ bias, + beta·y);
//                                      backward (!TRANSPOSE_W): dx[M×in] = dy[M×out] · W (+ beta·dx).
// TRANSPOSE_W is a pipeline constant: each direction is its own pipeline (src/gpu/matmul.rs `MatmulDequant`).
// x and y may be sub-matrices of larger buffers: row strides `ldx`, `ldy` and first elements `x_offset`, `y_offset`
// (the tied head reads a chunk of rows and writes its columns of the logits). Out-of-range loads read 0. The tiling
// (entry points `thin_rows`, `small_tiles` and `large_tiles`) is matmul_tiles.wgsl, appended at build time; each
// workgroup decodes a weight once per tile that uses it.

override TRANSPOSE_W: bool;

struct Params {
    m: u32,
    n: u32,        // output columns: `out` forward, `in` backward
    k: u32,        // reduction: `in` forward, `out` backward
    in_features: u32,
    use_bias: u32,
    beta: f32,
    ldx: u32,
    ldy: u32,
    x_offset: u32,
    y_offset: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn depth() -> u32 { return p.k; }
fn height() -> u32 { return p.m; }
fn width() -> u32 { return p.n; }

// Branch-free loads, as in matmul.wgsl: an index chosen by `select`, element 0 read in place of one outside the
// matrix, then zeroed (CPU emulators of a GPU run each branch of an invocation as masked code).
fn lhs(row: u32, k: u32) -> f32 {
    let inside = row < p.m && k < p.k;
    return select(0.0, x[select(0u, p.x_offset + row * p.ldx + k, inside)], inside);
}

// Element (r, c) of op(W) as the [k × n] right-hand side: Wᵀ[r, c] = W[c, r] forward, W[r, c] backward.
fn rhs(r: u32, c: u32) -> f32 {
    let inside = r < p.k && c < p.n;
    var flat = r * p.in_features + c;
    if (TRANSPOSE_W) { flat = c * p.in_features + r; }
    return select(0.0, weight_at(select(0u, flat, inside)), inside);
}

fn store(row: u32, col: u32, acc: f32) {
    if (row < p.m && col < p.n) {
        let idx = p.y_offset + row * p.ldy + col;
        var out = acc;
        if (p.use_bias == 1u) { out = out + bias[col]; }
        if (p.beta != 0.0) { out = out + p.beta * y[idx]; }
        y[idx] = out;
    }
}
