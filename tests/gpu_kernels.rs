//! Parity of the WGSL kernels with the CPU executor, natively (lavapipe on CI; any Vulkan GPU elsewhere).
//! Shapes include sizes that are not multiples of the 16×16 tile. Tolerance: 1e-4 relative to the largest
//! magnitude of the expected result (f32 sums in a different order).
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::{gemm, Mat};
use qlora_playground::gpu::{
    submit, wgpu, Category, Gpu, GpuQuantWeight, Matmul, MatmulDequant, MatmulShape,
};
use qlora_playground::quant::{Format, QuantizedTensor, Storage};
use rand::{RngExt, SeedableRng};

fn gpu() -> Gpu {
    Gpu::new_blocking()
        .expect("a WebGPU adapter (CI installs Mesa's lavapipe: mesa-vulkan-drivers)")
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
        / scale;
    assert!(worst <= 1e-4, "{what}: relative error {worst:e}");
}

#[test]
fn matmul_matches_cpu_in_every_orientation() {
    let gpu = gpu();
    let mm = Matmul::new(&gpu);
    for (i, &(m, k, n)) in [(1, 1, 1), (17, 33, 5), (40, 16, 48), (3, 70, 31)]
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
                let (ga, gb) = (
                    gpu.upload("a", &a, Category::Scratch).unwrap(),
                    gpu.upload("b", &b, Category::Scratch).unwrap(),
                );
                let gc = gpu.upload("c", &c0, Category::Scratch).unwrap();
                let shape = MatmulShape {
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    trans_a: ta,
                    trans_b: tb,
                    ldc: ldc as u32,
                    c_offset: 2,
                    alpha,
                    beta,
                };
                submit(&gpu, &[&mm.prepare(&gpu, shape, &ga, &gb, &gc)]);
                let got = pollster::block_on(gpu.read_f32(&gc, m * ldc)).unwrap();
                assert_close(&got, &want, &format!("{m}x{k}x{n} ta={ta} tb={tb}"));
            }
        }
    }
}

#[test]
fn fused_dequant_matmul_matches_cpu_for_every_format() {
    let gpu = gpu();
    let mmq = MatmulDequant::new(&gpu);
    let (m, inf, outf) = (19usize, 72usize, 45usize); // 72·45 = 3240 values: a partial last block of 64
    let w = random(outf * inf, 1)
        .iter()
        .map(|v| v * 0.1)
        .collect::<Vec<_>>();
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
            let gw = GpuQuantWeight::upload(&gpu, "w", &q, outf, inf).unwrap();
            let (gx, gb, gdy) = (
                gpu.upload("x", &x, Category::Activations).unwrap(),
                gpu.upload("b", &bias, Category::Scratch).unwrap(),
                gpu.upload("dy", &dy, Category::Activations).unwrap(),
            );
            let gy = gpu
                .buffer(
                    "y",
                    (m * outf * 4) as u64,
                    Category::Activations,
                    wgpu::BufferUsages::empty(),
                )
                .unwrap();
            let gdx = gpu.upload("dx", &dx0, Category::Activations).unwrap();
            let fwd = mmq.prepare_forward(&gpu, &gw, m as u32, &gx, Some(&gb), &gy);
            let bwd = mmq.prepare_backward(&gpu, &gw, m as u32, &gdy, &gdx, true);
            submit(&gpu, &[&fwd, &bwd]);
            let mut want_y: Vec<f32> = (0..m).flat_map(|_| bias.clone()).collect();
            gemm(
                m,
                inf,
                outf,
                1.0,
                Mat::new(&x, inf),
                Mat::t(&deq, inf),
                1.0,
                &mut want_y,
                outf,
            );
            let mut want_dx = dx0.clone();
            gemm(
                m,
                outf,
                inf,
                1.0,
                Mat::new(&dy, outf),
                Mat::new(&deq, inf),
                1.0,
                &mut want_dx,
                inf,
            );
            let got_y = pollster::block_on(gpu.read_f32(&gy, m * outf)).unwrap();
            let got_dx = pollster::block_on(gpu.read_f32(&gdx, m * inf)).unwrap();
            assert_close(&got_y, &want_y, &format!("{} forward", storage.label()));
            assert_close(&got_dx, &want_dx, &format!("{} backward", storage.label()));
        }
    }
}

#[test]
fn buffers_are_counted_by_category_and_limits_are_refused() {
    let gpu = gpu();
    let before = gpu.ledger.bytes(Category::Optimizer);
    let b = gpu
        .buffer("m", 1000, Category::Optimizer, wgpu::BufferUsages::empty())
        .unwrap();
    assert_eq!(gpu.ledger.bytes(Category::Optimizer), before + 1000);
    drop(b);
    assert_eq!(gpu.ledger.bytes(Category::Optimizer), before);
    let too_big = gpu.limits.max_storage_buffer_binding_size + 4;
    let err = gpu
        .buffer(
            "huge",
            too_big,
            Category::Activations,
            wgpu::BufferUsages::empty(),
        )
        .err()
        .expect("refused");
    assert!(
        err.message().contains("maxStorageBufferBindingSize"),
        "{err}"
    );
}
