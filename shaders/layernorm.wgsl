// LayerNorm over rows of width C, one workgroup of 64 per row.
// forward:  out = (x − mean)·rstd·w + b, saving mean and rstd per row.
// backward: dx += (dnorm − mean(dnorm) − norm·mean(dnorm·norm))·rstd with dnorm = w·dy.
// Parameter gradients are column sums: see column_sums.wgsl.

struct Params {
    rows: u32,
    c: u32,
    eps: f32,      // forward only
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;     // forward: y; backward: dx (accumulated)
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;   // [mean, rstd] per row
@group(0) @binding(6) var<storage, read> dy: array<f32>;

var<workgroup> red_a: array<f32, 64>;
var<workgroup> red_b: array<f32, 64>;

fn reduce2(lane: u32) {
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            red_a[lane] = red_a[lane] + red_a[lane + s];
            red_b[lane] = red_b[lane] + red_b[lane + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64, 1, 1)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) { return; }  // uniform for the whole workgroup
    let lane = lid.x;
    let base = row * p.c;
    let n = f32(p.c);
    var s = 0.0;
    for (var i = lane; i < p.c; i = i + 64u) { s = s + x[base + i]; }
    red_a[lane] = s;
    red_b[lane] = 0.0;
    workgroupBarrier();
    reduce2(lane);
    let mean = red_a[0] / n;
    workgroupBarrier();
    var v = 0.0;
    for (var i = lane; i < p.c; i = i + 64u) { let d = x[base + i] - mean; v = v + d * d; }
    red_a[lane] = v;
    red_b[lane] = 0.0;
    workgroupBarrier();
    reduce2(lane);
    let rstd = 1.0 / sqrt(red_a[0] / n + p.eps);
    for (var i = lane; i < p.c; i = i + 64u) {
        out[base + i] = (x[base + i] - mean) * rstd * w[i] + b[i];
    }
    if (lane == 0u) {
        stats[2u * row] = mean;
        stats[2u * row + 1u] = rstd;
    }
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) { return; }  // uniform for the whole workgroup
    let lane = lid.x;
    let base = row * p.c;
    let n = f32(p.c);
    let mean = stats[2u * row];
    let rstd = stats[2u * row + 1u];
    var s1 = 0.0;
    var s2 = 0.0;
    for (var i = lane; i < p.c; i = i + 64u) {
        let norm = (x[base + i] - mean) * rstd;
        let dn = w[i] * dy[base + i];
        s1 = s1 + dn;
        s2 = s2 + dn * norm;
    }
    red_a[lane] = s1;
    red_b[lane] = s2;
    workgroupBarrier();
    reduce2(lane);
    let m1 = red_a[0] / n;
    let m2 = red_b[0] / n;
    for (var i = lane; i < p.c; i = i + 64u) {
        let norm = (x[base + i] - mean) * rstd;
        let dn = w[i] * dy[base + i];
        out[base + i] = out[base + i] + (dn - m1 - norm * m2) * rstd;
    }
}
