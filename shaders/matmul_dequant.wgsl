// Matmul against a frozen base weight stored in any format (decoded by dequant.wgsl, prepended at build time).
// W is the Linear [out × in] matrix. mode 0 (forward):  y[M×out] = x[M×in] · Wᵀ (+ bias, + beta·y);
//                                      mode 1 (backward): dx[M×in] = dy[M×out] · W (+ beta·dx).
// Out-of-range loads read 0. The tiling (entry points `main` and `main_large`) is matmul_tiles.wgsl, appended at
// build time; each workgroup decodes a weight once per tile that uses it.

struct Params {
    m: u32,
    n: u32,        // output columns: `out` in mode 0, `in` in mode 1
    k: u32,        // reduction: `in` in mode 0, `out` in mode 1
    mode: u32,
    in_features: u32,
    use_bias: u32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn depth() -> u32 { return p.k; }

fn lhs(row: u32, k: u32) -> f32 {
    if (row >= p.m || k >= p.k) { return 0.0; }
    return x[row * p.k + k];
}

// Element (r, c) of op(W) as the [k × n] right-hand side.
fn rhs(r: u32, c: u32) -> f32 {
    if (r >= p.k || c >= p.n) { return 0.0; }
    if (p.mode == 0u) { return weight_at(c * p.in_features + r); }  // Wᵀ[r, c] = W[c, r]
    return weight_at(r * p.in_features + c);                        // W[r, c]
}

fn store(row: u32, col: u32, acc: f32) {
    if (row < p.m && col < p.n) {
        let idx = row * p.n + col;
        var out = acc;
        if (p.use_bias == 1u) { out = out + bias[col]; }
        if (p.beta != 0.0) { out = out + p.beta * y[idx]; }
        y[idx] = out;
    }
}
