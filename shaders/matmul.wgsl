// Tiled matrix multiply over f32: C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C.
// op(X) is X or Xᵀ (flags in `p.trans`): A is stored [M×K] (or [K×M] when transposed), B [K×N] (or [N×K]).
// Every operand has its own row stride and starting element, so a kernel can read or write one column slice of a
// wider matrix (the q, k or v slice of c_attn) or one tensor of a flat buffer. Out-of-range loads read 0, so any
// shape works. Two entry points, chosen per call by its shape (src/gpu/matmul.rs):
// - `main`: 16×16 output tiles, one output per invocation, for thin operands (LoRA's rank-r factors, small batches);
// - `main_large`: 64×64 output tiles, a 4×4 block of outputs per invocation held in registers, so each value staged in
//   workgroup memory feeds four multiply-adds instead of one.
// Both stage K through workgroup memory in steps of 16 and add the products in the order of k.

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

const BIG: u32 = 64u;
var<workgroup> big_a: array<array<f32, 64>, 16>;   // [k][row of the output tile]
var<workgroup> big_b: array<array<f32, 64>, 16>;   // [k][column of the output tile]

@compute @workgroup_size(16, 16, 1)
fn main_large(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BIG;
    let col0 = wg.x * BIG;
    // acc[i][j] is the output at row row0 + lid.y + 16·i, column col0 + lid.x + 16·j: neighbouring invocations
    // hold neighbouring columns, so the workgroup-memory reads and the final writes are contiguous.
    var acc: array<vec4<f32>, 4>;
    let steps = (p.k + TILE - 1u) / TILE;
    for (var s = 0u; s < steps; s = s + 1u) {
        let k0 = s * TILE;
        // Each tile holds 64 × 16 values: four per invocation.
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li + 256u * e;
            let ra = idx / TILE;
            let ka = idx % TILE;
            big_a[ka][ra] = load_a(row0 + ra, k0 + ka);
            let kb = idx / BIG;
            let cb = idx % BIG;
            big_b[kb][cb] = load_b(k0 + kb, col0 + cb);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk = kk + 1u) {
            let bv = vec4<f32>(big_b[kk][lid.x], big_b[kk][lid.x + 16u], big_b[kk][lid.x + 32u], big_b[kk][lid.x + 48u]);
            for (var i = 0u; i < 4u; i = i + 1u) {
                acc[i] = acc[i] + big_a[kk][lid.y + 16u * i] * bv;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + lid.x + 16u * j;
            if (row < p.m && col < p.n) {
                let idx = p.c_offset + row * p.ldc + col;
                var prev = 0.0;
                if (p.beta != 0.0) { prev = p.beta * c[idx]; }
                c[idx] = p.alpha * acc[i][j] + prev;
            }
        }
    }
}
