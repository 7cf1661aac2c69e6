"""How our training step grows with rank, sequence length and width: `qlora bench` over each sweep, median ms/step,
printed as Markdown tables (and JSON lines with --json). Stdlib only; run from anywhere:

    cargo build --release --bin qlora && python3 bench/sweeps.py [--backend cpu] [--threads N] [--json]

Expected: nearly flat in rank for r ≤ 64 (the adapters are thin next to the base matmuls); linear in sequence length
until the attention term (T² per layer) shows; about quadratic in width (the weights are width²).
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(qlora, backend, threads, steps, **kw):
    args = [qlora, "bench", "--backend", backend, "--json", "--steps", str(steps), "--targets", "qkv,o,fc,proj"]
    if threads:
        args += ["--threads", str(threads)]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--qlora", default=os.path.join(ROOT, "target", "release", "qlora"))
    p.add_argument("--backend", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    # The shipped model's shape (4 layers × 192, 4 heads), QLoRA on nf4, batch 8 × seq 64 unless swept.
    base = dict(layers=4, heads=4, embd=192, ctx=1024, method="qlora", format="nf4", rank=8, batch=8, seq=64)
    sweeps = [
        ("rank", [1, 2, 4, 8, 16, 32, 64], {}),
        ("seq", [64, 128, 256, 512, 1024], {"batch": 2}),
        ("embd", [64, 128, 192, 384, 768], {"heads": 4}),
    ]
    rows = []
    for name, values, fixed in sweeps:
        print(f"\n### Step time against {name} (others: {', '.join(f'{k} {v}' for k, v in {**base, **fixed}.items() if k != name)})\n")
        print(f"| {name} | ms/step | tokens/s | × the first |")
        print("|---:|---:|---:|---:|")
        first = None
        for v in values:
            r = bench(a.qlora, a.backend, a.threads, a.steps, **{**base, **fixed, name: v})
            first = first or r["ms_per_step"]
            rows.append({"sweep": name, "value": v, **r})
            print(f"| {v} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:.0f} | {r['ms_per_step'] / first:.2f} |", flush=True)
    if a.json:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
