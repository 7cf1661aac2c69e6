#!/usr/bin/env bash
# bench.html in both headless browsers, alternating, with the ratio Firefox / Chromium: the page's wasm CPU fallback
# (one thread: a host without the cross-origin isolation headers; one thread per core: as served) and WebGPU.
# On a machine without a GPU both browsers' WebGPU runs on the CPU — Chromium's on SwiftShader, Firefox's on Mesa's
# lavapipe — so the WebGPU rows compare two CPU emulations of a GPU, not GPUs.
# Needs what `cargo xtask test` installs (chromium, firefox-esr, the page tests' npm packages).
# Usage: bench/browsers.sh [ROUNDS (3)] [CPU_STEPS (10)] [GPU_STEPS (3)]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
cpu_steps="${2:-10}"
gpu_steps="${3:-3}"
cd "$root"
[[ -f dist/bench.html && -n "${NO_BUILD:-}" ]] || cargo xtask dist >&2
port=8766
source bench/serve-dist.sh
serve_dist "$port"
out="$(mktemp -d)"
base="http://127.0.0.1:$port/bench.html"
# The CPU at the page's default batch (8 × 64); WebGPU at 2 × 32, which SwiftShader takes seconds a step for.
for i in $(seq "$rounds"); do
  for browser in chromium firefox; do
    node bench/page-bench.mjs "$base?backends=cpu&steps=$cpu_steps" --one-thread --browser "$browser" > "$out/$browser-cpu1-$i.json"
    node bench/page-bench.mjs "$base?backends=cpu&steps=$cpu_steps" --browser "$browser" > "$out/$browser-cpu-$i.json"
    node bench/page-bench.mjs "$base?backends=webgpu&steps=$gpu_steps&batch=2&seq=32" --webgpu --browser "$browser" \
      > "$out/$browser-webgpu-$i.json"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys, glob, os, re
out, rounds = sys.argv[1], int(sys.argv[2])
runs, agents = {}, {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    browser = os.path.basename(f).split("-")[0]
    bench = json.load(open(f))
    agents[browser] = bench["userAgent"]
    for r in bench["results"]:
        threads = r["cpu_threads"] if r["backend"] == "cpu" else "–"
        simd = r["cpu_simd"] if r["backend"] == "cpu" else "–"
        key = (r["backend"], threads, r["method"], r["format"], f"{r['batch']} × {r['seq']}")
        runs.setdefault(key, {}).setdefault(browser, []).append((r["tokens_per_s"], simd))
print(f"tokens/s, medians of {rounds} alternating runs per browser")
for b, ua in agents.items():
    print(f"- {b}: {ua}")
print("\n| backend | CPU threads | method | base | batch | Chromium (SIMD) | Firefox (SIMD) | Firefox / Chromium |")
print("|---|---:|---|---|---|---:|---:|---:|")
for key, by in runs.items():
    cells = []
    meds = {}
    for b in ("chromium", "firefox"):
        xs = by.get(b, [])
        if not xs:
            cells.append("–")
            continue
        meds[b] = statistics.median(x for x, _ in xs)
        simd = xs[0][1]
        cells.append(f"{meds[b]:.0f}" + (f" ({simd})" if simd != "–" else ""))
    ratio = f"{meds['firefox'] / meds['chromium']:.2f}×" if len(meds) == 2 else "–"
    backend, threads, m, fmt, batch = key
    print(f"| {backend} | {threads} | {m} | {fmt} | {batch} | {cells[0]} | {cells[1]} | {ratio} |")
PY
