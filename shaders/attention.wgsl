// Causal multi-head self-attention from the fused qkv [B·T × 3C] (q | k | v columns), scale 1/√hs.
// Forward (entry `forward`), one invocation per (b, t, h): softmax probabilities into att[B, T, NH, T] (zeros above
//   the diagonal) and y[b, t, h·hs ..] = Σ_s att · v_s.
// Backward, in two entries so no two invocations write the same gradient; each writes its part of dqkv outright (no
// zeroing pass before them):
//   `backward_query`, per (b, t, h): datt = dy·v_s, dpre = att·(datt − Σ att·datt) (saved), dq = scale·Σ dpre·k_s;
//   `backward_keys`,  per (b, s, h): dk_s = scale·Σ_{t≥s} dpre[t, s]·q_t and dv_s = Σ_{t≥s} att[t, s]·dy_t.

// exp() of arguments below about −87 is undefined territory for some drivers (SwiftShader returns garbage rather
// than 0), so softmax arguments are floored at −80: exp(−80) ≈ 2e−35 is 0 next to the maximum's 1. A NaN stays NaN
// (max() would turn it into −80 and hide a diverged run), so divergence is still detected.
const EXP_FLOOR: f32 = -80.0;
fn floor_exp_arg(d: f32) -> f32 { return select(d, EXP_FLOOR, d < EXP_FLOOR); }

struct Params {
    b: u32,
    t: u32,
    c: u32,
    nh: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> att: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;      // forward: y; backward: dy (read only)
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(5) var<storage, read_write> dpre: array<f32>;

fn hs() -> u32 { return p.c / p.nh; }
fn q_at(b: u32, t: u32, h: u32, i: u32) -> f32 { return qkv[(b * p.t + t) * 3u * p.c + h * hs() + i]; }
fn k_at(b: u32, t: u32, h: u32, i: u32) -> f32 { return qkv[(b * p.t + t) * 3u * p.c + p.c + h * hs() + i]; }
fn v_at(b: u32, t: u32, h: u32, i: u32) -> f32 { return qkv[(b * p.t + t) * 3u * p.c + 2u * p.c + h * hs() + i]; }
fn att_index(b: u32, t: u32, h: u32, s: u32) -> u32 { return ((b * p.t + t) * p.nh + h) * p.t + s; }

// (b, t, h) of this invocation, or false when out of range.
fn coords(gid: vec3<u32>) -> vec4<u32> {
    let idx = gid.x + gid.y * 65535u * 64u;
    let h = idx % p.nh;
    let t = (idx / p.nh) % p.t;
    let b = idx / (p.nh * p.t);
    return vec4<u32>(b, t, h, select(0u, 1u, b < p.b));
}

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co = coords(gid);
    if (co.w == 0u) { return; }
    let b = co.x; let t = co.y; let h = co.z;
    let scale = 1.0 / sqrt(f32(hs()));
    var maxv = -3.0e38;
    for (var s = 0u; s <= t; s = s + 1u) {
        var dot = 0.0;
        for (var i = 0u; i < hs(); i = i + 1u) { dot = dot + q_at(b, t, h, i) * k_at(b, s, h, i); }
        dot = dot * scale;
        att[att_index(b, t, h, s)] = dot;
        maxv = max(maxv, dot);
    }
    var sum = 0.0;
    for (var s = 0u; s <= t; s = s + 1u) {
        let e = exp(floor_exp_arg(att[att_index(b, t, h, s)] - maxv));
        att[att_index(b, t, h, s)] = e;
        sum = sum + e;
    }
    let inv = 1.0 / sum;
    for (var s = 0u; s < p.t; s = s + 1u) {
        if (s <= t) { att[att_index(b, t, h, s)] = att[att_index(b, t, h, s)] * inv; }
        else { att[att_index(b, t, h, s)] = 0.0; }
    }
    for (var i = 0u; i < hs(); i = i + 1u) {
        var acc = 0.0;
        for (var s = 0u; s <= t; s = s + 1u) { acc = acc + att[att_index(b, t, h, s)] * v_at(b, s, h, i); }
        y[(b * p.t + t) * p.c + h * hs() + i] = acc;
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward_query(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co = coords(gid);
    if (co.w == 0u) { return; }
    let b = co.x; let t = co.y; let h = co.z;
    let scale = 1.0 / sqrt(f32(hs()));
    let dyb = (b * p.t + t) * p.c + h * hs();
    var dot = 0.0;
    for (var s = 0u; s <= t; s = s + 1u) {
        var da = 0.0;
        for (var i = 0u; i < hs(); i = i + 1u) { da = da + y[dyb + i] * v_at(b, s, h, i); }
        dpre[att_index(b, t, h, s)] = da;  // datt for now
        dot = dot + att[att_index(b, t, h, s)] * da;
    }
    for (var s = 0u; s <= t; s = s + 1u) {
        let ai = att_index(b, t, h, s);
        dpre[ai] = att[ai] * (dpre[ai] - dot);
    }
    for (var i = 0u; i < hs(); i = i + 1u) {
        var acc = 0.0;
        for (var s = 0u; s <= t; s = s + 1u) { acc = acc + dpre[att_index(b, t, h, s)] * k_at(b, s, h, i); }
        let qi = (b * p.t + t) * 3u * p.c + h * hs() + i;
        dqkv[qi] = scale * acc;
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward_keys(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co = coords(gid);
    if (co.w == 0u) { return; }
    let b = co.x; let s = co.y; let h = co.z;
    let scale = 1.0 / sqrt(f32(hs()));
    for (var i = 0u; i < hs(); i = i + 1u) {
        var dk = 0.0;
        var dv = 0.0;
        for (var t = s; t < p.t; t = t + 1u) {
            let ai = att_index(b, t, h, s);
            dk = dk + dpre[ai] * q_at(b, t, h, i);
            dv = dv + att[ai] * y[(b * p.t + t) * p.c + h * hs() + i];
        }
        let base = (b * p.t + s) * 3u * p.c + h * hs() + i;
        dqkv[base + p.c] = scale * dk;
        dqkv[base + 2u * p.c] = dv;
    }
}
