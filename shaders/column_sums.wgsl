// Parameter gradients that are sums over rows, one invocation per column (no float atomics in WGSL):
//   bias_grad:              db[c] += Σ_rows dy[r, c]                                               (a linear bias)
//   layernorm_param_grads:  dw[c] += Σ_rows (x[r, c] − mean[r])·rstd[r]·dy[r, c], db[c] += Σ_rows dy[r, c]

struct Params {
    rows: u32,
    c: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;
@group(0) @binding(5) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if (col >= p.c) { return; }
    var sb = 0.0;
    for (var r = 0u; r < p.rows; r = r + 1u) {
        sb = sb + dy[r * p.c + col];
    }
    db[col] = db[col] + sb;
}

@compute @workgroup_size(64, 1, 1)
fn layernorm_param_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if (col >= p.c) { return; }
    var sw = 0.0;
    var sb = 0.0;
    for (var r = 0u; r < p.rows; r = r + 1u) {
        let g = dy[r * p.c + col];
        sb = sb + g;
        sw = sw + (x[r * p.c + col] - stats[2u * r]) * stats[2u * r + 1u] * g;
    }
    db[col] = db[col] + sb;
    dw[col] = dw[col] + sw;
}
