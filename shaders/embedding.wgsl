// Token + position embedding. `forward`, per element: out[r, i] = wte[tok[r], i] + wpe[pos0 + r mod T, i]
// (pos0 > 0 when decoding one token at a time).
// `backward`, per channel i (each invocation owns column i of dwte and dwpe, so no two write the same value):
// dwte[tok[r], i] += dout[r, i] and dwpe[r mod T, i] += dout[r, i] over all rows r.

struct Params {
    rows: u32,
    t: u32,
    c: u32,
    groups_x: u32,
    pos0: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> wte: array<f32>;   // forward: read; backward: dwte
@group(0) @binding(3) var<storage, read_write> wpe: array<f32>;   // forward: read; backward: dwpe
@group(0) @binding(4) var<storage, read_write> act: array<f32>;   // forward: out; backward: dout

@compute @workgroup_size(256, 1, 1)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = (wg.y * p.groups_x + wg.x) * 256u + lid.x;
    if (idx >= p.rows * p.c) { return; }
    let r = idx / p.c;
    let i = idx % p.c;
    act[idx] = wte[tokens[r] * p.c + i] + wpe[(p.pos0 + r % p.t) * p.c + i];
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.c) { return; }
    for (var r = 0u; r < p.rows; r = r + 1u) {
        let g = act[r * p.c + i];
        wte[tokens[r] * p.c + i] = wte[tokens[r] * p.c + i] + g;
        wpe[(r % p.t) * p.c + i] = wpe[(r % p.t) * p.c + i] + g;
    }
}
