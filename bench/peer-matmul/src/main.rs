//! Our f32 WGSL matmul (`shaders/matmul.wgsl`, as the training step prepares it) beside Burn's (CubeCL, compiled to
//! WGSL, autotuned) on the same adapter, in one run: the products of a GPT-2-small step at 4 × 128 rows and two
//! squares (three on a GPU: 4096² too). Each repetition runs ours, then theirs, and times submit → done on the wall
//! clock (both sides pay their own submission), so both see the same machine load; medians over the repetitions
//! after a warm-up that also lets Burn's autotuner pick its kernel. Both sides get the same operands and their results
//! are compared first.
//!
//! Usage: peer-matmul [reps] (default 5). Prints one JSON line per shape.

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use qlora_playground::gpu::{submit, Category, Gpu, Matmul, MatmulShape};
use std::time::Instant;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A deterministic operand in [-1, 1) (a linear congruential sequence; no RNG crate needed for a benchmark).
fn operand(len: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(5).max(1);
    let gpu = Gpu::new_blocking()?;
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let mm = Matmul::new(&gpu);
    // (name, m, k, n): GPT-2-small's block products at batch 4 × 128, then two squares.
    let shapes = [
        ("c_attn x·W (512 × 768 × 2304)", 512, 768, 2304),
        ("c_fc x·W (512 × 768 × 3072)", 512, 768, 3072),
        ("mlp c_proj x·W (512 × 3072 × 768)", 512, 3072, 768),
        ("square 512", 512, 512, 512),
        ("square 1024", 1024, 1024, 1024),
    ];
    // On a GPU the shapes above take about a millisecond, much of it the submission both sides pay; a large square
    // shows the kernels themselves. On a CPU adapter (lavapipe) it would take minutes, and says nothing new there.
    let on_gpu = gpu.info.device_type != qlora_playground::gpu::wgpu::DeviceType::Cpu;
    let large: &[(&str, usize, usize, usize)] = if on_gpu { &[("square 4096", 4096, 4096, 4096)] } else { &[] };
    for &(name, m, k, n) in shapes.iter().chain(large) {
        let (a, b) = (operand(m * k, 1), operand(k * n, 2));
        let ga = gpu.upload("a", &a, Category::Scratch)?;
        let gb = gpu.upload("b", &b, Category::Scratch)?;
        let gc =
            gpu.buffer("c", 4 * (m * n) as u64, Category::Scratch, qlora_playground::gpu::wgpu::BufferUsages::empty())?;
        let ours = mm.prepare(&gpu, MatmulShape::plain(m as u32, k as u32, n as u32), ga.all(), gb.all(), gc.all());
        let ta = Tensor::<2>::from_data(TensorData::new(a, [m, k]), &device);
        let tb = Tensor::<2>::from_data(TensorData::new(b, [k, n]), &device);

        // The same product on both sides first.
        submit(&gpu, &[&ours]);
        let c_ours = pollster::block_on(gpu.read_f32(&gc, m * n))?;
        let c_theirs = ta.clone().matmul(tb.clone()).into_data().try_into_vec::<f32>()?;
        let scale = c_theirs.iter().fold(1e-6f32, |s, v| s.max(v.abs()));
        let diff = c_ours.iter().zip(&c_theirs).fold(0.0f32, |d, (x, y)| d.max((x - y).abs())) / scale;
        assert!(diff < 1e-4, "{name}: results differ by {diff} (relative to the largest)");

        let (mut t_ours, mut t_theirs) = (Vec::new(), Vec::new());
        for i in 0..reps + 2 {
            let t0 = Instant::now();
            submit(&gpu, &[&ours]);
            gpu.wait();
            let ours_s = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let c = ta.clone().matmul(tb.clone());
            device.sync()?;
            let theirs_s = t0.elapsed().as_secs_f64();
            drop(c);
            if i >= 2 {
                t_ours.push(ours_s);
                t_theirs.push(theirs_s);
            }
        }
        let (ours_s, theirs_s) = (median(&mut t_ours), median(&mut t_theirs));
        let gflop = 2.0 * (m * k * n) as f64 / 1e9;
        println!(
            "{{\"shape\": \"{name}\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"adapter\": \"{}\", \"reps\": {reps}, \
             \"ours_ms\": {:.2}, \"burn_ms\": {:.2}, \"ours_gflops\": {:.2}, \"burn_gflops\": {:.2}, \
             \"burn_over_ours\": {:.3}, \"max_rel_diff\": {diff:.2e}}}",
            gpu.info.name,
            ours_s * 1e3,
            theirs_s * 1e3,
            gflop / ours_s,
            gflop / theirs_s,
            theirs_s / ours_s,
        );
    }
    Ok(())
}
