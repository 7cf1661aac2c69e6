//! Parity of the WGSL kernels with the CPU executor, natively (lavapipe on CI; any Vulkan GPU elsewhere).
//! Shapes include sizes that are not multiples of the 16×16 tile. Tolerance: 1e-4 relative to the largest
//! magnitude of the expected result (f32 sums in a different order).
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::{gemm, Mat};
use qlora_playground::gpu::{submit, wgpu, Category, Gpu, GpuQuantWeight, Matmul, MatmulDequant, MatmulShape, Strided};
use qlora_playground::quant::{Format, QuantizedTensor, Storage};
use rand::{RngExt, SeedableRng};

fn gpu() -> Gpu {
    Gpu::new_blocking().expect("a WebGPU adapter (CI installs Mesa's lavapipe: mesa-vulkan-drivers)")
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale;
    assert!(worst <= 1e-4, "{what}: relative error {worst:e}");
}

#[test]
fn matmul_matches_cpu_in_every_orientation() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu);
    // Up to 16 rows take the column-per-invocation entry point: one row, three, all 16, and wider than one of its
    // workgroups. (40, 16, 48) takes the 16×16 tiles. (70, 37, 130), (129, 64, 65) and (96, 8, 300) are large enough
    // for the 64×64-tile entry point, and not multiples of its tile either; (96, 8, 300) is shallower than one step
    // of k (a LoRA adapter's rank-8 product onto a wide output). Many rows onto at most 16 columns run transposed:
    // 17 × 5, 200 × 8 (a rank-8 factor over a batch) and 33 × 16 (all four row blocks of the transposed product).
    for (i, &(m, k, n)) in [
        (1, 1, 1),
        (17, 33, 5),
        (40, 16, 48),
        (3, 70, 31),
        (16, 37, 130),
        (5, 8, 70),
        (70, 37, 130),
        (129, 64, 65),
        (96, 8, 300),
        (200, 40, 8),
        (33, 9, 16),
    ]
    .iter()
    .enumerate()
    {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = random(m * k, i as u64);
                let b = random(k * n, 100 + i as u64);
                // C is a column slice [2, 2+n) of a wider matrix with ldc = n + 5, accumulated onto existing values.
                let ldc = n + 5;
                let c0 = random(m * ldc, 200 + i as u64);
                let (alpha, beta) = (0.5f32, 1.0f32);
                let mut want = c0.clone();
                let am = if ta { Mat::t(&a, m) } else { Mat::new(&a, k) };
                let bm = if tb { Mat::t(&b, k) } else { Mat::new(&b, n) };
                gemm(m, k, n, alpha, am, bm, beta, &mut want[2..], ldc);
                let (ga, gb) =
                    (gpu.upload("a", &a, Category::Scratch).unwrap(), gpu.upload("b", &b, Category::Scratch).unwrap());
                let gc = gpu.upload("c", &c0, Category::Scratch).unwrap();
                let shape = MatmulShape {
                    ldc: ldc as u32,
                    c_offset: 2,
                    ..MatmulShape::new(m as u32, k as u32, n as u32, ta, tb)
                }
                .scaled(alpha, beta);
                submit(&gpu, &[&mm.prepare(&gpu, shape, ga.all(), gb.all(), gc.all())]);
                let got = pollster::block_on(gpu.read_f32(&gc, m * ldc)).unwrap();
                assert_close(&got, &want, &format!("{m}x{k}x{n} ta={ta} tb={tb}"));
            }
        }
    }
}

/// A product as deep as the head's backward over GPT-2's 50,257-token vocabulary, on every entry point (64 × 64
/// outputs, 24 × 20 on 16 × 16 tiles, 16 × 16 a column per invocation, and 40 × 8, which runs transposed as 8 × 40).
/// Lavapipe ends an invocation's loops early past a total near 65,535 iterations, silently: a kernel that loops
/// inside its loop over k returns rows it never finished there (an 8 × 8 block that looped over its outputs inside
/// the loop over k did, at this depth; the one in `large_tiles` writes its 64 multiply-adds out). The inner loops
/// that remain still count toward that cap: the 64 × 64 tiles fail at K = 70,000 (before this block and with it).
#[test]
fn matmul_runs_the_whole_depth_of_a_vocabulary_sized_product() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu);
    let k = 50_257;
    for (m, n) in [(64usize, 64usize), (24, 20), (16, 16), (40, 8)] {
        let (a, b) = (random(m * k, 1), random(k * n, 2));
        let mut want = vec![0.0; m * n];
        gemm(m, k, n, 1.0, Mat::new(&a, k), Mat::new(&b, n), 0.0, &mut want, n);
        let (ga, gb) =
            (gpu.upload("a", &a, Category::Scratch).unwrap(), gpu.upload("b", &b, Category::Scratch).unwrap());
        let gc = gpu.upload("c", &vec![0.0; m * n], Category::Scratch).unwrap();
        let shape = MatmulShape::plain(m as u32, k as u32, n as u32);
        submit(&gpu, &[&mm.prepare(&gpu, shape, ga.all(), gb.all(), gc.all())]);
        let got = pollster::block_on(gpu.read_f32(&gc, m * n)).unwrap();
        assert_close(&got, &want, &format!("{m}x{k}x{n}"));
    }
}

#[test]
fn fused_dequant_matmul_matches_cpu_for_every_format() {
    let gpu = gpu();
    let mmq = MatmulDequant::new(&gpu);
    // 72·45 = 3240 values: a partial last block of 64. The first two shapes take the column-per-invocation entry
    // point (a row of generation; 16 rows, wider than its workgroup both ways), the third 16×16 tiles, the last the
    // 64×64 tiles both ways.
    for (m, inf, outf) in [(1usize, 72usize, 45usize), (16, 72, 130), (19, 72, 45), (70, 72, 130)] {
        fused_dequant_matmul_matches_cpu(&gpu, &mmq, m, inf, outf);
    }
}

fn fused_dequant_matmul_matches_cpu(gpu: &Gpu, mmq: &MatmulDequant, m: usize, inf: usize, outf: usize) {
    let w = random(outf * inf, 1).iter().map(|v| v * 0.1).collect::<Vec<_>>();
    let x = random(m * inf, 2);
    let dy = random(m * outf, 3);
    let bias = random(outf, 4);
    let dx0 = random(m * inf, 5);
    for format in Format::ALL {
        for dq in [false, true] {
            let Ok(storage) = Storage::new(format, dq) else {
                continue;
            };
            let q = QuantizedTensor::quantize(&w, storage);
            let deq = q.dequantize(); // [out, in]
            let gw = GpuQuantWeight::upload(gpu, "w", &q, outf, inf).unwrap();
            let (gx, gb, gdy) = (
                gpu.upload("x", &x, Category::Activations).unwrap(),
                gpu.upload("b", &bias, Category::Scratch).unwrap(),
                gpu.upload("dy", &dy, Category::Activations).unwrap(),
            );
            let gy =
                gpu.buffer("y", (m * outf * 4) as u64, Category::Activations, wgpu::BufferUsages::empty()).unwrap();
            let gdx = gpu.upload("dx", &dx0, Category::Activations).unwrap();
            let fwd = mmq.prepare_forward(gpu, &gw, m as u32, gx.all(), Some(gb.all()), gy.all());
            let bwd = mmq.prepare_backward(gpu, &gw, m as u32, gdy.all(), gdx.all(), true);
            submit(gpu, &[&fwd, &bwd]);
            let mut want_y: Vec<f32> = (0..m).flat_map(|_| bias.clone()).collect();
            gemm(m, inf, outf, 1.0, Mat::new(&x, inf), Mat::t(&deq, inf), 1.0, &mut want_y, outf);
            let mut want_dx = dx0.clone();
            gemm(m, outf, inf, 1.0, Mat::new(&dy, outf), Mat::new(&deq, inf), 1.0, &mut want_dx, inf);
            let got_y = pollster::block_on(gpu.read_f32(&gy, m * outf)).unwrap();
            let got_dx = pollster::block_on(gpu.read_f32(&gdx, m * inf)).unwrap();
            assert_close(&got_y, &want_y, &format!("{} forward {m}×{inf}×{outf}", storage.label()));
            assert_close(&got_dx, &want_dx, &format!("{} backward {m}×{inf}×{outf}", storage.label()));
        }
    }
}

/// The tied head's use of the fused kernel: a chunk of rows of a wider x in, its columns of wider logits out
/// (forward), and the columns of those logits back to the rows (backward), for an fp16 embedding part.
#[test]
fn strided_dequant_matmul_reads_and_writes_sub_matrices() {
    let gpu = gpu();
    let mmq = MatmulDequant::new(&gpu);
    // 70 rows: wide enough (c = 72) that the backward product takes the 64×64-tile entry point too; 11 rows take
    // the column-per-invocation one both ways (a training batch of a few tokens).
    for rows in [70, 11] {
        strided_dequant_matmul(&gpu, &mmq, rows);
    }
}

fn strided_dequant_matmul(gpu: &Gpu, mmq: &MatmulDequant, rows: usize) {
    let (c, part, vocab, row0, col0) = (72usize, 90usize, 130usize, 5usize, 33usize);
    let total = row0 + rows + 3;
    let wte = random(part * c, 1); // the part's rows, [part, C]
    let lnf = random(total * c, 2);
    let logits0 = random(rows * vocab, 3);
    let dlnf0 = random(total * c, 4);
    let q = QuantizedTensor::quantize(&wte, Storage::new(Format::Fp16, false).unwrap());
    let deq = q.dequantize();
    let gw = GpuQuantWeight::upload(gpu, "wte part", &q, part, c).unwrap();
    let (glnf, glogits, gdlnf) = (up(gpu, &lnf), up(gpu, &logits0), up(gpu, &dlnf0));
    let (xs, ys) =
        (Strided { offset: (row0 * c) as u32, ld: c as u32 }, Strided { offset: col0 as u32, ld: vocab as u32 });
    let fwd = mmq.prepare_forward_strided(gpu, &gw, rows as u32, glnf.all(), xs, None, glogits.all(), ys);
    submit(gpu, &[&fwd]);
    let mut want = logits0.clone();
    let mut block = vec![0.0; rows * part];
    gemm(rows, c, part, 1.0, Mat::new(&lnf[row0 * c..], c), Mat::t(&deq, c), 0.0, &mut block, part);
    for r in 0..rows {
        want[r * vocab + col0..r * vocab + col0 + part].copy_from_slice(&block[r * part..(r + 1) * part]);
    }
    let got = read(gpu, &glogits, rows * vocab);
    assert_close(&got, &want, &format!("strided forward, {rows} rows (columns outside the part untouched)"));
    let bwd = mmq.prepare_backward_strided(gpu, &gw, rows as u32, glogits.all(), ys, gdlnf.all(), xs, true);
    submit(gpu, &[&bwd]);
    let mut want_d = dlnf0.clone();
    let a: Vec<f32> = (0..rows).flat_map(|r| want[r * vocab + col0..r * vocab + col0 + part].to_vec()).collect();
    gemm(rows, part, c, 1.0, Mat::new(&a, part), Mat::new(&deq, c), 1.0, &mut want_d[row0 * c..], c);
    assert_close(
        &read(gpu, &gdlnf, total * c),
        &want_d,
        &format!("strided backward, {rows} rows (rows outside the chunk untouched)"),
    );
}

#[test]
fn buffers_are_counted_by_category_and_limits_are_refused() {
    let gpu = gpu();
    let before = gpu.ledger.bytes(Category::Optimizer);
    let b = gpu.buffer("m", 1000, Category::Optimizer, wgpu::BufferUsages::empty()).unwrap();
    assert_eq!(gpu.ledger.bytes(Category::Optimizer), before + 1000);
    drop(b);
    assert_eq!(gpu.ledger.bytes(Category::Optimizer), before);
    let too_big = gpu.limits.max_storage_buffer_binding_size + 4;
    let err = gpu.buffer("huge", too_big, Category::Activations, wgpu::BufferUsages::empty()).err().expect("refused");
    assert!(err.message().contains("maxStorageBufferBindingSize"), "{err}");
}

use qlora_playground::cpu::layers;
use qlora_playground::cpu::optim::{clip_grad_norm, AdamW};
use qlora_playground::gpu::{AdamHyper, AdamShard, EmbeddingParams, GpuBuffer, Kernels};

fn up(gpu: &Gpu, v: &[f32]) -> GpuBuffer {
    gpu.upload("t", v, Category::Scratch).unwrap()
}

fn read(gpu: &Gpu, b: &GpuBuffer, n: usize) -> Vec<f32> {
    pollster::block_on(gpu.read_f32(b, n)).unwrap()
}

#[test]
fn elementwise_kernels_match_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let n = 1000;
    let (x, dy, d0) = (random(n, 1).iter().map(|v| v * 4.0).collect::<Vec<_>>(), random(n, 2), random(n, 3));
    let (gx, gdy, gd) = (up(&gpu, &x), up(&gpu, &dy), up(&gpu, &d0));
    let gy = up(&gpu, &vec![0.0; n]);
    let gs = up(&gpu, &vec![0.0; n]);
    submit(
        &gpu,
        &[
            &k.gelu_forward(&gpu, n as u32, gx.all(), gy.all()),
            &k.gelu_backward(&gpu, n as u32, gd.all(), gx.all(), gdy.all()),
            &k.residual_forward(&gpu, n as u32, gs.all(), gx.all(), gdy.all()),
        ],
    );
    let mut want_y = vec![0.0; n];
    layers::gelu_forward(&mut want_y, &x);
    let mut want_d = d0.clone();
    layers::gelu_backward(&mut want_d, &x, &dy);
    // Written outright, not added: what was there before does not matter (the GPU step zeroes nothing first).
    let mut from_zero = vec![0.0; n];
    layers::gelu_backward(&mut from_zero, &x, &dy);
    assert_eq!(from_zero, want_d, "gelu backward overwrites its gradient");
    let mut want_s = vec![0.0; n];
    layers::residual_forward(&mut want_s, &x, &dy);
    assert_close(&read(&gpu, &gy, n), &want_y, "gelu forward");
    assert_close(&read(&gpu, &gd, n), &want_d, "gelu backward");
    assert_close(&read(&gpu, &gs, n), &want_s, "residual");
}

/// The remaining elementwise entry points against what the CPU executor does in their place: `+=` of a linear
/// layer's adapter input gradient, adapter dropout (the CPU draws keep/drop and scales by 1/(1−p); the GPU reads
/// the same draws as a mask of 0 or 1/(1−p)), zeroing before accumulation, and a bias broadcast over rows.
#[test]
fn accumulate_dropout_zero_and_bias_rows_match_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let (rows, width) = (37usize, 27usize);
    let n = rows * width;
    let (x, g, acc0) = (random(n, 11), random(n, 12), random(n, 13));
    let p = 0.3f32;
    let keep = 1.0 / (1.0 - p);
    let kept: Vec<bool> = qlora_playground::train::dropout_mask(7, 1, 2, p).take(n).collect();
    let mask: Vec<f32> = kept.iter().map(|&k| if k { keep } else { 0.0 }).collect();
    let bias = random(width, 14);
    let (gx, gg, gmask, gbias) = (up(&gpu, &x), up(&gpu, &g), up(&gpu, &mask), up(&gpu, &bias));
    let (gacc, gdropped, gdin, gzero, grows) =
        (up(&gpu, &acc0), up(&gpu, &vec![9.0; n]), up(&gpu, &acc0), up(&gpu, &random(n, 15)), up(&gpu, &vec![0.0; n]));
    let nu = n as u32;
    submit(
        &gpu,
        &[
            &k.accumulate(&gpu, nu, gacc.all(), gg.all()),
            &k.mask_forward(&gpu, nu, gdropped.all(), gx.all(), gmask.all()),
            &k.mask_backward(&gpu, nu, gdin.all(), gg.all(), gmask.all()),
            &k.zero(&gpu, nu, gzero.all()),
            &k.broadcast_rows(&gpu, rows as u32, width as u32, grows.all(), gbias.all()),
        ],
    );
    // As cpu::executor writes them.
    let want_acc: Vec<f32> = acc0.iter().zip(&g).map(|(a, b)| a + b).collect();
    let want_dropped: Vec<f32> = x.iter().zip(&kept).map(|(v, &k)| if k { v * keep } else { 0.0 }).collect();
    let want_din: Vec<f32> =
        acc0.iter().zip(&g).zip(&kept).map(|((a, d), &k)| if k { a + d * keep } else { *a }).collect();
    let want_rows: Vec<f32> = (0..n).map(|i| bias[i % width]).collect();
    assert_close(&read(&gpu, &gacc, n), &want_acc, "accumulate");
    assert_close(&read(&gpu, &gdropped, n), &want_dropped, "mask forward (dropout)");
    assert_close(&read(&gpu, &gdin, n), &want_din, "mask backward (dropout)");
    assert_eq!(read(&gpu, &gzero, n), vec![0.0; n], "zero");
    assert_eq!(read(&gpu, &grows, n), want_rows, "bias broadcast over rows");
}

#[test]
fn layernorm_matches_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let (rows, c) = (37usize, 70usize);
    let x: Vec<f32> = random(rows * c, 1).iter().map(|v| v * 3.0 + 0.5).collect();
    let (w, b, dy, dx0) = (random(c, 2), random(c, 3), random(rows * c, 4), random(rows * c, 5));
    let (gx, gw, gb, gdy, gdx) = (up(&gpu, &x), up(&gpu, &w), up(&gpu, &b), up(&gpu, &dy), up(&gpu, &dx0));
    let (gout, gstats) = (up(&gpu, &vec![0.0; rows * c]), up(&gpu, &vec![0.0; 2 * rows]));
    let (gdw, gdb) = (up(&gpu, &vec![0.5; c]), up(&gpu, &vec![0.25; c]));
    let (r, cc) = (rows as u32, c as u32);
    submit(
        &gpu,
        &[
            &k.layernorm_forward(&gpu, r, cc, 1e-5, gout.all(), gstats.all(), gx.all(), gw.all(), gb.all()),
            &k.layernorm_backward(&gpu, r, cc, gdx.all(), gdy.all(), gx.all(), gw.all(), gstats.all()),
            &k.layernorm_param_grads(&gpu, r, cc, gdw.all(), gdb.all(), gdy.all(), gx.all(), gstats.all()),
        ],
    );
    let (mut out, mut mean, mut rstd) = (vec![0.0; rows * c], vec![0.0; rows], vec![0.0; rows]);
    layers::layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &b, c, 1e-5);
    let (mut dx, mut dw, mut db) = (dx0.clone(), vec![0.5; c], vec![0.25; c]);
    layers::layernorm_backward(&mut dx, Some((&mut dw, &mut db)), &dy, &x, &w, &mean, &rstd, c);
    assert_close(&read(&gpu, &gout, rows * c), &out, "layernorm forward");
    assert_close(&read(&gpu, &gdx, rows * c), &dx, "layernorm backward");
    assert_close(&read(&gpu, &gdw, c), &dw, "layernorm dweight");
    assert_close(&read(&gpu, &gdb, c), &db, "layernorm dbias");
}

#[test]
fn bias_grad_matches_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let (rows, c) = (45usize, 33usize);
    let dy = random(rows * c, 1);
    let gdb = up(&gpu, &vec![1.0; c]);
    submit(&gpu, &[&k.bias_grad(&gpu, rows as u32, c as u32, gdb.all(), up(&gpu, &dy).all())]);
    let mut want = vec![1.0; c];
    for r in dy.chunks(c) {
        for (w, v) in want.iter_mut().zip(r) {
            *w += v;
        }
    }
    assert_close(&read(&gpu, &gdb, c), &want, "bias grad");
}

#[test]
fn attention_matches_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let (b, t, c, nh) = (2usize, 11usize, 24usize, 3usize);
    let qkv = random(b * t * 3 * c, 1);
    let dy = random(b * t * c, 2);
    let (gq, gdy) = (up(&gpu, &qkv), up(&gpu, &dy));
    let gout = up(&gpu, &vec![0.0; b * t * c]);
    let gatt = up(&gpu, &vec![0.0; b * t * nh * t]);
    let gdpre = up(&gpu, &vec![0.0; b * t * nh * t]);
    // Random values where the gradient goes: both twins write it outright.
    let dq0 = random(b * t * 3 * c, 3);
    let gdq = up(&gpu, &dq0);
    let (bu, tu, cu, nhu) = (b as u32, t as u32, c as u32, nh as u32);
    let fwd = k.attention_forward(&gpu, bu, tu, cu, nhu, gout.all(), gatt.all(), gq.all());
    let [bq, bk] = k.attention_backward(&gpu, bu, tu, cu, nhu, gdq.all(), gdy.all(), gq.all(), gatt.all(), gdpre.all());
    submit(&gpu, &[&fwd, &bq, &bk]);
    let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * t * nh * t]);
    layers::attention_forward(&mut out, &mut att, &qkv, t, c, nh);
    let mut dq = dq0.clone();
    layers::attention_backward(&mut dq, &dy, &qkv, &att, b, t, c, nh);
    let mut from_zero = vec![0.0; b * t * 3 * c];
    layers::attention_backward(&mut from_zero, &dy, &qkv, &att, b, t, c, nh);
    assert_eq!(from_zero, dq, "attention backward overwrites its gradient");
    assert_close(&read(&gpu, &gout, b * t * c), &out, "attention forward");
    assert_close(&read(&gpu, &gatt, b * t * nh * t), &att, "attention probabilities");
    assert_close(&read(&gpu, &gdq, b * t * 3 * c), &dq, "attention backward");
}

/// Decoding one position at a time with the KV cache gives each position's row of full causal attention.
#[test]
fn attention_decode_matches_cpu() {
    use qlora_playground::gpu::DecodeParams;
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let (t, c, nh, max_t) = (13usize, 24usize, 3usize, 16usize);
    let qkv = random(t * 3 * c, 21);
    let (mut want, mut att) = (vec![0.0; t * c], vec![0.0; t * nh * t]);
    layers::attention_forward(&mut want, &mut att, &qkv, t, c, nh);
    let gq = up(&gpu, &vec![0.0; 3 * c]);
    let (gk, gv) = (up(&gpu, &vec![0.0; max_t * c]), up(&gpu, &vec![0.0; max_t * c]));
    let (gatt, gy) = (up(&gpu, &vec![0.0; nh * max_t]), up(&gpu, &vec![0.0; c]));
    let (cu, nhu, tu) = (c as u32, nh as u32, max_t as u32);
    let decode = k.attention_decode(&gpu, cu, nhu, tu, gy.all(), gq.all(), gk.all(), gv.all(), gatt.all());
    for pos in 0..t {
        gpu.queue.write_buffer(gq.raw(), 0, bytemuck::cast_slice(&qkv[pos * 3 * c..(pos + 1) * 3 * c]));
        decode.write_uniform(&gpu, &DecodeParams { pos: pos as u32, c: cu, nh: nhu, max_t: tu });
        submit(&gpu, &[&decode]);
        assert_close(&read(&gpu, &gy, c), &want[pos * c..(pos + 1) * c], &format!("decoded position {pos}"));
    }
}

#[test]
fn embedding_matches_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let (b, t, c, v) = (3usize, 9usize, 20usize, 256usize);
    let tokens: Vec<u32> = (0..b * t).map(|i| (i * 37 % 7) as u32 * 31).collect();
    let (wte, wpe, dout) = (random(v * c, 1), random(t * c, 2), random(b * t * c, 3));
    let mut out = vec![0.0; b * t * c];
    layers::embedding_forward(&mut out, &tokens, &wte, &wpe, t, c);
    let (mut dwte, mut dwpe) = (vec![0.0; v * c], vec![0.0; t * c]);
    layers::embedding_backward(&mut dwte, &mut dwpe, &dout, &tokens, t, c);
    let gtok = gpu.upload("tokens", &tokens, Category::Activations).unwrap();
    let rows = (b * t) as u32;
    // The whole embedding in one part, then in three (as a binding limit splits GPT-2's): the same sums, exactly.
    let whole: Vec<std::ops::Range<usize>> = std::iter::once(0..v).collect();
    for parts in [whole, vec![0..100, 100..217, 217..v]] {
        let (gout, gdout, gwpe) = (up(&gpu, &vec![0.0; b * t * c]), up(&gpu, &dout), up(&gpu, &wpe));
        let gdwpe = up(&gpu, &vec![0.0; t * c]);
        let stored: Vec<_> =
            parts.iter().map(|r| (up(&gpu, &wte[r.start * c..r.end * c]), up(&gpu, &vec![0.0; r.len() * c]))).collect();
        let mut dispatches = Vec::new();
        for (r, (gwte, _)) in parts.iter().zip(&stored) {
            let p = EmbeddingParams::new(rows, t as u32, c as u32, r.clone());
            dispatches.push(k.embedding_forward(&gpu, p, gout.all(), gtok.all(), gwte.all(), gwpe.all()));
        }
        for (r, (_, gdwte)) in parts.iter().zip(&stored) {
            let p = EmbeddingParams::new(rows, t as u32, c as u32, r.clone());
            dispatches.push(k.embedding_backward(&gpu, p, gdwte.all(), gdwpe.all(), gdout.all(), gtok.all()));
        }
        submit(&gpu, &dispatches.iter().collect::<Vec<_>>());
        let what = format!("{} parts", parts.len());
        assert_eq!(read(&gpu, &gout, b * t * c), out, "embedding forward, {what}");
        let got_dwte: Vec<f32> = parts.iter().zip(&stored).flat_map(|(r, (_, g))| read(&gpu, g, r.len() * c)).collect();
        assert_close(&got_dwte, &dwte, &format!("embedding dwte, {what}"));
        assert_close(&read(&gpu, &gdwpe, t * c), &dwpe, &format!("embedding dwpe, {what}"));
    }
    // An fp16 embedding (beside a base stored below 32 bits) in two parts: the gather reads halves.
    let (gout, gwpe) = (up(&gpu, &vec![0.0; b * t * c]), up(&gpu, &wpe));
    let half = Storage::new(Format::Fp16, false).unwrap();
    let parts = [0..150, 150..v];
    let stored: Vec<_> = parts
        .iter()
        .map(|r| {
            let q = QuantizedTensor::quantize(&wte[r.start * c..r.end * c], half);
            GpuQuantWeight::upload(&gpu, "wte", &q, r.len(), c).unwrap()
        })
        .collect();
    let dispatches: Vec<_> = parts
        .iter()
        .zip(&stored)
        .map(|(r, w)| {
            let p = EmbeddingParams { half: 1, ..EmbeddingParams::new(rows, t as u32, c as u32, r.clone()) };
            k.embedding_forward(&gpu, p, gout.all(), gtok.all(), w.values(), gwpe.all())
        })
        .collect();
    submit(&gpu, &dispatches.iter().collect::<Vec<_>>());
    let wte16 = QuantizedTensor::quantize(&wte, half).dequantize();
    let mut out16 = vec![0.0; b * t * c];
    layers::embedding_forward(&mut out16, &tokens, &wte16, &wpe, t, c);
    assert_eq!(read(&gpu, &gout, b * t * c), out16, "fp16 embedding forward");
}

#[test]
fn cross_entropy_matches_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    // A chunk of 29 rows starting at batch row 5 of 40: targets and losses are read and written at row0 + r.
    let (rows, v, row0, total) = (29usize, 256usize, 5usize, 40usize);
    let logits: Vec<f32> = random(rows * v, 1).iter().map(|x| x * 5.0).collect();
    let targets: Vec<u32> = (0..total).map(|i| (i * 53 % v) as u32).collect();
    let gt = gpu.upload("targets", &targets, Category::Activations).unwrap();
    let scale = 1.0 / total as f32;
    for grad in [None, Some(scale)] {
        let gp = up(&gpu, &logits);
        let gl = up(&gpu, &vec![7.0; total]);
        let d = k.cross_entropy(&gpu, rows as u32, v as u32, row0 as u32, grad, gp.all(), gt.all(), gl.all());
        submit(&gpu, &[&d]);
        let mut want = logits.clone();
        let sum = layers::softmax_cross_entropy(&mut want, &targets[row0..row0 + rows], v, grad);
        let what = if grad.is_some() { "dlogits" } else { "softmax" };
        assert_close(&read(&gpu, &gp, rows * v), &want, what);
        let losses = read(&gpu, &gl, total);
        assert!(losses[..row0].iter().chain(&losses[row0 + rows..]).all(|l| *l == 7.0), "rows outside the chunk");
        let got = losses[row0..row0 + rows].iter().map(|l| *l as f64).sum::<f64>();
        assert!((got - sum).abs() < 1e-4 * rows as f64, "{what}: loss sum {got} vs {sum}");
    }
}

#[test]
fn adamw_with_clipping_matches_cpu() {
    let gpu = gpu();
    let k = Kernels::new(&gpu);
    let n = 1000usize;
    let mut p = random(n, 1);
    // Two shards (as GPT-2's parameters are split under a binding limit): 600 + 400 values, five partial sums.
    let cut = 600usize;
    let halves = [0..cut, cut..n];
    let shard = |r: &std::ops::Range<usize>| {
        let z = vec![0.0; r.len()];
        (up(&gpu, &p[r.clone()]), up(&gpu, &z), up(&gpu, &z), up(&gpu, &z))
    };
    let bufs: Vec<_> = halves.iter().map(shard).collect();
    let gnorm = up(&gpu, &vec![0.0; 1 + cut.div_ceil(256) + (n - cut).div_ceil(256)]);
    let hyper = AdamHyper { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_norm: 1.0 };
    let shards: Vec<AdamShard> = halves
        .iter()
        .zip(&bufs)
        .map(|(r, (gp, gg, gm, gv))| AdamShard {
            n: r.len() as u32,
            param: gp.all(),
            grad: gg.all(),
            m: gm.all(),
            v: gv.all(),
        })
        .collect();
    let adam_gpu = k.adamw(&gpu, hyper, &shards, gnorm.all());
    let mut adam = AdamW::new(n, 0.01);
    for step in 1..=3u32 {
        let g: Vec<f32> = random(n, 10 + step as u64).iter().map(|x| x * step as f32).collect();
        for (r, (_, gg, _, _)) in halves.iter().zip(&bufs) {
            gpu.queue.write_buffer(gg.raw(), 0, bytemuck::cast_slice(&g[r.clone()]));
        }
        let lr = 0.01 * step as f32;
        adam_gpu.set_step(&gpu, step, lr);
        submit(&gpu, &adam_gpu.all().collect::<Vec<_>>());
        let mut gc = g.clone();
        let norm = clip_grad_norm(&mut gc, 1.0);
        let sq = read(&gpu, &gnorm, 1)[0];
        assert!((sq.sqrt() - norm).abs() <= 1e-4 * norm, "global norm {} vs {norm}", sq.sqrt());
        adam.step(&mut p, &gc, lr);
    }
    let got: Vec<f32> = halves.iter().zip(&bufs).flat_map(|(r, (gp, _, _, _))| read(&gpu, gp, r.len())).collect();
    assert_close(&got, &p, "adamw");
}
