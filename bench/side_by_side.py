"""Runs `qlora bench` and bench/peft_step.py alternately (ours, theirs, ours, theirs, …) so that both see the same
machine load, then prints medians and the ratio ours/theirs as a Markdown table and, with --json, as JSON lines.
Started by bench/side-by-side.sh, which provides the virtual environment and the release build.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

# Our targets qkv,o,fc,proj are exactly the GPT-2 modules PEFT adapts in peft_step.py (c_attn, attn.c_proj,
# mlp.c_fc, mlp.c_proj): every block linear.
ALL = "qkv,o,fc,proj"

# name → (model arguments shared by both sides, batch, seq, steps per run,
#         configurations (method, format, double quantization, targets))
SHAPES = {
    "shipped": (["--model", "www/models/shakespeare"], 8, 64, 20,
                [("lora", "fp32", False, ALL), ("qlora", "nf4", False, ALL), ("full", "fp32", False, ALL)]),
    "gpt2-6l": (["--layers", "6", "--heads", "6", "--embd", "384", "--ctx", "256"], 8, 64, 10,
                [("lora", "fp32", False, ALL)]),
    "gpt2-small": (["--layers", "12", "--heads", "12", "--embd", "768", "--ctx", "1024"], 4, 64, 4,
                   [("lora", "fp32", False, ALL)]),
    # GPT-2 124M's shape with its 50,257-token vocabulary (random weights from `qlora init --preset gpt2`, loaded
    # by both sides from the same directory): LoRA on c_attn over an fp32 base, QLoRA on every block linear over
    # nf4 with double quantization (bitsandbytes' CPU 4-bit path on their side).
    "gpt2": (["--model", "bench/.models/gpt2"], 4, 128, 5,
             [("lora", "fp32", False, "qkv"), ("qlora", "nf4", True, ALL)]),
}


def run_json(cmd, cwd):
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--qlora", required=True, help="the release qlora binary")
    p.add_argument("--root", required=True, help="the repository root")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="alternating runs per side")
    p.add_argument("--shapes", default="shipped,gpt2-6l,gpt2-small")
    p.add_argument("--json", action="store_true", help="also print one JSON line per configuration")
    a = p.parse_args()
    peft_step = os.path.join(a.root, "bench", "peft_step.py")
    rows = []
    for shape in a.shapes.split(","):
        if shape not in SHAPES:
            sys.exit(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
        model, batch, seq, steps, configs = SHAPES[shape]
        if shape == "gpt2" and not os.path.exists(os.path.join(a.root, "bench/.models/gpt2/model.safetensors")):
            subprocess.run([a.qlora, "init", "--preset", "gpt2", "--out", "bench/.models/gpt2"], cwd=a.root, check=True)
        for method, fmt, dq, targets in configs:
            common = model + ["--method", method, "--format", fmt, "--batch", str(batch), "--seq", str(seq),
                              "--rank", str(a.rank), "--threads", str(a.threads), "--steps", str(steps),
                              "--targets", targets] + (["--double-quant"] if dq else [])
            ours_cmd = [a.qlora, "bench", "--backend", "cpu", "--json"] + common
            theirs_cmd = [sys.executable, peft_step] + common
            ours, theirs = [], []
            for _ in range(a.rounds):
                ours.append(run_json(ours_cmd, a.root))
                theirs.append(run_json(theirs_cmd, a.root))
            o = statistics.median(r["tokens_per_s"] for r in ours)
            t = statistics.median(r["tokens_per_s"] for r in theirs)
            fmt = fmt + ("+dq" if dq else "")
            rows.append({
                "shape": shape, "method": method, "format": fmt, "targets": targets, "batch": batch, "seq": seq, "rank": a.rank,
                "threads": a.threads, "ours_tokens_per_s": o, "theirs_tokens_per_s": t, "ratio": o / t,
                "ours_ms_per_step": batch * seq / o * 1e3, "theirs_ms_per_step": batch * seq / t * 1e3,
                "ours_runs": [r["tokens_per_s"] for r in ours], "theirs_runs": [r["tokens_per_s"] for r in theirs],
                "versions": theirs[0]["versions"],
            })
            print(f"# {shape} {method} {fmt}: ours {o:.0f} tok/s, theirs {t:.0f} tok/s, ratio {o / t:.2f}",
                  file=sys.stderr, flush=True)
    v = rows[0]["versions"] if rows else {}
    print(f"CPU training step, {a.threads} threads, rank {a.rank} (qkv = c_attn, o = attn.c_proj, fc = mlp.c_fc, "
          f"proj = mlp.c_proj); median of {a.rounds} alternating runs per side; {platform.processor() or platform.machine()}; "
          f"torch {v.get('torch')}, transformers {v.get('transformers')}, peft {v.get('peft')}\n")
    print("| model | method | base | targets | batch × seq | ours ms/step | ours tok/s | PyTorch+PEFT ms/step | PyTorch+PEFT tok/s | ours/theirs |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['method']} | {r['format']} | {r['targets']} | {r['batch']} × {r['seq']} | {r['ours_ms_per_step']:.1f} | "
              f"{r['ours_tokens_per_s']:.0f} | {r['theirs_ms_per_step']:.1f} | {r['theirs_tokens_per_s']:.0f} | "
              f"**{r['ratio']:.2f}×** |")
    if a.json:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
