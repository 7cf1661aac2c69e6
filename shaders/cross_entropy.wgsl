// Softmax and cross-entropy over one chunk of the head's rows (the head runs in chunks of rows so that a
// batch × vocabulary logits tensor never exists). One workgroup of 64 per row; row r of the chunk is row
// row0 + r of the batch for its target and loss.
// `forward`: logits → probabilities in place, and the loss −log p[target] per row.
// `forward_backward`: the same, then dlogits = (p − onehot)·grad_scale in place of the probabilities, which the head's
//   backward matmuls read while the chunk is at hand (grad_scale = 1/rows of the whole batch: the mean's gradient).

// exp() of arguments below about −87 is undefined territory for some drivers (SwiftShader returns garbage rather
// than 0), so softmax arguments are floored at −80: exp(−80) ≈ 2e−35 is 0 next to the maximum's 1. A NaN stays NaN
// (max() would turn it into −80 and hide a diverged run), so divergence is still detected.
const EXP_FLOOR: f32 = -80.0;
fn floor_exp_arg(d: f32) -> f32 { return select(d, EXP_FLOOR, d < EXP_FLOOR); }

struct Params {
    rows: u32,
    v: u32,
    groups_x: u32,
    row0: u32,
    grad_scale: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
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

// Softmax of one row in place and its loss; every lane of the workgroup calls it (it has barriers).
fn softmax_and_loss(row: u32, lane: u32) {
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
    let goal = targets[p.row0 + row];
    // The lane that normalizes the target's probability writes the loss, so no lane reads a value another lane wrote
    // (and `forward_backward` may overwrite it right after, lane by lane, with no barrier).
    for (var i = lane; i < p.v; i = i + 64u) {
        let q = probs[base + i] * inv;
        probs[base + i] = q;
        if (i == goal) { losses[p.row0 + row] = -log(max(q, 1.17549435e-38)); }
    }
}

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) { return; }
    softmax_and_loss(row, lid.x);
}

@compute @workgroup_size(64, 1, 1)
fn forward_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) { return; }
    let lane = lid.x;
    softmax_and_loss(row, lane);
    let base = row * p.v;
    let goal = targets[p.row0 + row];
    // Each lane rewrites the probabilities it normalized itself: no barrier needed.
    for (var i = lane; i < p.v; i = i + 64u) {
        var g = probs[base + i];
        if (i == goal) { g = g - 1.0; }
        probs[base + i] = g * p.grad_scale;
    }
}
