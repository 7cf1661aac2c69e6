//! The fused dequantize + matmul kernel in each of its tilings, and the f32 matmul on 64×64 tiles and transposed (many
//! rows onto a few columns: LoRA's factors), on WebGPU in a real browser (headless Chromium with
//! WebGPU on SwiftShader, or Firefox with its WebGPU on lavapipe) against the CPU. Run with the rest by
//! `wasm-pack test --headless --chrome` (or `--firefox`); the runner gives each test file 20 s, so each GPU scenario
//! has a file of its own.
#![cfg(target_arch = "wasm32")]

mod browser_util;

use browser_util::{rel, values};
use qlora_playground::gpu::{submit, Category, Gpu, GpuQuantWeight, Matmul, MatmulDequant, MatmulShape};
use qlora_playground::quant::{Format, QuantizedTensor, Storage};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn fused_nf4_matmul_matches_cpu_in_the_browser() {
    let Some(gpu) = browser_util::gpu().await else { return };
    // A few rows (a column per invocation), more (16×16 output tiles), then enough rows and columns for 64×64 tiles.
    for (m, inf, outf) in [(5usize, 70usize, 33usize), (20, 70, 33), (70, 72, 130)] {
        fused_nf4_matmul_matches_cpu(&gpu, m, inf, outf).await;
    }
}

async fn fused_nf4_matmul_matches_cpu(gpu: &Gpu, m: usize, inf: usize, outf: usize) {
    let w: Vec<f32> = values(outf * inf, 1).iter().map(|v| v * 0.1).collect();
    let x = values(m * inf, 2);
    let q = QuantizedTensor::quantize(&w, Storage::new(Format::Nf4, true).unwrap());
    let deq = q.dequantize();
    let gw = GpuQuantWeight::upload(gpu, "w", &q, outf, inf).unwrap();
    let gx = gpu.upload("x", &x, Category::Activations).unwrap();
    let gy = gpu.upload("y", &vec![0.0f32; m * outf], Category::Activations).unwrap();
    submit(gpu, &[&MatmulDequant::new(gpu).prepare_forward(gpu, &gw, m as u32, gx.all(), None, gy.all())]);
    let got = gpu.read_f32(&gy, m * outf).await.unwrap();
    let want: Vec<f32> =
        (0..m * outf).map(|i| (0..inf).map(|k| x[(i / outf) * inf + k] * deq[(i % outf) * inf + k]).sum()).collect();
    assert!(rel(&got, &want) <= 1e-4, "{m}×{inf} · ({outf}×{inf})ᵀ");
}

#[wasm_bindgen_test]
async fn f32_matmul_matches_cpu_in_the_browser() {
    let Some(gpu) = browser_util::gpu().await else { return };
    let mm = Matmul::new(&gpu);
    // 64×64 tiles (not a tile multiple), then 70 rows onto 8 columns (run as 8 × 70, stored transposed), each with
    // B stored transposed as well as plain.
    for (m, k, n) in [(70usize, 37usize, 130usize), (70, 40, 8)] {
        for tb in [false, true] {
            let (a, b) = (values(m * k, 3), values(k * n, 4));
            let gpu_a = gpu.upload("a", &a, Category::Activations).unwrap();
            let gpu_b = gpu.upload("b", &b, Category::Activations).unwrap();
            let gpu_c = gpu.upload("c", &vec![0.0f32; m * n], Category::Activations).unwrap();
            let shape = MatmulShape::new(m as u32, k as u32, n as u32, false, tb);
            submit(&gpu, &[&mm.prepare(&gpu, shape, gpu_a.all(), gpu_b.all(), gpu_c.all())]);
            let got = gpu.read_f32(&gpu_c, m * n).await.unwrap();
            let b_at = |kk: usize, j: usize| if tb { b[j * k + kk] } else { b[kk * n + j] };
            let want: Vec<f32> =
                (0..m * n).map(|i| (0..k).map(|kk| a[(i / n) * k + kk] * b_at(kk, i % n)).sum()).collect();
            assert!(rel(&got, &want) <= 1e-4, "{m}×{k}×{n}, B transposed: {tb}");
        }
    }
}
