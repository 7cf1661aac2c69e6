// Token + position embedding, over one part of the token embedding: the vocabulary rows v0..v1 (WebGPU binds at most
// 128 MiB at once by default, GPT-2's wte is 154 MB, so it is stored and read in parts; `first` marks the first part).
// `forward`, per element: out[r, i] = wpe[pos0 + r mod T, i] (first part) plus wte[tok[r], i] from the part holding
// tok[r] — each sum is the same single addition as wte + wpe, whichever part holds the token.
// (pos0 > 0 when decoding one token at a time).
// `backward`, per channel i (each invocation owns column i of dwte and dwpe, so no two write the same value):
// dwte[tok[r], i] += dout[r, i] for the rows whose token is in the part, and dwpe[r mod T, i] += dout[r, i] over all
// rows r in the first part's pass.
// The part is bound as words: fp32 values (`half` = 0), or two fp16 values per word (`half` = 1: the tied embedding
// beside a base stored below 32 bits, read only — its gradient exists only in full fine-tuning, which is fp32).

struct Params {
    rows: u32,
    t: u32,
    c: u32,
    groups_x: u32,
    pos0: u32,
    v0: u32,
    v1: u32,
    first: u32,
    half: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> wte: array<u32>;   // rows v0..v1; forward: read; backward: dwte
@group(0) @binding(3) var<storage, read_write> wpe: array<f32>;   // forward: read; backward: dwpe
@group(0) @binding(4) var<storage, read_write> act: array<f32>;   // forward: out; backward: dout

// Element j of the part, in either storage.
fn wte_at(j: u32) -> f32 {
    if (p.half != 0u) { return unpack2x16float(wte[j / 2u])[j % 2u]; }
    return bitcast<f32>(wte[j]);
}

@compute @workgroup_size(256, 1, 1)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = (wg.y * p.groups_x + wg.x) * 256u + lid.x;
    if (idx >= p.rows * p.c) { return; }
    let r = idx / p.c;
    let i = idx % p.c;
    let tok = tokens[r];
    var x: f32;
    if (p.first != 0u) { x = wpe[(p.pos0 + r % p.t) * p.c + i]; } else { x = act[idx]; }
    if (tok >= p.v0 && tok < p.v1) { x = wte_at((tok - p.v0) * p.c + i) + x; }
    act[idx] = x;
}

@compute @workgroup_size(64, 1, 1)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.c) { return; }
    for (var r = 0u; r < p.rows; r = r + 1u) {
        let g = act[r * p.c + i];
        let tok = tokens[r];
        if (tok >= p.v0 && tok < p.v1) {
            let j = (tok - p.v0) * p.c + i;
            wte[j] = bitcast<u32>(bitcast<f32>(wte[j]) + g);
        }
        if (p.first != 0u) {
            wpe[(r % p.t) * p.c + i] = wpe[(r % p.t) * p.c + i] + g;
        }
    }
}
