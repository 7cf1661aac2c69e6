//! `qlora bench --backend gpu --profile`: a GPU training step counted on paper (`gpu::cost`), kernel by kernel, and
//! held against the least any step of this run must do, on an integrated and a discrete GPU.

use crate::gpu::{by_kernel, Category, GpuTrainer, KernelTotals, PAPER_GPUS};
use crate::Result;
use serde_json::json;

/// The least a step of this run moves: every parameter read twice (forward, and backward to the inputs), each
/// gradient written once and read once by AdamW, and the trainable parameters and both moments read and written
/// once. Activations are left out (a fused kernel could keep some on chip), so this is a floor, not a target.
fn least_bytes(g: &GpuTrainer) -> u64 {
    let memory = g.measured_memory();
    let bytes = |c: Category| memory.iter().find(|(k, _)| *k == c).map_or(0, |(_, b)| *b);
    let params = bytes(Category::BaseWeights) + bytes(Category::QuantConstants) + bytes(Category::Adapters);
    2 * params + 4 * bytes(Category::Gradients) + 2 * bytes(Category::Optimizer)
}

/// Prints the profile of `g`'s step; `least_flops` are the step's matrix products and attention as the accounting
/// counts them (independent of how the kernels split them).
pub(super) fn print_profile(g: &GpuTrainer, least_flops: f64, header: &str, json_out: bool) -> Result<()> {
    let costs = g.step_costs();
    let kernels = by_kernel(&costs);
    let total = kernels.iter().fold(KernelTotals { kernel: "step", ..Default::default() }, |mut t, k| {
        t.dispatches += k.dispatches;
        t.flops += k.flops;
        t.read += k.read;
        t.written += k.written;
        for (s, ks) in t.roofline_s.iter_mut().zip(k.roofline_s) {
            *s += ks;
        }
        t
    });
    let least_bytes = least_bytes(g);
    let least_s: Vec<f64> = PAPER_GPUS.iter().map(|p| p.roofline_s(least_flops as u64, least_bytes)).collect();
    if json_out {
        let row = |k: &KernelTotals| {
            json!({"kernel": k.kernel, "dispatches": k.dispatches, "flops": k.flops, "read": k.read,
                "written": k.written, "roofline_ms": k.roofline_s.iter().map(|s| s * 1e3).collect::<Vec<_>>()})
        };
        let out = json!({
            "paper_gpus": PAPER_GPUS.iter().map(|p| json!({"name": p.name, "flops_per_s": p.flops_per_s,
                "bytes_per_s": p.bytes_per_s})).collect::<Vec<_>>(),
            "kernels": kernels.iter().map(row).collect::<Vec<_>>(),
            "step": row(&total),
            "least": {"flops": least_flops, "bytes": least_bytes,
                "roofline_ms": least_s.iter().map(|s| s * 1e3).collect::<Vec<_>>()},
        });
        println!("{out}");
        return Ok(());
    }
    println!("{header}");
    println!("One training step on paper: FLOPs (a multiply-add is two) and the bytes of each dispatch's operands, once each.");
    println!(
        "Roofline: each dispatch takes at least max(FLOPs / peak, bytes / bandwidth) on {} | {}.",
        PAPER_GPUS[0].name, PAPER_GPUS[1].name
    );
    println!(
        "{:<34} {:>10} {:>10} {:>11} {:>11} {:>9} {:>11} {:>11}",
        "kernel", "dispatches", "GFLOP", "MB read", "MB written", "FLOP/B", "integr. ms", "discr. ms"
    );
    for k in kernels.iter().chain([&total]) {
        let bytes = (k.read + k.written) as f64;
        println!(
            "{:<34} {:>10} {:>10.2} {:>11.1} {:>11.1} {:>9.1} {:>11.2} {:>11.3}",
            k.kernel,
            k.dispatches,
            k.flops as f64 / 1e9,
            k.read as f64 / 1e6,
            k.written as f64 / 1e6,
            if bytes > 0.0 { k.flops as f64 / bytes } else { 0.0 },
            k.roofline_s[0] * 1e3,
            k.roofline_s[1] * 1e3,
        );
    }
    println!(
        "least a step needs: {:.2} GFLOP (the accounting's products) and {:.1} MB (parameters read twice, gradients \
         and AdamW's state once each way)",
        least_flops / 1e9,
        least_bytes as f64 / 1e6
    );
    for (p, (ours, least)) in PAPER_GPUS.iter().zip(total.roofline_s.iter().zip(&least_s)) {
        println!(
            "  {}: these dispatches ≥ {:.2} ms, the least step ≥ {:.2} ms ({:.2}×), before any per-dispatch overhead",
            p.name,
            ours * 1e3,
            least * 1e3,
            ours / least
        );
    }
    Ok(())
}
