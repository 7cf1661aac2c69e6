// Matmul against a frozen base weight stored in any format (decoded by dequant.wgsl, prepended at build time).
// W is the Linear [out × in] matrix. mode 0 (forward):  y[M×out] = x[M×in] · Wᵀ (+ bias, + beta·y);
//                                      mode 1 (backward): dx[M×in] = dy[M×out] · W (+ beta·dx).
// Out-of-range loads read 0. As in matmul.wgsl, `main` computes 16×16 output tiles (one output per invocation) and
// `main_large` 64×64 tiles (a 4×4 block per invocation); each decodes a weight once per workgroup that uses it.

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
    store(row, col, acc);
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

var<workgroup> big_x: array<array<f32, 64>, 16>;   // [k][row of the output tile]
var<workgroup> big_w: array<array<f32, 64>, 16>;   // [k][column of the output tile]

@compute @workgroup_size(16, 16, 1)
fn main_large(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    var acc: array<vec4<f32>, 4>;  // rows row0 + lid.y + 16·i, columns col0 + lid.x + 16·j
    let steps = (p.k + 15u) / 16u;
    for (var s = 0u; s < steps; s = s + 1u) {
        let k0 = s * 16u;
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li + 256u * e;
            let rx = row0 + idx / 16u;
            let kx = k0 + idx % 16u;
            var xv = 0.0;
            if (rx < p.m && kx < p.k) { xv = x[rx * p.k + kx]; }
            big_x[idx % 16u][idx / 16u] = xv;
            big_w[idx / 64u][idx % 64u] = load_w(k0 + idx / 64u, col0 + idx % 64u);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk = kk + 1u) {
            let wv = vec4<f32>(big_w[kk][lid.x], big_w[kk][lid.x + 16u], big_w[kk][lid.x + 32u], big_w[kk][lid.x + 48u]);
            for (var i = 0u; i < 4u; i = i + 1u) {
                acc[i] = acc[i] + big_x[kk][lid.y + 16u * i] * wv;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            store(row0 + lid.y + 16u * i, col0 + lid.x + 16u * j, acc[i][j]);
        }
    }
}
