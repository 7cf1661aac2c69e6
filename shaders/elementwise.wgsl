// Elementwise kernels over flat f32 buffers.
// op 0: out = gelu_new(a)        op 1: out += gelu_new'(a) · b   (b = upstream gradient)
// op 2: out = a + b              op 3: out += a
// op 4: out = a · b              op 5: out += a · b              (dropout: b is the mask, 0 or 1/(1−p))
// op 6: out = 0                  op 7: out = a[i mod width]      (a bias broadcast over rows)
// Dispatched 2-D when there are more than 65535 groups; index = (wg.y · groups_x + wg.x) · 256 + lane.

struct Params {
    n: u32,
    op: u32,
    groups_x: u32,
    width: u32,
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

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * p.groups_x + wg.x) * 256u + lid.x;
    if (i >= p.n) { return; }
    switch p.op {
        case 0u: { out[i] = gelu(a[i]); }
        case 1u: { out[i] = out[i] + gelu_grad(a[i]) * b[i]; }
        case 2u: { out[i] = a[i] + b[i]; }
        case 3u: { out[i] = out[i] + a[i]; }
        case 4u: { out[i] = a[i] * b[i]; }
        case 5u: { out[i] = out[i] + a[i] * b[i]; }
        case 6u: { out[i] = 0.0; }
        default: { out[i] = a[i % p.width]; }
    }
}
