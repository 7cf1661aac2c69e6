// Tiled matrix multiply over f32: C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C.
// op(X) is X or Xᵀ (flags in `p.trans`): A is stored [M×K] (or [K×M] when transposed), B [K×N] (or [N×K]).
// Every operand has its own row stride and starting element, so a kernel can read or write one column slice of a
// wider matrix (the q, k or v slice of c_attn) or one tensor of a flat buffer. 16×16 output tiles, one output per invocation, K staged through workgroup memory
// in steps of 16; out-of-range loads read 0, so any shape works.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans: u32,     // bit 0: A transposed, bit 1: B transposed
    lda: u32,
    ldb: u32,
    ldc: u32,
    c_offset: u32,
    alpha: f32,
    beta: f32,
    a_offset: u32,
    b_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 16u;
var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

fn load_a(row: u32, col: u32) -> f32 {
    if (row >= p.m || col >= p.k) { return 0.0; }
    if ((p.trans & 1u) != 0u) { return a[p.a_offset + col * p.lda + row]; }
    return a[p.a_offset + row * p.lda + col];
}

fn load_b(row: u32, col: u32) -> f32 {
    if (row >= p.k || col >= p.n) { return 0.0; }
    if ((p.trans & 2u) != 0u) { return b[p.b_offset + col * p.ldb + row]; }
    return b[p.b_offset + row * p.ldb + col];
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * TILE + lid.y;
    let col = wg.x * TILE + lid.x;
    var acc = 0.0;
    let steps = (p.k + TILE - 1u) / TILE;
    for (var s = 0u; s < steps; s = s + 1u) {
        tile_a[lid.y][lid.x] = load_a(row, s * TILE + lid.x);
        tile_b[lid.y][lid.x] = load_b(s * TILE + lid.y, col);
        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = acc + tile_a[lid.y][i] * tile_b[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row < p.m && col < p.n) {
        let idx = p.c_offset + row * p.ldc + col;
        var prev = 0.0;
        if (p.beta != 0.0) { prev = p.beta * c[idx]; }
        c[idx] = p.alpha * acc + prev;
    }
}
