"""PyTorch's peer of `qlora bench --matmul`: the f32 product and the NF4 product (bitsandbytes' 4-bit weight, as
QLoRA's forward multiplies through it) at n×n×n, median milliseconds of timed repetitions after one warm-up, one JSON
line per kernel and size with the same keys as ours. Run by bench/gpu.sh.

f32 is timed with TF32 off, so both sides do full f32 multiply-adds, and once more with TF32 on, PyTorch's fastest
f32 path on NVIDIA GPUs since Ampere (labelled `matmul_f32_tf32`: a different precision, not a like-for-like figure).
"""

import argparse
import json
import statistics
import time

import torch


def timed(fn, reps: int, device: str) -> float:
    """Median seconds of `fn` over `reps` runs after one warm-up; CUDA events on a GPU, wall time on the CPU."""
    fn()
    times = []
    for _ in range(reps):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1024,4096")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    torch.manual_seed(1)

    def report(kernel: str, n: int, secs: float) -> None:
        print(json.dumps({"kernel": kernel, "size": n, "ms": secs * 1e3, "gflops": 2 * n**3 / secs / 1e9,
                          "device": name, "torch": torch.__version__}), flush=True)

    for n in map(int, a.sizes.split(",")):
        x = torch.empty(n, n, device=dev).uniform_(-1, 1)
        w = torch.empty(n, n, device=dev).uniform_(-0.1, 0.1)
        for kernel, tf32 in [("matmul_f32", False), ("matmul_f32_tf32", True)]:
            if dev.type != "cuda" and tf32:
                continue
            torch.backends.cuda.matmul.allow_tf32 = tf32
            report(kernel, n, timed(lambda: x @ w, a.reps, a.device))
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            import bitsandbytes as bnb
            import bitsandbytes.functional as bf
        except ImportError:
            print(json.dumps({"kernel": "matmul_nf4", "size": n, "skipped": "bitsandbytes is not installed"}))
            continue
        # x·Wᵀ through the NF4 weight, the product of a QLoRA forward (bitsandbytes dequantizes, then multiplies). A
        # bitsandbytes build without 4-bit kernels for this device gets a "skipped" row, not a failed run.
        try:
            packed, state = bf.quantize_4bit(w, quant_type="nf4", blocksize=64)
            secs = timed(lambda: bnb.matmul_4bit(x, packed.t(), quant_state=state), a.reps, a.device)
        except Exception as e:  # noqa: BLE001 - any failure of the peer's kernel is reported, not fatal
            print(json.dumps({"kernel": "matmul_nf4", "size": n, "skipped": f"bitsandbytes failed: {e}"[:200]}))
            continue
        report("matmul_nf4", n, secs)


if __name__ == "__main__":
    main()
