"""How our training step grows with rank, sequence length and width: `qlora bench` over each sweep, median ms/step,
printed as Markdown tables (and JSON lines with --json). Stdlib only; run from anywhere:

    cargo build --release --bin qlora && python3 bench/sweeps.py [--backend cpu] [--threads N] [--json] [--svg F]

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
    p.add_argument("--svg", help="also write the three sweeps as an SVG plot here")
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
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg(rows, [name for name, _, _ in sweeps]))
        print(f"\nwrote {a.svg}", file=sys.stderr)


def svg(rows, sweeps) -> str:
    """One small panel per sweep: ms/step (left axis, its range written at its ends) against the swept value, both
    axes logarithmic (base 2), so linear growth is a line of slope 1 and quadratic growth of slope 2; the dashed line
    is linear growth from the first point."""
    import math

    w, h, pad = 260, 200, 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * len(sweeps)}" height="{h + 30}" '
           f'font-family="sans-serif" font-size="11">']
    labels = {"rank": "rank r", "seq": "sequence length", "embd": "width (n_embd)"}
    for i, name in enumerate(sweeps):
        pts = [(r["value"], r["ms_per_step"]) for r in rows if r["sweep"] == name]
        xs = [math.log2(v) for v, _ in pts]
        ys = [math.log2(m) for _, m in pts]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys[0], min(ys)), max(max(ys), ys[0] + (x1 - x0))
        sx = lambda x: i * w + pad + (x - x0) / max(x1 - x0, 1e-9) * (w - pad - 10)
        sy = lambda y: h - pad + 10 - (y - y0) / max(y1 - y0, 1e-9) * (h - pad - 10)
        out.append(f'<rect x="{i * w + pad}" y="10" width="{w - pad - 10}" height="{h - pad}" fill="none" stroke="#999"/>')
        out.append(f'<line x1="{sx(x0):.1f}" y1="{sy(ys[0]):.1f}" x2="{sx(x1):.1f}" y2="{sy(ys[0] + x1 - x0):.1f}" '
                   f'stroke="#999" stroke-dasharray="4 3"/>')
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline points="{line}" fill="none" stroke="#0072B2" stroke-width="2"/>')
        for (v, m), x, y in zip(pts, xs, ys):
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#0072B2"><title>{name} {v}: {m:.1f} ms</title></circle>')
            out.append(f'<text x="{sx(x):.1f}" y="{h - pad + 24}" text-anchor="middle">{v}</text>')
        out.append(f'<text x="{i * w + pad + (w - pad) / 2:.0f}" y="{h + 22}" text-anchor="middle">{labels.get(name, name)}</text>')
        # The axis spans 2^y0 … 2^y1 ms/step.
        out.append(f'<text x="{i * w + 4}" y="20">{2 ** y1:.0f} ms</text>'
                   f'<text x="{i * w + 4}" y="{h - pad + 10}">{2 ** y0:.0f} ms</text>')
    out.append("</svg>\n")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
