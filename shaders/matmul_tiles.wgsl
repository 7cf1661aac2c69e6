// The tiling shared by the matmul kernels (appended to matmul.wgsl and to matmul_dequant.wgsl at build time).
// The kernel file defines the operands: `height()`, `depth()` and `width()` (M, K, N), `lhs(row, k)` and
// `rhs(k, col)` (each 0 outside its matrix), and `store(row, col, acc)` (skips outputs outside C, applies
// alpha/beta/bias).
// Three entry points, chosen per call by the output's shape (src/gpu/matmul.rs):
// - `thin_rows`: outputs of at most 16 rows (a training batch of a few tokens, generation's one row), one column per
//   invocation with all its rows in registers: no workgroup memory and no barriers, each value of B read (a frozen
//   weight decoded) once per column instead of once per 16×16 tile of which the rows are mostly padding;
// - `small_tiles`: 16×16 output tiles, one output per invocation, for narrow outputs of more rows (LoRA's rank-r
//   products over a batch);
// - `large_tiles`: 64×64 output tiles, a 4×4 block of outputs per invocation held in registers, so each value staged
//   in workgroup memory feeds four multiply-adds instead of one.
// The tiled two stage K through workgroup memory in steps of 16. All three add the products in the order of k,
// starting from 0, so an output does not depend on the entry point that computed it.

const THIN: u32 = 16u;

@compute @workgroup_size(64, 1, 1)
fn thin_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let col = gid.x;
    // Columns past the output do nothing (no barrier waits for them); on an emulated GPU a workgroup of a rank-8
    // product is then one batch of invocations instead of eight.
    if (col >= width()) { return; }
    let row0 = wg.y * THIN;
    // Rows row0 + 4·i .. row0 + 4·i + 3 in acc_i: four named vectors, which stay in registers where an indexed array
    // would not (lavapipe keeps a dynamically indexed array in memory). Blocks of rows past the output are skipped
    // (a uniform branch), so one row of generation loads one row of A.
    let blocks = min((height() - row0 + 3u) / 4u, 4u);
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    let kn = depth();
    for (var k = 0u; k < kn; k = k + 1u) {
        let w = rhs(k, col);
        acc0 = acc0 + vec4<f32>(lhs(row0, k), lhs(row0 + 1u, k), lhs(row0 + 2u, k), lhs(row0 + 3u, k)) * w;
        if (blocks > 1u) {
            acc1 = acc1 + vec4<f32>(lhs(row0 + 4u, k), lhs(row0 + 5u, k), lhs(row0 + 6u, k), lhs(row0 + 7u, k)) * w;
        }
        if (blocks > 2u) {
            acc2 = acc2 + vec4<f32>(lhs(row0 + 8u, k), lhs(row0 + 9u, k), lhs(row0 + 10u, k), lhs(row0 + 11u, k)) * w;
        }
        if (blocks > 3u) {
            acc3 = acc3 + vec4<f32>(lhs(row0 + 12u, k), lhs(row0 + 13u, k), lhs(row0 + 14u, k), lhs(row0 + 15u, k)) * w;
        }
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        store(row0 + i, col, acc0[i]);
        store(row0 + 4u + i, col, acc1[i]);
        store(row0 + 8u + i, col, acc2[i]);
        store(row0 + 12u + i, col, acc3[i]);
    }
}

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
