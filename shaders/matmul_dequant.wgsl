// Matmul against a frozen base weight stored in any format (decoded by dequant.wgsl, prepended at build time).
// W is the Linear [out × in] matrix. mode 0 (forward):  y[M×out] = x[M×in] · Wᵀ (+ bias, + beta·y);
//                                      mode 1 (backward): dx[M×in] = dy[M×out] · W (+ beta·dx).
// 16×16 output tiles staged through workgroup memory; out-of-range loads read 0.

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

var<workgroup> tile_x: array<array<f32, 16>, 16>;
var<workgroup> tile_w: array<array<f32, 16>, 16>;

// Element (r, c) of op(W) as the [k × n] right-hand side.
fn load_w(r: u32, c: u32) -> f32 {
    if (r >= p.k || c >= p.n) { return 0.0; }
    if (p.mode == 0u) { return weight_at(c * p.in_features + r); }  // Wᵀ[r, c] = W[c, r]
    return weight_at(r * p.in_features + c);                        // W[r, c]
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * 16u + lid.y;
    let col = wg.x * 16u + lid.x;
    var acc = 0.0;
    let steps = (p.k + 15u) / 16u;
    for (var s = 0u; s < steps; s = s + 1u) {
        let kx = s * 16u + lid.x;
        var xv = 0.0;
        if (row < p.m && kx < p.k) { xv = x[row * p.k + kx]; }
        tile_x[lid.y][lid.x] = xv;
        tile_w[lid.y][lid.x] = load_w(s * 16u + lid.y, col);
        workgroupBarrier();
        for (var i = 0u; i < 16u; i = i + 1u) {
            acc = acc + tile_x[lid.y][i] * tile_w[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row < p.m && col < p.n) {
        let idx = row * p.n + col;
        var out = acc;
        if (p.use_bias == 1u) { out = out + bias[col]; }
        if (p.beta != 0.0) { out = out + p.beta * y[idx]; }
        y[idx] = out;
    }
}
