// The tiling shared by the matmul kernels (appended to matmul.wgsl and to matmul_dequant.wgsl at build time).
// The kernel file defines the operands: `depth()` (K), `lhs(row, k)` and `rhs(k, col)` (each 0 outside its matrix),
// and `store(row, col, acc)` (skips outputs outside C, applies alpha/beta/bias).
// Two entry points, chosen per call by the output's shape (src/gpu/matmul.rs):
// - `small_tiles`: 16×16 output tiles, one output per invocation, for thin outputs (LoRA's rank-r products, a few rows);
// - `large_tiles`: 64×64 output tiles, a 4×4 block of outputs per invocation held in registers, so each value staged
//   in workgroup memory feeds four multiply-adds instead of one.
// Both stage K through workgroup memory in steps of 16 and add the products in the order of k.

const TILE: u32 = 16u;
var<workgroup> tile_l: array<array<f32, 16>, 16>;
var<workgroup> tile_r: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn small_tiles(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * TILE + lid.y;
    let col = wg.x * TILE + lid.x;
    var acc = 0.0;
    let steps = (depth() + TILE - 1u) / TILE;
    for (var s = 0u; s < steps; s = s + 1u) {
        tile_l[lid.y][lid.x] = lhs(row, s * TILE + lid.x);
        tile_r[lid.y][lid.x] = rhs(s * TILE + lid.y, col);
        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = acc + tile_l[lid.y][i] * tile_r[i][lid.x];
        }
        workgroupBarrier();
    }
    store(row, col, acc);
}

const BIG: u32 = 64u;
var<workgroup> big_l: array<array<f32, 64>, 16>;   // [k][row of the output tile]
var<workgroup> big_r: array<array<f32, 64>, 16>;   // [k][column of the output tile]

@compute @workgroup_size(16, 16, 1)
fn large_tiles(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BIG;
    let col0 = wg.x * BIG;
    // acc[i][j] is the output at row row0 + lid.y + 16·i, column col0 + lid.x + 16·j: neighbouring invocations
    // hold neighbouring columns, so the workgroup-memory reads and the final writes are contiguous.
    var acc: array<vec4<f32>, 4>;
    let steps = (depth() + TILE - 1u) / TILE;
    for (var s = 0u; s < steps; s = s + 1u) {
        let k0 = s * TILE;
        // Each tile holds 64 × 16 values: four per invocation.
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li + 256u * e;
            big_l[idx % TILE][idx / TILE] = lhs(row0 + idx / TILE, k0 + idx % TILE);
            big_r[idx / BIG][idx % BIG] = rhs(k0 + idx / BIG, col0 + idx % BIG);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk = kk + 1u) {
            let rv = vec4<f32>(big_r[kk][lid.x], big_r[kk][lid.x + 16u], big_r[kk][lid.x + 32u], big_r[kk][lid.x + 48u]);
            for (var i = 0u; i < 4u; i = i + 1u) {
                acc[i] = acc[i] + big_l[kk][lid.y + 16u * i] * rv;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            store(row0 + lid.y + 16u * i, col0 + lid.x + 16u * j, acc[i][j]);
        }
    }
}
