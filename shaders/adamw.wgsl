// AdamW over the trainable parameters, one dispatch per shard (PyTorch semantics), and the global gradient norm.
// `sum_squares`, per workgroup of 256: norm_buf[1 + partial_base + wg] = Σ g² over its slice of 4096 of this shard's
//   `grad`.
// `finish_norm`, one workgroup: norm_buf[0] = Σ of all shards' `partials` partial sums.
// `update`: g ← g·clip (clip = min(1, max_norm/(norm + 1e-6)), norm = √norm_buf[0]), then the AdamW step with
//   bias-corrected moments; learning rate and step count come from the uniform, rewritten before each step.

struct Params {
    n: u32,
    groups_x: u32,
    step: u32,
    partials: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    max_norm: f32,
    partial_base: u32,
    _p2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> norm_buf: array<f32>;   // [0]: sum of squares of the gradients

var<workgroup> red: array<f32, 256>;

fn reduce(lane: u32) {
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lane < s) { red[lane] = red[lane] + red[lane + s]; }
        workgroupBarrier();
    }
}

// Elements per workgroup of `sum_squares` (NORM_SLICE in src/gpu/kernels.rs): each invocation adds 16 squares
// before the tree reduction, so a step has one barrier-heavy reduction per 4096 gradients instead of per 256 (CPU
// emulators such as SwiftShader run each barrier as a switch between all of a workgroup's invocations).
const SLICE: u32 = 4096u;

@compute @workgroup_size(256, 1, 1)
fn sum_squares(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g_index = wg.y * p.groups_x + wg.x;
    var x = 0.0;
    for (var j = 0u; j < SLICE / 256u; j = j + 1u) {
        let i = g_index * SLICE + j * 256u + lid.x;
        if (i < p.n) { let g = grad[i]; x = x + g * g; }
    }
    red[lid.x] = x;
    workgroupBarrier();
    reduce(lid.x);
    // Workgroups past the shard's partial sums (a 2-D grid rounds up) write nothing: their slots belong to the next shard.
    if (lid.x == 0u && g_index < (p.n + SLICE - 1u) / SLICE) { norm_buf[1u + p.partial_base + g_index] = red[0]; }
}

@compute @workgroup_size(256, 1, 1)
fn finish_norm(@builtin(local_invocation_id) lid: vec3<u32>) {
    var x = 0.0;
    for (var i = lid.x; i < p.partials; i = i + 256u) { x = x + norm_buf[i + 1u]; }
    red[lid.x] = x;
    workgroupBarrier();
    reduce(lid.x);
    if (lid.x == 0u) { norm_buf[0] = red[0]; }
}

@compute @workgroup_size(256, 1, 1)
fn update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * p.groups_x + wg.x) * 256u + lid.x;
    if (i >= p.n) { return; }
    let norm = sqrt(norm_buf[0]);
    var clip = 1.0;
    if (p.max_norm > 0.0 && norm > p.max_norm) { clip = p.max_norm / (norm + 1e-6); }
    let g = grad[i] * clip;
    let t = f32(p.step);
    param[i] = param[i] - p.lr * p.weight_decay * param[i];
    m[i] = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    v[i] = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    let mhat = m[i] / (1.0 - pow(p.beta1, t));
    let vhat = v[i] / (1.0 - pow(p.beta2, t));
    param[i] = param[i] - p.lr * mhat / (sqrt(vhat) + p.eps);
}
