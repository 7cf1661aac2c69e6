// The tiling shared by the matmul kernels (appended to matmul.wgsl and to matmul_dequant.wgsl at build time).
// The kernel file defines the operands: `height()`, `depth()` and `width()` (M, K, N), `lhs(row, k)` and
// `rhs(k, col)` (each 0 outside its matrix), and `store(row, col, acc)` (skips outputs outside C, applies
// alpha/beta/bias).
// Three entry points, chosen per call by the output's shape (src/gpu/matmul.rs):
// - `thin_rows`: outputs of at most 16 rows (a training batch of a few tokens, generation's one row), one column per
//   invocation with all its rows in registers: no workgroup memory and no barriers, each value of B read (a frozen
//   weight decoded) once per column instead of once per 16×16 tile of which the rows are mostly padding;
// - `small_tiles`: 16×16 output tiles, one output per invocation, for the rest: 17–63 rows, or fewer than 64 columns
//   (the f32 matmul runs outputs of many rows and at most 16 columns, LoRA's rank-r factors over a batch, transposed
//   on `thin_rows`; the fused dequantize matmul's outputs are a layer's features wide);
// - `large_tiles`: 64×64 output tiles, an 8×8 block of outputs per invocation held in registers, so each value
//   staged in workgroup memory feeds eight multiply-adds instead of one.
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
// Both tiles hold vec4s: big_l[k][g] is rows 4g..4g+3 of the output tile's rows at depth k, big_r[k][g] its columns
// 4g..4g+3, so an invocation reads four rows or four columns with one load (on a GPU one 128-bit load from workgroup
// memory; on a CPU emulation one gather instead of four).
var<workgroup> big_l: array<array<vec4<f32>, 16>, 16>;
var<workgroup> big_r: array<array<vec4<f32>, 16>, 16>;

@compute @workgroup_size(8, 8, 1)
fn large_tiles(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BIG;
    let col0 = wg.x * BIG;
    // An 8×8 block of outputs per invocation: rows 4·lid.y + i (i < 4, the top half) and 32 + 4·lid.y + i − 4
    // (i ≥ 4, the bottom half); columns 4·lid.x + j (l_i, "left") and 32 + 4·lid.x + j (r_i, "right"). Per step of
    // k it loads four vec4s and does 64 multiply-adds. Sixteen named vectors, as in `thin_rows`: lavapipe keeps an
    // indexed array of them in memory.
    var l0 = vec4<f32>(); var r0 = vec4<f32>();
    var l1 = vec4<f32>(); var r1 = vec4<f32>();
    var l2 = vec4<f32>(); var r2 = vec4<f32>();
    var l3 = vec4<f32>(); var r3 = vec4<f32>();
    var l4 = vec4<f32>(); var r4 = vec4<f32>();
    var l5 = vec4<f32>(); var r5 = vec4<f32>();
    var l6 = vec4<f32>(); var r6 = vec4<f32>();
    var l7 = vec4<f32>(); var r7 = vec4<f32>();
    // Staging: each tile is 16 × 16 vec4s, four per invocation. In the left tile neighbouring invocations take
    // neighbouring k (a row of A is contiguous in k); in the right one neighbouring columns.
    let lk = li % TILE;
    let rg = li % TILE;
    let steps = (depth() + TILE - 1u) / TILE;
    for (var s = 0u; s < steps; s = s + 1u) {
        let k0 = s * TILE;
        for (var e = 0u; e < 4u; e = e + 1u) {
            let lg = li / TILE + 4u * e;
            let row = row0 + 4u * lg;
            big_l[lk][lg] =
                vec4<f32>(lhs(row, k0 + lk), lhs(row + 1u, k0 + lk), lhs(row + 2u, k0 + lk), lhs(row + 3u, k0 + lk));
            let rk = li / TILE + 4u * e;
            let col = col0 + 4u * rg;
            big_r[rk][rg] =
                vec4<f32>(rhs(k0 + rk, col), rhs(k0 + rk, col + 1u), rhs(k0 + rk, col + 2u), rhs(k0 + rk, col + 3u));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk = kk + 1u) {
            let lt = big_l[kk][lid.y];
            let lb = big_l[kk][lid.y + 8u];
            let rl = big_r[kk][lid.x];
            let rr = big_r[kk][lid.x + 8u];
            l0 = l0 + lt.x * rl; r0 = r0 + lt.x * rr;
            l1 = l1 + lt.y * rl; r1 = r1 + lt.y * rr;
            l2 = l2 + lt.z * rl; r2 = r2 + lt.z * rr;
            l3 = l3 + lt.w * rl; r3 = r3 + lt.w * rr;
            l4 = l4 + lb.x * rl; r4 = r4 + lb.x * rr;
            l5 = l5 + lb.y * rl; r5 = r5 + lb.y * rr;
            l6 = l6 + lb.z * rl; r6 = r6 + lb.z * rr;
            l7 = l7 + lb.w * rl; r7 = r7 + lb.w * rr;
        }
        workgroupBarrier();
    }
    let r_top = row0 + 4u * lid.y;
    let r_bottom = r_top + 32u;
    let c_left = col0 + 4u * lid.x;
    let c_right = c_left + 32u;
    for (var j = 0u; j < 4u; j = j + 1u) {
        store(r_top + 0u, c_left + j, l0[j]); store(r_top + 0u, c_right + j, r0[j]);
        store(r_top + 1u, c_left + j, l1[j]); store(r_top + 1u, c_right + j, r1[j]);
        store(r_top + 2u, c_left + j, l2[j]); store(r_top + 2u, c_right + j, r2[j]);
        store(r_top + 3u, c_left + j, l3[j]); store(r_top + 3u, c_right + j, r3[j]);
        store(r_bottom + 0u, c_left + j, l4[j]); store(r_bottom + 0u, c_right + j, r4[j]);
        store(r_bottom + 1u, c_left + j, l5[j]); store(r_bottom + 1u, c_right + j, r5[j]);
        store(r_bottom + 2u, c_left + j, l6[j]); store(r_bottom + 2u, c_right + j, r6[j]);
        store(r_bottom + 3u, c_left + j, l7[j]); store(r_bottom + 3u, c_right + j, r7[j]);
    }
}
