// Softmax over the vocabulary per row (in place: logits → probabilities), the loss −log p[target] per row, and
// the gradient dlogits = (p − onehot)/rows written in place of the probabilities. One workgroup of 64 per row.
// forward: softmax + losses; backward: the gradient.

// exp() of arguments below about −87 is undefined territory for some drivers (SwiftShader returns garbage rather
// than 0), so softmax arguments are floored at −80: exp(−80) ≈ 2e−35 is 0 next to the maximum's 1. A NaN stays NaN
// (max() would turn it into −80 and hide a diverged run), so divergence is still detected.
const EXP_FLOOR: f32 = -80.0;
fn floor_exp_arg(d: f32) -> f32 { return select(d, EXP_FLOOR, d < EXP_FLOOR); }

struct Params {
    rows: u32,
    v: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> probs: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;

var<workgroup> red: array<f32, 64>;

fn reduce_max(lane: u32) {
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lane < s) { red[lane] = max(red[lane], red[lane + s]); }
        workgroupBarrier();
    }
}

fn reduce_sum(lane: u32) {
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lane < s) { red[lane] = red[lane] + red[lane + s]; }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) { return; }
    let lane = lid.x;
    let base = row * p.v;
    let inv = 1.0 / f32(p.rows);
    for (var i = lane; i < p.v; i = i + 64u) {
        var g = probs[base + i];
        if (i == targets[row]) { g = g - 1.0; }
        probs[base + i] = g * inv;
    }
}

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) { return; }
    let lane = lid.x;
    let base = row * p.v;
    var m = -3.0e38;
    for (var i = lane; i < p.v; i = i + 64u) { m = max(m, probs[base + i]); }
    red[lane] = m;
    workgroupBarrier();
    reduce_max(lane);
    let maxv = red[0];
    workgroupBarrier();
    var s = 0.0;
    for (var i = lane; i < p.v; i = i + 64u) {
        let e = exp(floor_exp_arg(probs[base + i] - maxv));
        probs[base + i] = e;
        s = s + e;
    }
    red[lane] = s;
    workgroupBarrier();
    reduce_sum(lane);
    let inv = 1.0 / red[0];
    for (var i = lane; i < p.v; i = i + 64u) { probs[base + i] = probs[base + i] * inv; }
    workgroupBarrier();
    if (lane == 0u) {
        losses[row] = -log(max(probs[base + targets[row]], 1.17549435e-38));
    }
}
