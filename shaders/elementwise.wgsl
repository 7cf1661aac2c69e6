// Elementwise kernels over flat f32 buffers, one entry point each (paired with the CPU functions of the same names):
//   gelu_forward      out = gelu_new(a)            gelu_backward   out = gelu_new'(a) · b    (b: upstream gradient)
//   residual_forward  out = a + b                  accumulate      out += a
//   mask_forward      out = a · b                  mask_backward   out += a · b   (dropout: b is the mask, 0 or 1/(1−p))
//   zero              out = 0                      broadcast_rows  out = a[i mod width]   (a bias over rows)
// Dispatched 2-D when there are more than 65535 groups; index = (wg.y · groups_x + wg.x) · 256 + lane.

struct Params {
    n: u32,
    groups_x: u32,
    width: u32,    // broadcast_rows only
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const GELU_K: f32 = 0.7978845608028654; // sqrt(2/pi)
// tanh is clamped to ±15 (where it is ±1 in f32): some drivers compute it through exp and overflow beyond.

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + tanh(clamp(GELU_K * (x + 0.044715 * x * x * x), -15.0, 15.0)));
}

fn gelu_grad(x: f32) -> f32 {
    let th = tanh(clamp(GELU_K * (x + 0.044715 * x * x * x), -15.0, 15.0));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_K * (1.0 + 3.0 * 0.044715 * x * x);
}

// The element of this invocation (n or beyond: none).
fn element(wg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * p.groups_x + wg.x) * 256u + lid.x;
}

@compute @workgroup_size(256, 1, 1)
fn gelu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = gelu(a[i]); }
}

@compute @workgroup_size(256, 1, 1)
fn gelu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = gelu_grad(a[i]) * b[i]; }
}

@compute @workgroup_size(256, 1, 1)
fn residual_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = a[i] + b[i]; }
}

@compute @workgroup_size(256, 1, 1)
fn accumulate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = out[i] + a[i]; }
}

@compute @workgroup_size(256, 1, 1)
fn mask_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = a[i] * b[i]; }
}

@compute @workgroup_size(256, 1, 1)
fn mask_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = out[i] + a[i] * b[i]; }
}

@compute @workgroup_size(256, 1, 1)
fn zero(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = 0.0; }
}

@compute @workgroup_size(256, 1, 1)
fn broadcast_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, lid);
    if (i < p.n) { out[i] = a[i % p.width]; }
}
