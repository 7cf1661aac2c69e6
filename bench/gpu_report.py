"""Turns bench/gpu.sh's raw JSON lines into the dated BENCHMARKS.md section: the facts of the machine, then the
matmul and GPT-2 step tables, ours beside PyTorch's with the ratio (above 1: ours is faster)."""

import json
import sys


def num(x: float) -> str:
    """GFLOP/s and milliseconds: whole numbers from 100 up, else three significant digits."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def ratio(x: float) -> str:
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.3f}×"


def table_row(label: str, ours, peer, key: str, speed) -> None:
    """One row: our value and the peer's (or why one is missing) and `speed(ours, peer)`; nothing when a side is
    absent."""
    if ours is None or peer is None:
        return
    if key in ours and key in peer:
        print(f'| {label} | {num(ours[key])} | {num(peer[key])} | {ratio(speed(ours[key], peer[key]))} |')
    else:
        cell = lambda row: num(row[key]) if key in row else row.get("skipped", "—")  # noqa: E731
        print(f'| {label} | {cell(ours)} | {cell(peer)} | — |')


def main() -> None:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    facts = rows[0]
    find = {}
    for r in rows[1:]:
        key = (r["side"], r["config"], r.get("kernel"), r.get("size"))
        find[key] = r
    devices = sorted({f'{r["side"]}: {r["device"]}' for r in rows[1:] if "device" in r})
    gpu = facts["gpu"] or "no NVIDIA GPU (nvidia-smi found none)"
    print(f'### {facts["date"]}: {gpu}')
    print()
    print(f'Commit {facts["commit"]}, `bench/gpu.sh` (medians; GPT-2 step at {facts["batch"]} × {facts["seq"]}, '
          f'{facts["steps"]} measured step(s) after warm-up). Host CPU: {facts["cpu"]}, {facts["cores"]} cores; '
          f'PyTorch {facts["torch"]}. Devices as each side named them: {"; ".join(devices)}.')
    print()
    print('| matmul | n | ours (WGSL), GFLOP/s | PyTorch, GFLOP/s | ours ÷ PyTorch |')
    print('|---|---:|---:|---:|---:|')
    # A side whose whole matmul run failed left one row without kernel or size (bench/gpu.sh `measure`): it stands
    # for each of that side's cells, or for the whole table when ours gave no sizes.
    ours_failed, peer_failed = find.get(("ours", "matmul", None, None)), find.get(("peer", "matmul", None, None))
    if ours_failed:
        print(f'| all | — | {ours_failed.get("skipped", "—")} | {peer_failed.get("skipped", "—") if peer_failed else "—"} | — |')
    for ours_k, peer_k, label in [("matmul_f32", "matmul_f32", "f32"),
                                  ("matmul_f32", "matmul_f32_tf32", "f32 (PyTorch with TF32: less precise)"),
                                  ("matmul_nf4", "matmul_nf4", "NF4 weight (bitsandbytes' matmul_4bit)")]:
        for n in sorted({r["size"] for r in rows[1:] if r.get("kernel") == ours_k}):
            ours = find.get(("ours", "matmul", ours_k, n))
            peer = find.get(("peer", "matmul", peer_k, n)) or peer_failed
            table_row(f"{label} | {n}", ours, peer, "gflops", lambda o, p: o / p)
    print()
    print('| GPT-2 124M training step | ours, ms | transformers + PEFT, ms | speed: PEFT ms ÷ ours |')
    print('|---|---:|---:|---:|')
    for config, label in [("lora-c_attn-fp32", "LoRA r 8 on c_attn, fp32 base"),
                          ("qlora-nf4-dq-all", "QLoRA r 8, nf4 + dq, every block linear")]:
        ours, peer = find.get(("ours", config, None, None)), find.get(("peer", config, None, None))
        table_row(label, ours, peer, "ms_per_step", lambda o, p: p / o)
    print()
    print("Each kernel of the QLoRA step timed alone on this GPU beside its cost on paper (`qlora bench --profile "
          "--time-kernels`): the `-profile.txt` file beside this run's raw lines in `docs/bench/`.")
    print()


if __name__ == "__main__":
    main()
