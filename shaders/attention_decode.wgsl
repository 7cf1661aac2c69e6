// One decoding step of causal self-attention with a KV cache: the new token's q, k, v come in `qkv` [3C]; k and v are
// appended to the caches at position `pos`, and the token attends to positions 0..=pos. One invocation per head
// (each owns its head's columns of the caches and of the output, so nothing races).

// exp() of arguments below about −87 is undefined territory for some drivers (SwiftShader returns garbage rather
// than 0), so softmax arguments are floored at −80: exp(−80) ≈ 2e−35 is 0 next to the maximum's 1. A NaN stays NaN
// (max() would turn it into −80 and hide a diverged run), so divergence is still detected.
const EXP_FLOOR: f32 = -80.0;
fn floor_exp_arg(d: f32) -> f32 { return select(d, EXP_FLOOR, d < EXP_FLOOR); }

struct Params {
    pos: u32,
    c: u32,
    nh: u32,
    max_t: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> kcache: array<f32>;
@group(0) @binding(3) var<storage, read_write> vcache: array<f32>;
@group(0) @binding(4) var<storage, read_write> att: array<f32>;   // [NH, max_t] probabilities (scratch)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn decode(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    if (h >= p.nh) { return; }
    let hs = p.c / p.nh;
    let scale = 1.0 / sqrt(f32(hs));
    for (var i = 0u; i < hs; i = i + 1u) {
        kcache[p.pos * p.c + h * hs + i] = qkv[p.c + h * hs + i];
        vcache[p.pos * p.c + h * hs + i] = qkv[2u * p.c + h * hs + i];
    }
    var maxv = -3.0e38;
    for (var s = 0u; s <= p.pos; s = s + 1u) {
        var dot = 0.0;
        for (var i = 0u; i < hs; i = i + 1u) { dot = dot + qkv[h * hs + i] * kcache[s * p.c + h * hs + i]; }
        dot = dot * scale;
        att[h * p.max_t + s] = dot;
        maxv = max(maxv, dot);
    }
    var sum = 0.0;
    for (var s = 0u; s <= p.pos; s = s + 1u) {
        let e = exp(floor_exp_arg(att[h * p.max_t + s] - maxv));
        att[h * p.max_t + s] = e;
        sum = sum + e;
    }
    for (var i = 0u; i < hs; i = i + 1u) {
        var acc = 0.0;
        for (var s = 0u; s <= p.pos; s = s + 1u) { acc = acc + att[h * p.max_t + s] * vcache[s * p.c + h * hs + i]; }
        y[h * hs + i] = acc / sum;
    }
}
