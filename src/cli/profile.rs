//! `qlora bench --backend gpu --profile`: a GPU training step counted on paper (`gpu::cost`), kernel by kernel, and
//! held against the least any step of this run must do, on an integrated and a discrete GPU; with `--time-kernels`,
//! each kernel's time measured on this adapter beside it.

use super::commands::median;
use crate::gpu::{by_kernel, Category, Cost, GpuTrainer, KernelTotals, PAPER_GPUS};
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

/// Each dispatch of `g`'s step timed alone on this adapter (the median of `passes` after one warm-up), added up per
/// kernel in the order of `kernels`, in seconds.
fn measured_per_kernel(g: &GpuTrainer, costs: &[Cost], kernels: &[KernelTotals], passes: usize) -> Result<Vec<f64>> {
    g.time_step_dispatches()?; // warm-up: first use of each pipeline
    let passes = (0..passes.max(1)).map(|_| g.time_step_dispatches()).collect::<Result<Vec<_>>>()?;
    let mut per_kernel = vec![0.0; kernels.len()];
    for (i, c) in costs.iter().enumerate() {
        let mut t: Vec<f64> = passes.iter().map(|p| p[i]).collect();
        let k = kernels.iter().position(|k| k.kernel == c.kernel).expect("every cost's kernel is in its totals");
        per_kernel[k] += median(&mut t);
    }
    Ok(per_kernel)
}

/// Prints the profile of `g`'s step; `least_flops` are the step's matrix products and attention as the accounting
/// counts them (independent of how the kernels split them). With `timed_passes`, each kernel's measured time too.
pub(super) fn print_profile(
    g: &GpuTrainer,
    least_flops: f64,
    header: &str,
    timed_passes: Option<usize>,
    json_out: bool,
) -> Result<()> {
    let costs = g.step_costs();
    let kernels = by_kernel(&costs);
    let measured = timed_passes.map(|passes| measured_per_kernel(g, &costs, &kernels, passes)).transpose()?;
    let measured_total = measured.as_ref().map(|m| m.iter().sum::<f64>());
    let measured_of = |i: Option<usize>| match (&measured, i) {
        (Some(m), Some(i)) => Some(m[i]),
        (Some(_), None) => measured_total,
        (None, _) => None,
    };
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
        let row = |k: &KernelTotals, measured_s: Option<f64>| {
            let mut r = json!({"kernel": k.kernel, "dispatches": k.dispatches, "flops": k.flops, "read": k.read,
                "written": k.written, "roofline_ms": k.roofline_s.iter().map(|s| s * 1e3).collect::<Vec<_>>()});
            if let Some(s) = measured_s {
                r["measured_ms"] = json!(s * 1e3);
            }
            r
        };
        let out = json!({
            "paper_gpus": PAPER_GPUS.iter().map(|p| json!({"name": p.name, "flops_per_s": p.flops_per_s,
                "bytes_per_s": p.bytes_per_s})).collect::<Vec<_>>(),
            "adapter": g.gpu.info.name,
            "kernels": kernels.iter().enumerate().map(|(i, k)| row(k, measured_of(Some(i)))).collect::<Vec<_>>(),
            "step": row(&total, measured_of(None)),
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
    if let Some(passes) = timed_passes {
        println!(
            "Measured: each dispatch run alone on this adapter ({}), the median of {passes}; {}.",
            g.gpu.info.name,
            if g.gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
                "GPU timestamps"
            } else {
                "wall time of submit and wait, overhead included"
            }
        );
    }
    let timed = measured.is_some();
    print!(
        "{:<34} {:>10} {:>10} {:>11} {:>11} {:>9} {:>11} {:>11}",
        "kernel", "dispatches", "GFLOP", "MB read", "MB written", "FLOP/B", "integr. ms", "discr. ms"
    );
    println!("{}", if timed { format!(" {:>12}", "measured ms") } else { String::new() });
    for (i, k) in kernels.iter().enumerate().map(|(i, k)| (Some(i), k)).chain([(None, &total)]) {
        let bytes = (k.read + k.written) as f64;
        print!(
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
        println!("{}", measured_of(i).map_or(String::new(), |s| format!(" {:>12.2}", s * 1e3)));
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
